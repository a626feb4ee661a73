/**
 * Coarse-to-fine mutual scoring. Mutual scoring costs grow with the square of the
 * patch count, so a fine (e.g. 448 px) pass over everything costs ~16× a 224 px one.
 * Here every image is scored at the coarse size first; then, at the fine size, only
 * the query patches whose (upsampled) coarse score is in the top fraction q of the
 * set are re-scored, against ALL reference patches of the other images (a cross job);
 * the other patches keep their upsampled coarse score, mapped onto the fine scale by a
 * line fitted on the re-scored ones (`calibrate`). With q ≥ ½ a full fine pass is
 * cheaper than the cross job (it uses each pair once) and is what runs, so q = 1 is
 * exactly full fine scoring. Hand-written orchestration over the shared core.
 */
import { upsampleBilinear } from './maps.js';
import { crossOperands, int8ReferenceLevels, intervalBounds, mutualScores, othersPerUnit, toDistance, type MsmOptions, type MutualScoring, type ScoringSetId } from './msm.js';
import type { GemmOperands } from './gemm-operands.js';
import { crossBestMatches, type RowLayout, type UnitLayout } from './pairwise.js';
import { maxAbs } from './quantize.js';
import { SimilarityKernel } from './similarity-kernel.js';
import { LargestK } from './top-k.js';

/**
 * Where refinement's cross job runs: query rows against reference units, returning for each row
 * the mean of ranks [kMin, kMax) of its best per-image distances. `crossScores` in this process
 * (the default), or an executor that farms the same blocks out and returns the same scores.
 */
export type CrossScoring = (ops: GemmOperands, query: RowLayout, reference: UnitLayout, interval: { kMin: number; kMax: number }, opts: MsmOptions) => Promise<Float32Array>;

/** The cross job in this process. */
export const crossScores: CrossScoring = async (ops, query, reference, { kMin, kMax }, opts) => {
  const best = new LargestK(query.rows, kMax);
  const kernel = opts.kernel ?? (await SimilarityKernel.create({ precision: ops.precision, threads: opts.threads }));
  try {
    await crossBestMatches(kernel, ops, query, reference, best, opts);
  } finally {
    if (!opts.kernel) await kernel.dispose();
  }
  return best.meanOfRanks(kMin, kMax, toDistance);
};

/** A set of per-image score grids `[N, gh·gw]`. */
export interface ScoreGrids {
  readonly scores: Float32Array;
  readonly gridHeight: number;
  readonly gridWidth: number;
}

/**
 * Indices of the `m` largest values (ties: lower index first), ascending.
 * Sorting once is fine here: the candidates are one set's patches (≤ a few million).
 */
export function topIndices(values: Float32Array, m: number): Int32Array {
  const order = Int32Array.from({ length: values.length }, (_, i) => i);
  order.sort((a, b) => values[b] - values[a] || a - b);
  return order.subarray(0, m).sort();
}

/**
 * The patches to re-score: the top fraction of each image's own coarse scores
 * (`image`: every image gets its most suspicious patches re-scored, so every image
 * score comes from fine scores) or of the whole set's (`set`).
 */
export function selectPatches(coarseUp: Float32Array, N: number, P: number, fraction: number, by: 'image' | 'set'): Int32Array {
  if (by === 'set') return topIndices(coarseUp, Math.ceil(fraction * N * P));
  const per = Math.ceil(fraction * P);
  const out = new Int32Array(N * per);
  for (let i = 0; i < N; i++) out.set(topIndices(coarseUp.subarray(i * P, (i + 1) * P), per).map((p) => i * P + p), i * per);
  return out;
}

/**
 * Fine scores of one mutual-scoring set.
 * @param zFine fine unit vectors `[N, P, C]`
 * @param coarse the set's coarse scores (one grid per image)
 * @param fine the fine grid
 * @param fraction q in (0, 1]
 * @returns fine scores `[N, P]` and how many patches were re-scored
 */
