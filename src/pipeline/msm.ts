/**
 * MSM — Mutual Scoring Mechanism (MuSc §3.2, spec §4). Hand-written
 * orchestration around an ONNX Runtime GEMM kernel (similarity-kernel.ts).
 *
 * For unit patch vectors z, ‖x − y‖ = √(2 − 2⟨x, y⟩), so the minimum distance
 * from patch p of image i to image j is a monotone function of the maximum inner
 * product — one GEMM per block of image pairs. Each unordered pair {i, j} is
 * computed once: the block's row-max serves i←j and its column-max j←i.
 *
 * Memory: the per-pair minima are kept as D[i][p][j] (N·P·N float32, e.g. 125 MB
 * for N = 200, P = 784); the similarity block lives only inside ONNX Runtime,
 * at most `maxBlockColumns` reference patches wide.
 *
 * Precision `int8` quantises all unit vectors of one (layer, r) with one scale
 * (127 / max |z|) and runs MLAS' u8×s8 GEMM (AVX-512 VNNI): the row/column maxima
 * are exact int32, rescaled by 1/scale², about twice as fast as float32.
 */

/** Arithmetic of the pairwise similarity GEMMs. */
export type MsmPrecision = 'fp32' | 'int8';
import { ConfigError } from '../errors.js';
import type { PatchVectors } from '../tensor.js';
import { Int8SimilarityKernel, SimilarityKernel, type BlockDims } from './similarity-kernel.js';

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
  const minDist =
    (opts.precision ?? 'fp32') === 'int8' ? await int8MinDistances(z, N, P, C, opts) : await fp32MinDistances(z, N, P, C, opts);
  return intervalMean(minDist, N, P, kMin, kMax);
}

async function fp32MinDistances(z: Float32Array, N: number, P: number, C: number, opts: MsmOptions): Promise<Float32Array> {
  const kernel = opts.kernel ?? (await SimilarityKernel.create());
  try {
    const rows = (i0: number, i1: number) => z.subarray(i0 * P * C, i1 * P * C);
    return await pairwiseMinDistances(N, P, C, opts, (i0, i1, j0, j1, dims) => kernel.blockMax(rows(i0, i1), rows(j0, j1), dims), 1);
  } finally {
    if (!opts.kernel) await kernel.dispose();
  }
}

/** Symmetric int8 codes of all vectors with one scale; returns the codes as int8 and as uint8 (+128). */
export function quantizeInt8(z: Float32Array): { s8: Int8Array; u8: Uint8Array; scale: number } {
  let maxAbs = 0;
  for (let i = 0; i < z.length; i++) {
    const a = Math.abs(z[i]);
    if (a > maxAbs) maxAbs = a;
  }
  const scale = maxAbs > 0 ? 127 / maxAbs : 1;
  const s8 = new Int8Array(z.length);
  const u8 = new Uint8Array(z.length);
  for (let i = 0; i < z.length; i++) {
    const q = Math.round(z[i] * scale);
    s8[i] = q;
    u8[i] = q + 128;
  }
  return { s8, u8, scale };
}

async function int8MinDistances(z: Float32Array, N: number, P: number, C: number, opts: MsmOptions): Promise<Float32Array> {
  const kernel = opts.int8Kernel ?? (await Int8SimilarityKernel.create());
  try {
    const { s8, u8, scale } = quantizeInt8(z);
    const span = (i0: number, i1: number) => [i0 * P * C, i1 * P * C] as const;
    return await pairwiseMinDistances(
      N,
      P,
      C,
      opts,
      (i0, i1, j0, j1, dims) => kernel.blockMax(u8.subarray(...span(i0, i1)), s8.subarray(...span(j0, j1)), dims),
      1 / (scale * scale),
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

function toDistance(sim: number): number {
  const d2 = 2 - 2 * sim;
  return d2 > 0 ? Math.sqrt(d2) : 0;
}

/** One GEMM block: row/column maxima of inner products (scaled by `factor` to similarities). */
type BlockFn = (i0: number, i1: number, j0: number, j1: number, dims: BlockDims) => Promise<{ rowMax: ArrayLike<number>; colMax: ArrayLike<number> }>;

/** D[i][p][j] = min over q of ‖z_ip − z_jq‖ (D[i][p][i] = +∞), each unordered pair computed once. */
async function pairwiseMinDistances(N: number, P: number, C: number, opts: MsmOptions, block: BlockFn, factor: number): Promise<Float32Array> {
  const D = new Float32Array(N * P * N);
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
    // Pairs inside the group: one square block; row-max gives both directions, diagonal skipped.
    const diag = await block(i0, i1, i0, i1, { I, P, J: I, Q: P, C });
    for (let ii = 0; ii < I; ii++) {
      for (let p = 0; p < P; p++) {
        const row = ((i0 + ii) * P + p) * N;
        const src = (ii * P + p) * I;
        for (let jj = 0; jj < I; jj++) D[row + i0 + jj] = jj === ii ? Infinity : toDistance(diag.rowMax[src + jj] * factor);
      }
    }
    done += (I * (I + 1)) / 2;
    // Pairs with later images: row-max -> i<-j, column-max -> j<-i.
    for (let j0 = i1; j0 < N; j0 += refChunk) {
      const j1 = Math.min(N, j0 + refChunk);
      const J = j1 - j0;
      const { rowMax, colMax } = await block(i0, i1, j0, j1, { I, P, J, Q: P, C });
      for (let ii = 0; ii < I; ii++) {
        for (let p = 0; p < P; p++) {
          const row = ((i0 + ii) * P + p) * N + j0;
          const src = (ii * P + p) * J;
          for (let jj = 0; jj < J; jj++) D[row + jj] = toDistance(rowMax[src + jj] * factor);
        }
        const col = ii * J * P;
        for (let jj = 0; jj < J; jj++) {
          for (let q = 0; q < P; q++) D[((j0 + jj) * P + q) * N + i0 + ii] = toDistance(colMax[col + jj * P + q] * factor);
        }
      }
      done += I * J;
    }
    opts.onProgress?.(done / totalWork);
  }
  return D;
}

/** Mean of sorted positions [kMin, kMax) of each (i, p) row of D. */
function intervalMean(D: Float32Array, N: number, P: number, kMin: number, kMax: number): Float32Array {
  const out = new Float32Array(N * P);
  const scratch = new Float32Array(N);
  const k = kMax - kMin;
  for (let r = 0; r < N * P; r++) {
    scratch.set(D.subarray(r * N, (r + 1) * N));
    scratch.sort();
    let s = 0;
    for (let t = kMin; t < kMax; t++) s += scratch[t];
    out[r] = s / k;
  }
  return out;
}
