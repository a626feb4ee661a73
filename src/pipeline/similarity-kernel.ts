/**
 * The ONNX Runtime kernel behind mutual scoring: for a block of "query" patch
 * vectors A = [I*P, C] (I images) and "reference" vectors B = [J*P, C] (J images),
 * computes S = A·Bᵀ once with MLAS' GEMM and returns both reductions MuSc needs:
 *  - rowMax [I*P, J]: for each query patch, the best match in each reference image;
 *  - colMax [I, J*P]: for each reference patch, the best match in each query image.
 * One GEMM therefore serves both directions of every image pair in the block.
 */
import * as ort from 'onnxruntime-node';
import { createSession } from '../backbone/onnx-backbone.js';
import { attr, encodeModel, FLOAT, INT64 } from '../backbone/onnx-proto.js';

function buildModel(): Uint8Array {
  const f = (name: string, dims: (string | number)[]) => ({
    name,
    type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  });
  const i64 = (name: string) => ({ name, type: { tensorType: { elemType: INT64, shape: { dim: [{ dimValue: 3 }] } } } });
  return encodeModel({
    irVersion: 8,
    producerName: 'musc-ts similarity kernel',
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'block_max_similarity',
      node: [
        { opType: 'Gemm', name: 'gemm', input: ['A', 'B'], output: ['S'], attribute: [attr.int('transB', 1)] },
        { opType: 'Reshape', name: 'rows', input: ['S', 'row_shape'], output: ['S_rows'] },
        { opType: 'ReduceMax', name: 'row_max', input: ['S_rows'], output: ['row_max'], attribute: [attr.ints('axes', [2]), attr.int('keepdims', 0)] },
        { opType: 'Reshape', name: 'cols', input: ['S', 'col_shape'], output: ['S_cols'] },
        { opType: 'ReduceMax', name: 'col_max', input: ['S_cols'], output: ['col_max'], attribute: [attr.ints('axes', [1]), attr.int('keepdims', 0)] },
      ],
      input: [f('A', ['m', 'c']), f('B', ['n', 'c']), i64('row_shape'), i64('col_shape')],
      output: [f('row_max', ['m', 'j']), f('col_max', ['i', 'n'])],
    },
  });
}

/** A reusable session computing block max-similarities. */
export class SimilarityKernel {
  private constructor(private readonly session: ort.InferenceSession) {}

  static async create(opts: { threads?: number } = {}): Promise<SimilarityKernel> {
    return new SimilarityKernel(await createSession(buildModel(), opts));
  }

  /**
   * @param a query vectors `[I*P, C]` (I images of P patches)
   * @param b reference vectors `[J*Q, C]` (J images of Q patches)
   */
  async blockMax(
    a: Float32Array,
    b: Float32Array,
    dims: { I: number; P: number; J: number; Q: number; C: number },
  ): Promise<{ rowMax: Float32Array; colMax: Float32Array }> {
    const { I, P, J, Q, C } = dims;
    const res = await this.session.run({
      A: new ort.Tensor('float32', a, [I * P, C]),
      B: new ort.Tensor('float32', b, [J * Q, C]),
      row_shape: new ort.Tensor('int64', BigInt64Array.from([BigInt(I * P), BigInt(J), BigInt(Q)]), [3]),
      col_shape: new ort.Tensor('int64', BigInt64Array.from([BigInt(I), BigInt(P), BigInt(J * Q)]), [3]),
    });
    return { rowMax: res.row_max.data as Float32Array, colMax: res.col_max.data as Float32Array };
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
