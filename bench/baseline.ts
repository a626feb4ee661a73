/**
 * The straightforward mutual scoring the speed-up is measured against: one GEMM per
 * ORDERED image pair (each pair computed twice, once per direction, as the reference
 * does), same ONNX Runtime kernel, same interval mean. Benchmarks only.
 */
import { intervalBounds, toDistance } from '../src/pipeline/msm.js';
import { SimilarityKernel } from '../src/pipeline/similarity-kernel.js';

export async function baselineMutualScores(z: Float32Array, N: number, P: number, C: number): Promise<Float32Array> {
  const { kMin, kMax } = intervalBounds(N);
  const kernel = await SimilarityKernel.create();
  const out = new Float32Array(N * P);
  const mins = new Float32Array(P * (N - 1));
  const scratch = new Float32Array(N - 1);
  try {
    for (let i = 0; i < N; i++) {
      const a = z.subarray(i * P * C, (i + 1) * P * C);
      let k = 0;
      for (let j = 0; j < N; j++) {
        if (j === i) continue;
        const { rowMax } = await kernel.blockMax(a, z.subarray(j * P * C, (j + 1) * P * C), { rows: P, J: 1, Q: P, C }, false);
        for (let p = 0; p < P; p++) mins[p * (N - 1) + k] = toDistance(rowMax[p]);
        k++;
      }
      for (let p = 0; p < P; p++) {
        scratch.set(mins.subarray(p * (N - 1), (p + 1) * (N - 1)));
        scratch.sort();
        let s = 0;
        for (let t = kMin; t < kMax; t++) s += scratch[t];
        out[i * P + p] = s / (kMax - kMin);
      }
    }
  } finally {
    await kernel.dispose();
  }
  return out;
}
