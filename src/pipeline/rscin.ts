/**
 * RsCIN — Re-scoring with Constrained Image-level Neighbourhood (MuSc §3.3,
 * spec §6.2). Hand-written (MuSc-specific).
 *
 * Image scores are min-max normalised over the whole category, then each score is
 * replaced by the similarity-weighted mean of the scores of its k most similar
 * images (itself included), averaged over k ∈ kList. The reference multiplies
 * fp16 embeddings; we use float64 (differences are within fp16 rounding, and ties
 * are broken in favour of the image itself, then by lower index).
 *
 * One row function (`rscinRow`) serves a whole batch (`rscin`) and one new image
 * scored against a bank's frozen scores and embeddings.
 */
import { ConfigError } from '../errors.js';
import type { ImageScoreRule } from './maps.js';

/** RsCIN windows of the reference: MVTec AD / BTAD and anything else. */
export const RSCIN_K_DEFAULT = [1, 2, 3] as const;
/** RsCIN windows the reference uses for VisA. */
export const RSCIN_K_VISA = [1, 8, 9] as const;

/**
 * RsCIN windows when none are given. Under the paper's image score (`max`): the reference's
 * windows for the dataset family. Under `excess`: the window of the image itself only, which is
 * the min-max normalised image score (spec §6.2: k = 1 reproduces it exactly), so decisions and
 * thresholds keep RsCIN's 0..1 scale without mixing in other images' scores. The typical map
 * already takes out what the images of a batch share, place by place; pulling each score towards
 * its most similar images' scores on top of that mostly blurred the ranking (BENCHMARKS run L:
 * image AUROC lower with the neighbours on 9 of 15 aligned sets, higher on 1, the same on 5; higher
 * on Magnetic Tile's unaligned crops). Window 1 alone is the image's own score for every
 * embedding similarity (`ownScoreOnly`).
 */
export function defaultKList(imageScore: ImageScoreRule, family: readonly number[] = RSCIN_K_DEFAULT): number[] {
  return imageScore === 'excess' ? [1] : [...family];
}

/** RsCIN windows in words, for reports: `1,2,3`, or that only the image's own score is used. */
export function kListWords(kList: readonly number[]): string {
  if (kList.length === 0 || kList.includes(0)) return 'none (raw image scores)';
  return kList.length === 1 && kList[0] === 1 ? "1 (each image's own score, min-max normalised: no neighbours)" : kList.join(',');
}

/**
 * Whether every window is 1: each image's own normalised score, so no similarity is needed
 * (`rscin` and bank scoring then skip the M² embedding products). For unit embeddings that is
 * what the reference's top-k gives anyway (self-similarity is the row max); with raw dot products
 * (DINO) a longer embedding could outrank the image itself and a window of one would return
 * another image's score. The reference's lists never use 1 alone, so no reference
 * configuration is affected.
 */
export function ownScoreOnly(kList: readonly number[]): boolean {
  return kList.length > 0 && kList.every((k) => k === 1);
}

/** The windows of `kList` that fit a set of `size` images (itself included). */
export function usableKList(kList: readonly number[], size: number): number[] {
  return kList.filter((k) => k <= size);
}

/** Min-max normalisation; all-equal scores become 0 (the reference divides 0/0: every image is equally unremarkable). */
export function minMaxNormalize(scores: ArrayLike<number>): Float64Array {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < scores.length; i++) {
    lo = Math.min(lo, scores[i]);
    hi = Math.max(hi, scores[i]);
  }
  const span = hi - lo;
  return Float64Array.from({ length: scores.length }, (_, i) => (span > 0 ? (scores[i] - lo) / span : 0));
}

/** One embedding as float64, L2-normalised when `cosine` (a zero vector stays zero). */
export function embeddingRow(v: ArrayLike<number>, cosine: boolean): Float64Array {
  let ss = 0;
  for (let d = 0; d < v.length; d++) ss += v[d] * v[d];
  const k = !cosine || ss === 0 ? 1 : 1 / Math.sqrt(ss);
  return Float64Array.from({ length: v.length }, (_, d) => v[d] * k);
}

/** Inner product of two float64 rows. */
export function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let d = 0; d < a.length; d++) s += a[d] * b[d];
  return s;
}

/**
 * RsCIN of one image: the similarity-weighted mean of the normalised scores of its k
 * most similar images, averaged over `kList`.
 * @param sims similarity of the image to every image of the set, itself at index `self`
 * @param norm min-max normalised scores of the same set
 * @param kList windows, each ≤ sims.length (see `usableKList`)
 */
export function rscinRow(sims: ArrayLike<number>, norm: ArrayLike<number>, self: number, kList: readonly number[]): number {
  const kMax = Math.max(...kList);
  // Ties (near-duplicate images) keep the image itself first, so k = 1 is exactly the identity.
  const order = Array.from({ length: sims.length }, (_, j) => j)
    .sort((a, b) => sims[b] - sims[a] || (a === self ? -1 : b === self ? 1 : a - b))
    .slice(0, kMax);
  let acc = 0;
  for (const k of kList) {
    let num = 0;
    let den = 0;
    for (let t = 0; t < k; t++) {
      const j = order[t];
      num += sims[j] * norm[j];
      den += sims[j];
    }
    acc += den !== 0 ? num / den : norm[self];
  }
  return acc / kList.length;
}

/**
 * RsCIN re-scoring of a batch's image scores (see the module doc).
 * @param scores raw image scores `[M]`
 * @param embeddings image embeddings `[M, D]` row-major
 * @param dim D
 * @param kList window sizes; an empty list (or one containing 0) returns the scores unchanged, as the reference does
 * @param opts.cosine L2-normalise embeddings first (cosine similarity). The reference's CLIP tokens are
 *   already unit-norm; DINO's are not and use raw dot products (set false to match that).
 */
export function rscin(
  scores: ArrayLike<number>,
  embeddings: Float32Array,
  dim: number,
  kList: readonly number[],
  opts: { cosine?: boolean } = {},
): Float64Array {
  const M = scores.length;
  if (embeddings.length !== M * dim) throw new RangeError(`rscin: embeddings have ${embeddings.length} elements, expected ${M}x${dim}`);
  if (kList.length === 0 || kList.includes(0)) return Float64Array.from(scores);
  const kMax = Math.max(...kList);
  if (kMax > M) throw new ConfigError(`RsCIN window k=${kMax} needs at least ${kMax} images (got ${M})`);
  const norm = minMaxNormalize(scores);
  if (ownScoreOnly(kList)) return norm;
  const e = Array.from({ length: M }, (_, i) => embeddingRow(embeddings.subarray(i * dim, (i + 1) * dim), opts.cosine !== false));
  const sims = new Float64Array(M);
  return Float64Array.from({ length: M }, (_, i) => {
    for (let j = 0; j < M; j++) sims[j] = dot(e[i], e[j]);
    return rscinRow(sims, norm, i, kList);
  });
}