export async function refineScores(
  zFine: Float32Array,
  dims: { N: number; P: number; C: number },
  coarse: ScoreGrids,
  fine: { gridHeight: number; gridWidth: number },
  fraction: number,
  opts: MsmOptions & { select?: 'image' | 'set'; mutual?: MutualScoring; cross?: CrossScoring; set?: ScoringSetId } = {},
): Promise<{ scores: Float32Array; refined: number }> {
  const { N, P, C } = dims;
  if (fine.gridHeight * fine.gridWidth !== P) throw new RangeError(`refine: the fine grid ${fine.gridHeight}x${fine.gridWidth} does not hold ${P} patches`);
  const Pc = coarse.gridHeight * coarse.gridWidth;
  const scores = new Float32Array(N * P);
  for (let i = 0; i < N; i++) {
    scores.set(upsampleBilinear(coarse.scores.subarray(i * Pc, (i + 1) * Pc), coarse.gridHeight, coarse.gridWidth, { width: fine.gridWidth, height: fine.gridHeight }), i * P);
  }
  const rows = selectPatches(scores, N, P, fraction, opts.select ?? 'set');
  const m = rows.length;
  if (fraction >= 0.5) {
    // A full fine pass computes each pair once: cheaper than the cross job from here on.
    // It is a self job, so it runs wherever the coarse sets run (e.g. on queue workers).
    const full = opts.mutual ? await opts.mutual(zFine, dims, opts, opts.set ?? { subset: 0, layer: 'fine', r: 0 }) : await mutualScores(zFine, dims, opts);
    if (m === N * P) return { scores: full, refined: m };
    calibrate(scores, rows, Float32Array.from(rows, (r) => full[r]));
    return { scores, refined: m };
  }
  const precision = opts.precision ?? 'fp32';
  // Only the selected rows are quantised for the query side (a tenth of the set by default).
  const zRows = new Float32Array(m * C);
  for (let k = 0; k < m; k++) zRows.set(zFine.subarray(rows[k] * C, (rows[k] + 1) * C), k * C);
  const ops = await crossOperands(zRows, zFine, C, precision, int8ReferenceLevels(opts.int8ReferenceLevels), opts.int8Dither ?? true, opts.int8Range ?? maxAbs(zFine), opts.workers);
  const owner = Int32Array.from(rows, (row) => Math.floor(row / P));
  const interval = intervalBounds(othersPerUnit(N) + 1, opts.intervalLow ?? 0, opts.intervalHigh ?? 0.3);
  calibrate(scores, rows, await (opts.cross ?? crossScores)(ops, { rows: m, owner }, { units: N, patches: P }, interval, opts));
  return { scores, refined: m };
}

/**
 * Writes the refined scores into `scores` (which holds the upsampled coarse scores) and
 * maps the other patches onto the fine scale: coarse and fine distances differ in level
 * and spread, so the least-squares line fine ≈ a·coarse + b fitted on the re-scored
 * patches is applied to the rest. Measured on bottle and the small-defect flange
 * (BENCHMARKS.md): better pixel AP and PRO than keeping raw coarse scores or shifting them.
 *
 * Two guards, because the line is fitted on the top of the coarse range only and then
 * extrapolated downwards:
 * - a slope ≤ 0 (re-scored patches whose fine scores do not rise with their coarse ones, e.g. a
 *   tiny q on a batch without defects) would turn the rest of the map upside down, lifting the
 *   background above the re-scored patches; the fit then falls back to a shift (a = 1). On the
 *   default settings it never fires (slopes 0.7–1.1 on bottle and the synthetic parts);
 * - the mapped scores are estimates of distances, which are ≥ 0, so they are clamped at 0. On
 *   bottle this lifts its lowest background patches from −0.004 to 0 (PRO −0.03, BENCHMARKS run M).
 */
export function calibrate(scores: Float32Array, rows: Int32Array, refined: Float32Array): { a: number; b: number } {
  const m = rows.length;
  let sx = 0;
  let sy = 0;
  let sxx = 0;
  let sxy = 0;
  for (let k = 0; k < m; k++) {
    const x = scores[rows[k]];
    const y = refined[k];
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  const den = m * sxx - sx * sx;
  // Degenerate fits (one re-scored patch, all coarse scores equal) and falling lines shift only.
  const slope = m > 1 && den > 0 ? (m * sxy - sx * sy) / den : Number.NaN;
  const a = slope > 0 ? slope : 1;
  const b = m > 0 ? (sy - a * sx) / m : 0;
  const isRefined = new Uint8Array(scores.length);
  for (const r of rows) isRefined[r] = 1;
  for (let j = 0; j < scores.length; j++) if (!isRefined[j]) scores[j] = Math.max(0, a * scores[j] + b);
  for (let k = 0; k < m; k++) scores[rows[k]] = refined[k];
  return { a, b };
}
