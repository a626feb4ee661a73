/**
 * The machine's GEMM ceiling as ONNX Runtime reaches it: a large square float32
 * MatMul (and u8×s8 MatMulInteger), best of several runs. This is the "floor"
 * reference: MSM cannot beat FLOPs / this rate with the same arithmetic.
 */
import * as ort from 'onnxruntime-node';
import { createSession } from '../src/backbone/onnx-backbone.js';
import { encodeModel, FLOAT, INT32, INT8, UINT8 } from '../src/backbone/onnx-proto.js';

function model(kind: 'fp32' | 'int8'): Uint8Array {
  const vi = (name: string, t: number) => ({ name, type: { tensorType: { elemType: t, shape: { dim: [{ dimParam: 'a' }, { dimParam: 'b' }] } } } });
  const zp = { name: 'zp', type: { tensorType: { elemType: UINT8, shape: { dim: [] } } } };
  return encodeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: `peak_${kind}`,
      node: [kind === 'fp32' ? { opType: 'MatMul', input: ['A', 'B'], output: ['Y'] } : { opType: 'MatMulInteger', input: ['A', 'B', 'zp'], output: ['Y'] }],
      input: kind === 'fp32' ? [vi('A', FLOAT), vi('B', FLOAT)] : [vi('A', UINT8), vi('B', INT8), zp],
      output: [vi('Y', kind === 'fp32' ? FLOAT : INT32)],
    },
  });
}

/** Best GFLOP/s (or GOP/s) over sizes and repeats. */
export async function gemmPeak(kind: 'fp32' | 'int8', sizes = [2048, 3072], repeats = 4): Promise<{ rate: number; size: number; ms: number }> {
  const session = await createSession(model(kind));
  let best = { rate: 0, size: 0, ms: 0 };
  try {
    for (const m of sizes) {
      const n = m * m;
      const feeds: Record<string, ort.Tensor> =
        kind === 'fp32'
          ? {
              A: new ort.Tensor('float32', Float32Array.from({ length: n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5), [m, m]),
              B: new ort.Tensor('float32', Float32Array.from({ length: n }, (_, i) => ((i * 104729) % 1000) / 1000 - 0.5), [m, m]),
            }
          : {
              A: new ort.Tensor('uint8', Uint8Array.from({ length: n }, (_, i) => (i * 7919) % 251), [m, m]),
              B: new ort.Tensor('int8', Int8Array.from({ length: n }, (_, i) => ((i * 104729) % 251) - 125), [m, m]),
              zp: new ort.Tensor('uint8', Uint8Array.from([128]), []),
            };
      await session.run(feeds);
      for (let r = 0; r < repeats; r++) {
        const t = performance.now();
        await session.run(feeds);
        const ms = performance.now() - t;
        const rate = (2 * m ** 3) / ms / 1e6;
        if (rate > best.rate) best = { rate, size: m, ms };
      }
    }
  } finally {
    await session.release();
  }
  return best;
}
