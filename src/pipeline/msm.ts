/**
 * MSM — Mutual Scoring Mechanism (MuSc §3.2, spec §4). Hand-written
 * orchestration around an ONNX Runtime GEMM kernel (similarity-kernel.ts).
 *
 * For unit patch vectors z, ‖x − y‖ = √(2 − 2⟨x, y⟩), so the minimum distance
 * from patch p of image i to image j is a monotone function of the maximum inner
 * product — one GEMM per block of image pairs. Each unordered pair {i, j} is
 * computed once: the block's row-max serves i←j and its column-max j←i.
 *
 * Memory: for each patch only the best K = ⌊0.3(N−1)⌋ per-image similarities are
 * kept, in running min-heaps (N·P·K float32: 37 MB for N = 200, P = 784); the
 * similarity block lives only inside ONNX Runtime, at most `maxBlockColumns`
 * reference patches wide. Distances are taken (√(2 − 2s)) only for the kept values.
 *
 * Precision `int8` quantises all unit vectors of one (layer, r) with one scale
 * (127 / max |z|) and runs MLAS' u8×s8 GEMM (VNNI): the row/column maxima of the
 * integer products are exact int32, rescaled to similarities; about twice as fast
 * as float32. On x86 CPUs without VNNI the reference side uses 7-bit codes so the
 * GEMM cannot saturate (util/cpu.ts).
 */

import { ConfigError } from '../errors.js';
import type { PatchVectors } from '../tensor.js';
import { Int8SimilarityKernel, SimilarityKernel, type BlockDims } from './similarity-kernel.js';
import { LargestK } from './top-k.js';
import { int8FullRangeIsExact } from '../util/cpu.js';

/** Arithmetic of the pairwise similarity GEMMs. */
export type MsmPrecision = 'fp32' | 'int8';

/** The interval of the sorted per-image minima that is averaged (fractions of N−1). */
export interface MsmOptions {
  /** Lower bound of the interval as a fraction of N−1 (reference: 0). */
  readonly intervalLow?: number;
  /** Upper bound of the interval as a fraction of N−1 (reference: 0.3). */
  readonly intervalHigh?: number;
  /** Widest reference block (in patches) per GEMM call; bounds the kernel's working memory. */
  readonly maxBlockColumns?: number;
  /** Query rows (patches) per GEMM call. */
  readonly queryRows?: number;
  /** Called after each query group with the fraction of GEMM work done. */
  readonly onProgress?: (done: number) => void;
  /** GEMM precision (default fp32, as the reference). */
  readonly precision?: MsmPrecision;
  /** int8 only: levels of the reference-side codes, 127 or 63 (default: 63 only where u8×s8 could saturate). */
  readonly int8ReferenceLevels?: 127 | 63;
  /** ONNX Runtime intra-op threads for kernels created here (default: all cores). */
  readonly threads?: number;
  /** Reuse existing kernel sessions. */
  readonly kernel?: SimilarityKernel;
  readonly int8Kernel?: Int8SimilarityKernel;
  /** Checked between GEMM blocks so Ctrl-C stops a long pass promptly. */
  readonly signal?: AbortSignal;
  /**
   * Benchmarks only: stop after this many query groups (scores are then partial).
   * Lets a memory probe at N = 1000 allocate everything a full run does in minutes.
   */
  readonly maxQueryGroups?: number;
}

/** Smallest batch MuSc can score: with N ≤ 4 the 30 % interval holds no image (the reference returns NaN). */
export const MIN_IMAGES = 5;

/** [kMin, kMax) positions averaged among the N−1 sorted minima, as the reference computes them. */
export function intervalBounds(n: number, low = 0, high = 0.3): { kMin: number; kMax: number } {
  if (!(low >= 0 && high <= 1 && low < high)) throw new ConfigError(`MSM interval must satisfy 0 ≤ low < high ≤ 1 (got ${low}, ${high})`);
  const kMin = Math.floor((n - 1) * low);
  const kMax = Math.floor((n - 1) * high);
  if (kMax <= kMin) {
    throw new ConfigError(
      `mutual scoring needs more images: with ${n} images the interval [${low}, ${high}) of the ${n - 1} other images is empty ` +
        `(at least ${MIN_IMAGES} images for the default 30 % interval)`,
    );
  }
  return { kMin, kMax };
}

