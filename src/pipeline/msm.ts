/**
 * MSM — Mutual Scoring Mechanism (MuSc §3.2, spec §4). Hand-written orchestration
 * around the shared pairwise core (pairwise.ts, gemm-operands.ts, top-k.ts).
 *
 * For unit patch vectors z, ‖x − y‖ = √(2 − 2⟨x, y⟩), so the minimum distance from
 * patch p of image i to image j is a monotone function of the maximum similarity:
 * one GEMM per block of image pairs, each unordered pair computed once.
 *
 * Memory: for each patch only the best K = ⌊0.3(N−1)⌋ per-image similarities are kept
 * (N·P·K float32: 37 MB for N = 200, P = 784); distances are taken (√(2 − 2s)) only
 * for the kept values, then the interval [kMin, kMax) of the sorted minima is averaged.
 *
 * Precision `int8` quantises all unit vectors of one (layer, r) with one scale
 * (127 / max |z|) and runs MLAS' u8×s8 GEMM (VNNI/AMX), with distances from the
 * quantised vectors' own norms (gemm-operands.ts). On x86 CPUs without VNNI the
 * reference side uses 7-bit codes so the GEMM cannot saturate (util/cpu.ts).
 */
import { ConfigError } from '../errors.js';
import type { PatchVectors } from '../tensor.js';
import { int8FullRangeIsExact } from '../util/cpu.js';
import { fp32Operands, int8Operands, int8Side, int8SideOf, type GemmOperands, type MsmPrecision } from './gemm-operands.js';
import { quantizeSides, type WorkerPool } from './parallel.js';
import { selfBestMatches, selfBlockPlan, type BlockSizes } from './pairwise.js';
import { channelDither, int8Scale, maxAbs, queryDither } from './quantize.js';
import { SimilarityKernel } from './similarity-kernel.js';
import { LargestK } from './top-k.js';

export type { MsmPrecision } from './gemm-operands.js';

