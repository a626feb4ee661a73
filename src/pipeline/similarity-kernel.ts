/**
 * The ONNX Runtime kernel behind mutual scoring: for a block of query rows
 * A = [m, C] and reference vectors B = [J*Q, C] (J units of Q patches), computes
 * S = A·Bᵀ once with MLAS' GEMM and returns the reductions MuSc needs:
 *  - rowMax [m, J]: for each query row, the best match in each reference unit;
 *  - colMax [I, J*Q] (optional, when the m rows are I units of P patches): for each
 *    reference patch, the best match in each query unit.
 * One GEMM therefore serves both directions of every unit pair in a block.
 *
 * Two precisions: float32 (MLAS SGEMM) and int8 (MLAS u8×s8 `MatMulInteger`, VNNI or
 * AMX), whose exact int32 products the caller maps to similarities (see
 * gemm-operands.ts). A third graph variant without reductions ("GEMM only") exists
 * for the benchmark's floor: same op, shapes and precision.
 */
import * as ort from 'onnxruntime-node';
import { createSession } from '../backbone/onnx-backbone.js';
import { attr, encodeModel, FLOAT, INT32, INT64, INT8, UINT8 } from '../backbone/onnx-proto.js';
import type { MsmPrecision } from './gemm-operands.js';

type ElemType = typeof FLOAT | typeof INT32 | typeof INT8 | typeof UINT8 | typeof INT64;

