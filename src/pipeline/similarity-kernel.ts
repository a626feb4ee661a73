/**
 * The ONNX Runtime kernel behind mutual scoring: for a block of "query" patch
 * vectors A = [I*P, C] (I images) and "reference" vectors B = [J*P, C] (J images),
 * computes S = A·Bᵀ once with MLAS' GEMM and returns both reductions MuSc needs:
 *  - rowMax [I*P, J]: for each query patch, the best match in each reference image;
 *  - colMax [I, J*P]: for each reference patch, the best match in each query image.
 * One GEMM therefore serves both directions of every image pair in the block.
 *
 * Two precisions: float32 (MLAS SGEMM) and int8 (MLAS u8×s8 `MatMulInteger`, VNNI),
 * where the reductions run on the exact int32 products and the caller rescales.
 */
import * as ort from 'onnxruntime-node';
import { createSession } from '../backbone/onnx-backbone.js';
import { attr, encodeModel, FLOAT, INT32, INT64, INT8, UINT8 } from '../backbone/onnx-proto.js';

type ElemType = typeof FLOAT | typeof INT32 | typeof INT8 | typeof UINT8;

function valueInfo(name: string, elemType: ElemType | typeof INT64, dims: (string | number)[]) {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

/** Reshape + ReduceMax twice over the block `S`: row-max per reference image, column-max per query image. */
const REDUCTIONS = [
  { opType: 'Reshape', name: 'rows', input: ['S', 'row_shape'], output: ['S_rows'] },
  { opType: 'ReduceMax', name: 'row_max', input: ['S_rows'], output: ['row_max'], attribute: [attr.ints('axes', [2]), attr.int('keepdims', 0)] },
  { opType: 'Reshape', name: 'cols', input: ['S', 'col_shape'], output: ['S_cols'] },
  { opType: 'ReduceMax', name: 'col_max', input: ['S_cols'], output: ['col_max'], attribute: [attr.ints('axes', [1]), attr.int('keepdims', 0)] },
];

function buildModel(precision: 'fp32' | 'int8'): Uint8Array {
  const product =
    precision === 'fp32'
      ? [{ opType: 'Gemm', name: 'gemm', input: ['A', 'B'], output: ['S'], attribute: [attr.int('transB', 1)] }]
      : [
          { opType: 'Transpose', name: 'bt', input: ['B'], output: ['Bt'], attribute: [attr.ints('perm', [1, 0])] },
          { opType: 'MatMulInteger', name: 'gemm_i8', input: ['A', 'Bt', 'a_zero_point'], output: ['S'] },
        ];
  const out = precision === 'fp32' ? FLOAT : INT32;
  const inputs =
    precision === 'fp32'
      ? [valueInfo('A', FLOAT, ['m', 'c']), valueInfo('B', FLOAT, ['n', 'c'])]
      : [valueInfo('A', UINT8, ['m', 'c']), valueInfo('B', INT8, ['n', 'c']), valueInfo('a_zero_point', UINT8, [])];
  return encodeModel({
    irVersion: 8,
    producerName: `musc-ts similarity kernel (${precision})`,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: `block_max_similarity_${precision}`,
      node: [...product, ...REDUCTIONS],
      input: [...inputs, valueInfo('row_shape', INT64, [3]), valueInfo('col_shape', INT64, [3])],
      output: [valueInfo('row_max', out, ['m', 'j']), valueInfo('col_max', out, ['i', 'n'])],
    },
  });
}

function shapeTensors(d: BlockDims): Record<string, ort.Tensor> {
  const { I, P, J, Q } = d;
  return {
    row_shape: new ort.Tensor('int64', BigInt64Array.from([BigInt(I * P), BigInt(J), BigInt(Q)]), [3]),
    col_shape: new ort.Tensor('int64', BigInt64Array.from([BigInt(I), BigInt(P), BigInt(J * Q)]), [3]),
  };
}

/** Block geometry: I query images of P patches against J reference images of Q patches, C channels. */
export interface BlockDims {
  readonly I: number;
  readonly P: number;
  readonly J: number;
  readonly Q: number;
  readonly C: number;
}

/** A reusable session computing block max-similarities. */
export class SimilarityKernel {
  private constructor(private readonly session: ort.InferenceSession) {}

  static async create(opts: { threads?: number } = {}): Promise<SimilarityKernel> {
    return new SimilarityKernel(await createSession(buildModel('fp32'), opts));
  }

  /**
   * @param a query vectors `[I*P, C]` (I images of P patches)
   * @param b reference vectors `[J*Q, C]` (J images of Q patches)
   */
  async blockMax(
    a: Float32Array,
    b: Float32Array,
    dims: BlockDims,
  ): Promise<{ rowMax: Float32Array; colMax: Float32Array }> {
    const { I, P, J, Q, C } = dims;
    const res = await this.session.run({
      A: new ort.Tensor('float32', a, [I * P, C]),
      B: new ort.Tensor('float32', b, [J * Q, C]),
      ...shapeTensors(dims),
    });
    return { rowMax: res.row_max.data as Float32Array, colMax: res.col_max.data as Float32Array };
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/**
 * The int8 variant: A as uint8 with zero point 128 (q + 128), B as int8 (see
 * `quantizeInt8` in msm.ts), so the int32 products and their maxima are exact and
 * the caller multiplies the maxima by 1/(scaleA·scaleB).
 */
export class Int8SimilarityKernel {
  private static readonly zeroPoint = new ort.Tensor('uint8', Uint8Array.from([128]), []);
  private constructor(private readonly session: ort.InferenceSession) {}

  static async create(opts: { threads?: number } = {}): Promise<Int8SimilarityKernel> {
    return new Int8SimilarityKernel(await createSession(buildModel('int8'), opts));
  }

  /**
   * @param a query codes `[I*P, C]` as uint8 (int8 code + 128)
   * @param b reference codes `[J*Q, C]` as int8
   */
  async blockMax(a: Uint8Array, b: Int8Array, dims: BlockDims): Promise<{ rowMax: Int32Array; colMax: Int32Array }> {
    const { I, P, J, Q, C } = dims;
    const res = await this.session.run({
      A: new ort.Tensor('uint8', a, [I * P, C]),
      B: new ort.Tensor('int8', b, [J * Q, C]),
      a_zero_point: Int8SimilarityKernel.zeroPoint,
      ...shapeTensors(dims),
    });
    return { rowMax: res.row_max.data as Int32Array, colMax: res.col_max.data as Int32Array };
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