/** The interval of the sorted per-image minima that is averaged (fractions of N−1), and how to run. */
export interface MsmOptions extends BlockSizes {
  /** Lower bound of the interval as a fraction of N−1 (reference: 0). */
  readonly intervalLow?: number;
  /** Upper bound of the interval as a fraction of N−1 (reference: 0.3). */
  readonly intervalHigh?: number;
  /** Called after each block with the fraction of GEMM work done. */
  readonly onProgress?: (done: number) => void;
  /** GEMM precision (default fp32, as the reference). */
  readonly precision?: MsmPrecision;
  /** int8 only: levels of the reference-side codes, 127 or 63 (default: 63 only where u8×s8 could saturate). */
  readonly int8ReferenceLevels?: 127 | 63;
  /** int8 only: quantise with the channel dither (default true; see quantize.ts). */
  readonly int8Dither?: boolean;
  /**
   * int8 only: the range (max |z|) that sets the quantisation scale (default: that of z).
   * Sets scored separately that belong together (tile positions of one (layer, r)) share
   * one scale, as a bank of them does.
   */
  readonly int8Range?: number;
  /** ONNX Runtime intra-op threads for a kernel created here (default: all cores). */
  readonly threads?: number;
  /** Reuse an open kernel of the same precision. */
  readonly kernel?: SimilarityKernel;
  /** Worker threads that quantise int8 operands (parallel.ts); without them this thread does. */
  readonly workers?: WorkerPool | null;
  /** Checked between GEMM blocks so Ctrl-C stops a long pass promptly. */
  readonly signal?: AbortSignal;
  /**
   * The image owning each of the N units (default: unit n is image n). Units of one image
   * (tiles) are never compared with each other, and each unit's interval is taken over the
   * units of the other images. Every image must own the same number of units.
   */
  readonly owner?: Int32Array;
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

/** Euclidean distance of two unit vectors from their similarity: √max(0, 2 − 2s). */
export function toDistance(sim: number): number {
  const d2 = 2 - 2 * sim;
  return d2 > 0 ? Math.sqrt(d2) : 0;
}

/** Reference-side int8 levels for this CPU (127, or 63 where u8×s8 could saturate). */
export function int8ReferenceLevels(override?: 127 | 63): 127 | 63 {
  return override ?? (int8FullRangeIsExact() ? 127 : 63);
}

/**
 * GEMM operands of a batch scored against itself: the vectors as they are (fp32), or
 * quantised with one scale per set (int8; the query side always at 127 levels).
 * @param workers worker threads that quantise (the codes do not depend on them)
 */
export function selfOperands(z: Float32Array, C: number, precision: MsmPrecision, referenceLevels: 127 | 63 = int8ReferenceLevels(), dither = true, range = maxAbs(z), workers?: WorkerPool | null): Promise<GemmOperands> {
  return crossOperands(z, z, C, precision, referenceLevels, dither, range, workers);
}

/**
 * GEMM operands of some rows of a set (`rows`, e.g. the patches refinement re-scores)
 * against the whole set `z`, in the set's arithmetic: the rows get exactly the operands
 * `selfOperands(z)` gives them, so their similarities are the same.
 * @param workers worker threads that quantise (the codes do not depend on them)
 */
export async function crossOperands(
  rows: Float32Array,
  z: Float32Array,
  C: number,
  precision: MsmPrecision,
  referenceLevels: 127 | 63 = int8ReferenceLevels(),
  dither = true,
  range = maxAbs(z),
  workers?: WorkerPool | null,
): Promise<GemmOperands> {
  if (precision === 'fp32') return fp32Operands(rows, z, C);
  const q = { scale: int8Scale(range, 127), levels: 127 };
  const r = { scale: int8Scale(range, referenceLevels), levels: referenceLevels };
  if (!dither) return int8Operands(int8Side(rows, q.scale, q.levels, null), int8Side(z, r.scale, r.levels, null), C);
  // Each side its own dither (see queryDither): every unordered pair is computed once, with the
  // lower unit on the query side, so a unit's scores against earlier units come from column maxima.
  const query = { ...q, dither: queryDither(C), otherDither: channelDither(C) };
  const reference = { ...r, dither: channelDither(C), otherDither: queryDither(C) };
  // A self job's two sides come from one pass over the set.
  const [a, b] = rows === z ? await quantizeSides(z, [query, reference], workers) : [(await quantizeSides(rows, [query], workers))[0], (await quantizeSides(z, [reference], workers))[0]];
  return int8Operands(int8SideOf(a, query), int8SideOf(b, reference), C);
}

/** Number of units of other images each unit is compared with; checks that owners are balanced. */
export function othersPerUnit(units: number, owner?: Int32Array): number {
  if (!owner) return units - 1;
  const count = new Map<number, number>();
  for (const o of owner) count.set(o, (count.get(o) ?? 0) + 1);
  const per = new Set(count.values());
  if (per.size !== 1) throw new ConfigError('mutual scoring: every image must own the same number of units (tiles)');
  return units - [...per][0];
}

/**
 * Per-patch anomaly scores of every unit against the units of all other images.
 * @param z unit patch vectors of N units, layout `[N, P, C]`
 * @returns scores `[N, P]`: mean of the interval of sorted minimum distances
 */
export async function mutualScores(z: Float32Array, dims: { N: number; P: number; C: number }, opts: MsmOptions = {}): Promise<Float32Array> {
  const { N, P, C } = dims;
  if (z.length !== N * P * C) throw new RangeError(`mutualScores: z has ${z.length} elements, expected ${N}x${P}x${C}`);
  if (opts.owner && opts.owner.length !== N) throw new RangeError(`mutualScores: owner has ${opts.owner.length} entries, expected ${N}`);
  const others = othersPerUnit(N, opts.owner);
  const { kMin, kMax } = intervalBounds(others + 1, opts.intervalLow ?? 0, opts.intervalHigh ?? 0.3);
  const precision = opts.precision ?? 'fp32';
  if (opts.kernel && opts.kernel.precision !== precision) throw new RangeError(`mutualScores: the kernel runs ${opts.kernel.precision}, not ${precision}`);
  const kernel = opts.kernel ?? (await SimilarityKernel.create({ precision, threads: opts.threads }));
  const best = new LargestK(N * P, kMax);
  try {
    const ops = await selfOperands(z, C, precision, int8ReferenceLevels(opts.int8ReferenceLevels), opts.int8Dither ?? true, opts.int8Range ?? maxAbs(z), opts.workers);
    let blocks = selfBlockPlan(N, P, opts);
    if (opts.maxQueryGroups !== undefined) {
      const starts = [...new Set(blocks.map((b) => b.q0))].slice(0, opts.maxQueryGroups);
      blocks = blocks.filter((b) => starts.includes(b.q0));
    }
    await selfBestMatches(kernel, ops, { units: N, patches: P, owner: opts.owner }, best, { ...opts, blocks });
  } finally {
    if (!opts.kernel) await kernel.dispose();
  }
  // The k-th largest similarity is the k-th smallest distance.
  return best.meanOfRanks(kMin, kMax, toDistance);
}

/** Names one mutual-scoring set of a run: which subset, layer and aggregation degree. */
export interface ScoringSetId {
  readonly subset: number;
  readonly layer: string;
  readonly r: number;
  /** Tiles matched by position: which tile position the set holds. */
  readonly tile?: number;
  /** The fine pass of coarse-to-fine refinement. */
  readonly fine?: boolean;
}

/**
 * Where mutual scoring of one set runs: `mutualScores` in this process (the default),
 * or an executor that farms the same blocks out (e.g. to workers on a job queue) and
 * must return the same scores. `z` is valid until the returned promise settles (its
 * memory then serves later sets): an executor that needs the vectors longer copies them.
 */
export type MutualScoring = (z: Float32Array, dims: { N: number; P: number; C: number }, opts: MsmOptions, set: ScoringSetId) => Promise<Float32Array>;

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
