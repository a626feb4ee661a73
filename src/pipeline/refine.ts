/**
 * Coarse-to-fine mutual scoring. Mutual scoring costs grow with the square of the
 * patch count, so a fine (e.g. 448 px) pass over everything costs ~16× a 224 px one.
 * Here every image is scored at the coarse size first; then, at the fine size, only
 * the query patches whose (upsampled) coarse score is in the top fraction q of the
 * set are re-scored, against ALL reference patches of the other images (a cross job);
 * the other patches keep the upsampled coarse score. With q ≥ ½ a full fine pass is
 * cheaper than the cross job (it uses each pair once) and is what runs, so q = 1 is
 * exactly full fine scoring. Hand-written orchestration over the shared core.
 */
import { upsampleBilinear } from './maps.js';
import { int8ReferenceLevels, intervalBounds, mutualScores, othersPerUnit, selfOperands, toDistance, type MsmOptions } from './msm.js';
import { crossBestMatches } from './pairwise.js';
import { SimilarityKernel } from './similarity-kernel.js';
import { LargestK } from './top-k.js';

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
  opts: MsmOptions = {},
): Promise<{ scores: Float32Array; refined: number }> {
  const { N, P, C } = dims;
  if (fine.gridHeight * fine.gridWidth !== P) throw new RangeError(`refine: the fine grid ${fine.gridHeight}x${fine.gridWidth} does not hold ${P} patches`);
  const Pc = coarse.gridHeight * coarse.gridWidth;
  const scores = new Float32Array(N * P);
  for (let i = 0; i < N; i++) {
    scores.set(upsampleBilinear(coarse.scores.subarray(i * Pc, (i + 1) * Pc), coarse.gridHeight, coarse.gridWidth, { width: fine.gridWidth, height: fine.gridHeight }), i * P);
  }
  const m = Math.ceil(fraction * N * P);
  if (fraction >= 0.5) {
    // A full fine pass computes each pair once: cheaper than the cross job from here on.
    const full = await mutualScores(zFine, dims, opts);
    if (m === N * P) return { scores: full, refined: m };
    for (const row of topIndices(scores, m)) scores[row] = full[row];
    return { scores, refined: m };
  }
  const rows = topIndices(scores, m);
  const precision = opts.precision ?? 'fp32';
  const ops = selfOperands(zFine, C, precision, int8ReferenceLevels(opts.int8ReferenceLevels), opts.int8Dither ?? true);
  const W = ops.channels;
  const Ctor = ops.query.constructor as new (n: number) => Float32Array | Uint8Array;
  const query = new Ctor(m * W);
  for (let k = 0; k < m; k++) query.set(ops.query.subarray(rows[k] * W, (rows[k] + 1) * W) as never, k * W);
  const owner = Int32Array.from(rows, (row) => Math.floor(row / P));
  const { kMin, kMax } = intervalBounds(othersPerUnit(N) + 1, opts.intervalLow ?? 0, opts.intervalHigh ?? 0.3);
  const best = new LargestK(m, kMax);
  const kernel = opts.kernel ?? (await SimilarityKernel.create({ precision, threads: opts.threads }));
  try {
    await crossBestMatches(kernel, { ...ops, query }, { rows: m, owner }, { units: N, patches: P }, best, opts);
  } finally {
    if (!opts.kernel) await kernel.dispose();
  }
  const refined = best.meanOfRanks(kMin, kMax, toDistance);
  for (let k = 0; k < m; k++) scores[rows[k]] = refined[k];
  return { scores, refined: m };
}