function valueInfo(name: string, elemType: ElemType, dims: (string | number)[]) {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

/** What a session computes after the GEMM. */
export type KernelOutputs = 'rows' | 'rows+columns' | 'gemm-only';

const ROW_MAX = [
  { opType: 'Reshape', name: 'rows', input: ['S', 'row_shape'], output: ['S_rows'] },
  { opType: 'ReduceMax', name: 'row_max', input: ['S_rows'], output: ['row_max'], attribute: [attr.ints('axes', [2]), attr.int('keepdims', 0)] },
];
const COL_MAX = [
  { opType: 'Reshape', name: 'cols', input: ['S', 'col_shape'], output: ['S_cols'] },
  { opType: 'ReduceMax', name: 'col_max', input: ['S_cols'], output: ['col_max'], attribute: [attr.ints('axes', [1]), attr.int('keepdims', 0)] },
];
/** "GEMM only": one element of S leaves the graph, so the GEMM runs in full and nothing else does. */
const FIRST_ELEMENT = [{ opType: 'Slice', name: 'first', input: ['S', 'zero2', 'one2'], output: ['first'] }];

function buildModel(precision: MsmPrecision, outputs: KernelOutputs): Uint8Array {
  const product =
    precision === 'fp32'
      ? [{ opType: 'Gemm', name: 'gemm', input: ['A', 'B'], output: ['S'], attribute: [attr.int('transB', 1)] }]
      : [
          { opType: 'Transpose', name: 'bt', input: ['B'], output: ['Bt'], attribute: [attr.ints('perm', [1, 0])] },
          { opType: 'MatMulInteger', name: 'gemm_i8', input: ['A', 'Bt', 'a_zero_point'], output: ['S'] },
        ];
  const elem = precision === 'fp32' ? FLOAT : INT32;
  const inputs =
    precision === 'fp32'
      ? [valueInfo('A', FLOAT, ['m', 'c']), valueInfo('B', FLOAT, ['n', 'c'])]
      : [valueInfo('A', UINT8, ['m', 'c']), valueInfo('B', INT8, ['n', 'c']), valueInfo('a_zero_point', UINT8, [])];
  const tail =
    outputs === 'gemm-only'
      ? { node: FIRST_ELEMENT, input: [valueInfo('zero2', INT64, [2]), valueInfo('one2', INT64, [2])], output: [valueInfo('first', elem, [1, 1])] }
      : outputs === 'rows'
        ? { node: ROW_MAX, input: [valueInfo('row_shape', INT64, [3])], output: [valueInfo('row_max', elem, ['m', 'j'])] }
        : {
            node: [...ROW_MAX, ...COL_MAX],
            input: [valueInfo('row_shape', INT64, [3]), valueInfo('col_shape', INT64, [3])],
            output: [valueInfo('row_max', elem, ['m', 'j']), valueInfo('col_max', elem, ['i', 'n'])],
          };
  return encodeModel({
    irVersion: 8,
    producerName: `musc-ts similarity kernel (${precision}, ${outputs})`,
    opsetImport: [{ domain: '', version: 17 }],
    graph: { name: `block_max_similarity_${precision}`, node: [...product, ...tail.node], input: [...inputs, ...tail.input], output: tail.output },
  });
}

/**
 * Block geometry: `rows` query rows against J reference units of Q patches, C channels.
 * For column maxima the rows must be I query units of P patches (rows = I·P).
 */
export interface BlockDims {
  readonly rows: number;
  readonly J: number;
  readonly Q: number;
  readonly C: number;
  /** Query units and patches per unit; needed only for column maxima. */
  readonly I?: number;
  readonly P?: number;
}

/** Kernel values: float32 similarities (fp32) or exact int32 products (int8). */
export type KernelValues = Float32Array | Int32Array;

const i64 = (v: readonly number[]) => new ort.Tensor('int64', BigInt64Array.from(v.map(BigInt)), [v.length]);

/** A reusable set of sessions computing block max-similarities in one precision. */
export class SimilarityKernel {
  private static readonly zeroPoint = new ort.Tensor('uint8', Uint8Array.from([128]), []);
  private readonly sessions = new Map<KernelOutputs, Promise<ort.InferenceSession>>();

  private constructor(
    readonly precision: MsmPrecision,
    private readonly threads: number | undefined,
  ) {}

  /** A kernel for `precision`; sessions are created on first use of each output kind. */
  static async create(opts: { precision?: MsmPrecision; threads?: number } = {}): Promise<SimilarityKernel> {
    const k = new SimilarityKernel(opts.precision ?? 'fp32', opts.threads);
    await k.session('rows+columns'); // fail early (and warm up) on a broken runtime
    return k;
  }

  private session(outputs: KernelOutputs): Promise<ort.InferenceSession> {
    let s = this.sessions.get(outputs);
    if (!s) {
      s = createSession(buildModel(this.precision, outputs), { threads: this.threads });
      this.sessions.set(outputs, s);
    }
    return s;
  }

  private operands(a: Float32Array | Uint8Array, b: Float32Array | Int8Array, d: BlockDims): Record<string, ort.Tensor> {
    if (a.length !== d.rows * d.C || b.length !== d.J * d.Q * d.C) {
      throw new RangeError(`similarity kernel: operands of ${a.length} and ${b.length} values do not fit rows ${d.rows}, ${d.J}x${d.Q} reference patches, C ${d.C}`);
    }
    if (this.precision === 'fp32') {
      return { A: new ort.Tensor('float32', a as Float32Array, [d.rows, d.C]), B: new ort.Tensor('float32', b as Float32Array, [d.J * d.Q, d.C]) };
    }
    return {
      A: new ort.Tensor('uint8', a as Uint8Array, [d.rows, d.C]),
      B: new ort.Tensor('int8', b as Int8Array, [d.J * d.Q, d.C]),
      a_zero_point: SimilarityKernel.zeroPoint,
    };
  }

  /**
   * Row maxima `[rows, J]` and, with `columns`, column maxima `[I, J*Q]` of A·Bᵀ.
   * @param a query rows `[rows, C]` (float32, or uint8 = int8 code + 128)
   * @param b reference vectors `[J*Q, C]` (float32 or int8)
   */
  async blockMax(a: Float32Array | Uint8Array, b: Float32Array | Int8Array, d: BlockDims, columns: boolean): Promise<{ rowMax: KernelValues; colMax: KernelValues | null }> {
    const feeds = { ...this.operands(a, b, d), row_shape: i64([d.rows, d.J, d.Q]) };
    if (!columns) {
      const res = await (await this.session('rows')).run(feeds);
      return { rowMax: res.row_max.data as KernelValues, colMax: null };
    }
    if (d.I === undefined || d.P === undefined || d.I * d.P !== d.rows) throw new RangeError('similarity kernel: column maxima need the rows as I units of P patches');
    const res = await (await this.session('rows+columns')).run({ ...feeds, col_shape: i64([d.I, d.P, d.J * d.Q]) });
    return { rowMax: res.row_max.data as KernelValues, colMax: res.col_max.data as KernelValues };
  }

  /** The GEMM of `blockMax` alone, without reductions (benchmark floor). */
  async gemmOnly(a: Float32Array | Uint8Array, b: Float32Array | Int8Array, d: BlockDims): Promise<void> {
    await (await this.session('gemm-only')).run({ ...this.operands(a, b, d), zero2: i64([0, 0]), one2: i64([1, 1]) });
  }

  async dispose(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) await (await s).release();
  }
}