/**
 * Per-patch anomaly scores of every image against all others.
 * @param z unit patch vectors of N images, layout `[N, P, C]`
 * @returns scores `[N, P]`: mean of the interval of sorted minimum distances
 */
export async function mutualScores(z: Float32Array, dims: { N: number; P: number; C: number }, opts: MsmOptions = {}): Promise<Float32Array> {
  const { N, P, C } = dims;
  if (z.length !== N * P * C) throw new RangeError(`mutualScores: z has ${z.length} elements, expected ${N}x${P}x${C}`);
  const { kMin, kMax } = intervalBounds(N, opts.intervalLow ?? 0, opts.intervalHigh ?? 0.3);
  const best = new LargestK(N * P, kMax);
  if ((opts.precision ?? 'fp32') === 'int8') await int8BestMatches(z, N, P, C, best, opts);
  else await fp32BestMatches(z, N, P, C, best, opts);
  // The k-th largest similarity is the k-th smallest distance.
  return best.meanOfRanks(kMin, kMax, toDistance);
}

async function fp32BestMatches(z: Float32Array, N: number, P: number, C: number, best: LargestK, opts: MsmOptions): Promise<void> {
  const kernel = opts.kernel ?? (await SimilarityKernel.create({ threads: opts.threads }));
  try {
    const rows = (i0: number, i1: number) => z.subarray(i0 * P * C, i1 * P * C);
    await pairwiseBestMatches(N, P, C, best, opts, (i0, i1, j0, j1, dims) => kernel.blockMax(rows(i0, i1), rows(j0, j1), dims), 1);
  } finally {
    if (!opts.kernel) await kernel.dispose();
  }
}

/**
 * Symmetric integer codes of all vectors: uint8 (code + 128) for the query side with
 * ±127 levels, int8 for the reference side with ±`bLevels` levels (127, or 63 where
 * the CPU's u8×s8 GEMM would saturate; see util/cpu.ts). Products scale by 1/(scaleA·scaleB).
 */
export function quantizeInt8(z: Float32Array, bLevels = 127): { s8: Int8Array; u8: Uint8Array; scaleA: number; scaleB: number } {
  let maxAbs = 0;
  for (let i = 0; i < z.length; i++) {
    const a = Math.abs(z[i]);
    if (a > maxAbs) maxAbs = a;
  }
  const scaleA = maxAbs > 0 ? 127 / maxAbs : 1;
  const scaleB = maxAbs > 0 ? bLevels / maxAbs : 1;
  const s8 = new Int8Array(z.length);
  const u8 = new Uint8Array(z.length);
  for (let i = 0; i < z.length; i++) {
    s8[i] = Math.round(z[i] * scaleB);
    u8[i] = Math.round(z[i] * scaleA) + 128;
  }
  return { s8, u8, scaleA, scaleB };
}

async function int8BestMatches(z: Float32Array, N: number, P: number, C: number, best: LargestK, opts: MsmOptions): Promise<void> {
  const kernel = opts.int8Kernel ?? (await Int8SimilarityKernel.create({ threads: opts.threads }));
  try {
    const { s8, u8, scaleA, scaleB } = quantizeInt8(z, opts.int8ReferenceLevels ?? (int8FullRangeIsExact() ? 127 : 63));
    const span = (i0: number, i1: number) => [i0 * P * C, i1 * P * C] as const;
    await pairwiseBestMatches(
      N,
      P,
      C,
      best,
      opts,
      (i0, i1, j0, j1, dims) => kernel.blockMax(u8.subarray(...span(i0, i1)), s8.subarray(...span(j0, j1)), dims),
      1 / (scaleA * scaleB),
    );
  } finally {
    if (!opts.int8Kernel) await kernel.dispose();
  }
}

