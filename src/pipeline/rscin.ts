/**
 * RsCIN — Re-scoring with Constrained Image-level Neighbourhood (MuSc §3.3,
 * spec §6.2). Hand-written (MuSc-specific).
 *
 * Image scores are min-max normalised over the whole category, then each score is
 * replaced by the similarity-weighted mean of the scores of its k most similar
 * images (itself included), averaged over k ∈ kList. The reference multiplies
 * fp16 embeddings; we use float64 (differences are within fp16 rounding, and ties
 * are broken in favour of the image itself, then by lower index).
 */
import { ConfigError } from '../errors.js';

/** RsCIN windows of the reference: MVTec AD / BTAD and anything else. */
export const RSCIN_K_DEFAULT = [1, 2, 3] as const;
/** RsCIN windows the reference uses for VisA. */
export const RSCIN_K_VISA = [1, 8, 9] as const;

/**
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
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < M; i++) {
    lo = Math.min(lo, scores[i]);
    hi = Math.max(hi, scores[i]);
  }
  // All-equal scores: the reference divides 0/0; every image is equally (un)remarkable, so 0.
  const span = hi - lo;
  const norm = new Float64Array(M);
  for (let i = 0; i < M; i++) norm[i] = span > 0 ? (scores[i] - lo) / span : 0;

  const e = new Float64Array(M * dim);
  for (let i = 0; i < M; i++) {
    let ss = 0;
    for (let d = 0; d < dim; d++) ss += embeddings[i * dim + d] ** 2;
    const k = opts.cosine === false || ss === 0 ? 1 : 1 / Math.sqrt(ss);
    for (let d = 0; d < dim; d++) e[i * dim + d] = embeddings[i * dim + d] * k;
  }
  const out = new Float64Array(M);
  const sim = new Float64Array(M);
  const order = new Int32Array(M);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < M; j++) {
      let s = 0;
      for (let d = 0; d < dim; d++) s += e[i * dim + d] * e[j * dim + d];
      sim[j] = s;
      order[j] = j;
    }
    // Ties (near-duplicate images) keep the image itself first, so k = 1 is exactly the identity.
    const sorted = Array.from(order)
      .sort((a, b) => sim[b] - sim[a] || (a === i ? -1 : b === i ? 1 : a - b))
      .slice(0, kMax);
    let acc = 0;
    for (const k of kList) {
      let num = 0;
      let den = 0;
      for (let t = 0; t < k; t++) {
        const j = sorted[t];
        num += sim[j] * norm[j];
        den += sim[j];
      }
      acc += den !== 0 ? num / den : norm[i];
    }
    out[i] = acc / kList.length;
  }
  return out;
}