/** Convenience wrapper over per-image `PatchVectors` (all with the same P and C). */
export async function mutualScoresOf(images: readonly PatchVectors[], opts: MsmOptions = {}): Promise<Float32Array[]> {
  if (images.length === 0) throw new ConfigError('mutualScores: no images');
  const { patches: P, channels: C } = images[0];
  const z = new Float32Array(images.length * P * C);
  images.forEach((im, i) => {
    if (im.patches !== P || im.channels !== C) throw new RangeError('mutualScores: images differ in patch grid or channels');
    z.set(im.data, i * P * C);
  });
  const scores = await mutualScores(z, { N: images.length, P, C }, opts);
  return images.map((_, i) => scores.slice(i * P, (i + 1) * P));
}

/** Euclidean distance of two unit vectors from their inner product: √max(0, 2 − 2s). */
export function toDistance(sim: number): number {
  const d2 = 2 - 2 * sim;
  return d2 > 0 ? Math.sqrt(d2) : 0;
}

/** One GEMM block: row/column maxima of inner products (scaled by `factor` to similarities). */
type BlockFn = (i0: number, i1: number, j0: number, j1: number, dims: BlockDims) => Promise<{ rowMax: ArrayLike<number>; colMax: ArrayLike<number> }>;

/**
 * Feeds, for every patch p of every image i and every other image j, the best
 * similarity max_q ⟨z_ip, z_jq⟩ into `best` (row i·P + p). Each unordered pair is
 * computed once: row-max gives i←j, column-max j←i.
 */
async function pairwiseBestMatches(N: number, P: number, C: number, best: LargestK, opts: MsmOptions, block: BlockFn, factor: number): Promise<void> {
  // Blocks of ~1.5k x 1.5k patches keep the similarity block (10 MB) in cache for the two
  // reductions; measured best for both precisions on AVX-512 (see BENCHMARKS.md).
  const maxCols = Math.max(P, opts.maxBlockColumns ?? 1568);
  const group = Math.max(1, Math.min(N, Math.floor((opts.queryRows ?? 1568) / P)));
  const refChunk = Math.max(1, Math.floor(maxCols / P));
  const totalWork = (N * (N + 1)) / 2;
  let done = 0;
  for (let i0 = 0, g = 0; i0 < N && g < (opts.maxQueryGroups ?? Infinity); i0 += group, g++) {
    opts.signal?.throwIfAborted();
    const i1 = Math.min(N, i0 + group);
    const I = i1 - i0;
    // Pairs inside the group: one square block; its row-max gives both directions, the diagonal is skipped.
    const diag = await block(i0, i1, i0, i1, { I, P, J: I, Q: P, C });
    for (let ii = 0; ii < I; ii++) {
      for (let p = 0; p < P; p++) {
        const row = (i0 + ii) * P + p;
        const src = (ii * P + p) * I;
        for (let jj = 0; jj < I; jj++) if (jj !== ii) best.push(row, diag.rowMax[src + jj] * factor);
      }
    }
    done += (I * (I + 1)) / 2;
    for (let j0 = i1; j0 < N; j0 += refChunk) {
      opts.signal?.throwIfAborted();
      const j1 = Math.min(N, j0 + refChunk);
      const J = j1 - j0;
      const { rowMax, colMax } = await block(i0, i1, j0, j1, { I, P, J, Q: P, C });
      for (let ii = 0; ii < I; ii++) {
        for (let p = 0; p < P; p++) {
          const row = (i0 + ii) * P + p;
          const src = (ii * P + p) * J;
          for (let jj = 0; jj < J; jj++) best.push(row, rowMax[src + jj] * factor);
        }
        const col = ii * J * P;
        for (let jj = 0; jj < J; jj++) {
          const rowBase = (j0 + jj) * P;
          for (let q = 0; q < P; q++) best.push(rowBase + q, colMax[col + jj * P + q] * factor);
        }
      }
      done += I * J;
    }
    opts.onProgress?.(done / totalWork);
  }
}
