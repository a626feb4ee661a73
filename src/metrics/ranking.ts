/**
 * Threshold-free ranking metrics (AUROC, average precision, F1-max) for binary
 * labels, equal to scikit-learn's `roc_auc_score`, `average_precision_score`
 * and `precision_recall_curve` (+ F1-max as MuSc computes it).
 *
 * Hand-written: no JavaScript library provides sklearn-equal versions of these,
 * and MuSc reports them over tens of millions of pixels, so they must also be
 * fast and memory-lean. Nothing here uses `Array.prototype.sort` with a
 * comparator (boxed numbers, far too slow at 20 M elements): scores are split by
 * class into typed arrays, each sorted numerically (radix sort for large
 * Float32Arrays, else the native typed-array sort), and the two sorted arrays
 * are merge-walked from the top, grouping equal scores the way sklearn's
 * `_binary_clf_curve` groups tied thresholds.
 */
import { MuscError } from '../errors.js';

/** Score arrays accepted by the metrics. Float32 inputs stay float32 (half the memory when sorting). */
export type ScoreArray = Float32Array | Float64Array;

/** AUROC, AP and F1-max of one ranking, all in [0, 1]. */
export interface RankingMetrics {
  auroc: number;
  ap: number;
  f1max: number;
}

/** Scores split by ground-truth class, each sorted ascending. */
export interface SortedByClass {
  positive: ScoreArray;
  negative: ScoreArray;
}

/** Throws if `v` is NaN or ±Infinity; sklearn rejects both ("Input contains NaN/infinity"). */
export function assertFiniteScore(v: number, index: number, what: string): void {
  // v - v is NaN exactly for NaN and ±Infinity, so one comparison covers both.
  if (v - v !== 0) {
    throw new MuscError('METRIC_INPUT', `${what}: non-finite score ${v} at index ${index}; metrics need finite scores`);
  }
}

/** Below this length the native typed-array sort beats the radix sort's fixed 2 x 65536-bucket cost. */
const RADIX_MIN_LENGTH = 1 << 17;

/**
 * Sorts ascending in place, numerically, like `TypedArray.prototype.sort()`
 * without a comparator (-0 before +0; inputs here never hold NaN).
 *
 * Large Float32Arrays use a two-pass LSD radix sort on order-preserving
 * uint32 keys: V8's native typed sort takes ~3 s for 20 M floats, the radix
 * sort ~0.6 s, and MuSc categories reach 50 M pixels. It needs a temporary
 * Uint32Array of the same length. Float64Arrays use the native sort.
 */
export function sortScores(a: ScoreArray): void {
  if (a instanceof Float64Array || a.length < RADIX_MIN_LENGTH) {
    a.sort();
    return;
  }
  const n = a.length;
  const keys = new Uint32Array(a.buffer, a.byteOffset, n);
  // IEEE-754 bit patterns order like the floats once negatives are bit-flipped
  // and positives get the sign bit set.
  for (let i = 0; i < n; i++) {
    const k = keys[i];
    keys[i] = k & 0x80000000 ? ~k : k | 0x80000000;
  }
  const hist = new Uint32Array(2 * 65536);
  for (let i = 0; i < n; i++) {
    const k = keys[i];
    hist[k & 0xffff]++;
    hist[65536 + (k >>> 16)]++;
  }
  let src: Uint32Array = keys;
  let dst: Uint32Array = new Uint32Array(n);
  for (let pass = 0; pass < 2; pass++) {
    const off = pass * 65536;
    const shift = pass * 16;
    // A digit shared by every key (e.g. the high half for scores in one binade) needs no pass.
    let first = 0;
    while (hist[off + first] === 0) first++;
    if (hist[off + first] === n) continue;
    let sum = 0;
    for (let b = 0; b < 65536; b++) {
      const c = hist[off + b];
      hist[off + b] = sum;
      sum += c;
    }
    for (let i = 0; i < n; i++) {
      const k = src[i];
      dst[hist[off + ((k >>> shift) & 0xffff)]++] = k;
    }
    const t = src;
    src = dst;
    dst = t;
  }
  if (src !== keys) keys.set(src);
  for (let i = 0; i < n; i++) {
    const k = keys[i];
    keys[i] = k & 0x80000000 ? k ^ 0x80000000 : ~k;
  }
}

/**
 * Copies the scores into two typed arrays by label (non-zero label = positive)
 * and sorts each ascending with {@link sortScores}.
 *
 * Float32 input gives Float32Array output, anything else Float64Array, so no
 * value is rounded. Throws a `MuscError` (code `METRIC_INPUT`) on a length
 * mismatch or a non-finite score.
 */
export function splitSorted(scores: ScoreArray, labels: Uint8Array): SortedByClass {
  if (scores.length !== labels.length) {
    throw new MuscError('METRIC_INPUT', `scores (${scores.length}) and labels (${labels.length}) differ in length`);
  }
  const n = scores.length;
  let nPos = 0;
  for (let i = 0; i < n; i++) if (labels[i] !== 0) nPos++;
  const f32 = scores instanceof Float32Array;
  const positive = f32 ? new Float32Array(nPos) : new Float64Array(nPos);
  const negative = f32 ? new Float32Array(n - nPos) : new Float64Array(n - nPos);
  let p = 0;
  let q = 0;
  for (let i = 0; i < n; i++) {
    const v = scores[i];
    if (v - v !== 0) assertFiniteScore(v, i, 'ranking metrics');
    if (labels[i] !== 0) positive[p++] = v;
    else negative[q++] = v;
  }
  sortScores(positive);
  sortScores(negative);
  return { positive, negative };
}

/**
 * AUROC, AP and F1-max from scores already split by class and sorted ascending
 * (as {@link splitSorted} returns them). One merge walk over both arrays from
 * the highest score down; every distinct score value is one threshold, with all
 * samples tied at it entering together, exactly like sklearn's `_binary_clf_curve`.
 *
 * Exactness:
 * - AUROC is computed as the exact rational Σ_g FP_g·(2·TP_before + TP_g) / (2·P·N)
 *   with integer arithmetic in float64 (exact while 2·P·N < 2^53, i.e. up to
 *   ~1.3e8 samples at a balanced split), rounded once. sklearn integrates the ROC
 *   curve with `np.trapz` on normalised floats; the two agree to ~1e-15 (ties
 *   count one half, as in sklearn).
 * - AP is Σ_g (R_g − R_{g−1})·P_g over distinct thresholds (sklearn's step sum,
 *   no interpolation), evaluated as Σ_g TP_g·precision_g / P; agrees with
 *   sklearn to rounding (~1e-15 relative).
 * - F1-max is max over thresholds of 2·TP/(TP + FP + P), which equals
 *   2PR/(P+R) on sklearn's precision/recall points; points with P = R = 0
 *   (0/0 in sklearn) are skipped and sklearn's final (precision 1, recall 0)
 *   point contributes F1 = 0, as MuSc's "discard non-finite, take the max" does.
 *
 * If one class is empty the three values are NaN: sklearn raises for AUROC and
 * returns degenerate constants for AP (0 with a warning, or 1); callers that
 * follow MuSc map this case to 0 themselves.
 */
export function rankingFromSorted(positive: ScoreArray, negative: ScoreArray): RankingMetrics {
  const nPos = positive.length;
  const nNeg = negative.length;
  if (nPos === 0 || nNeg === 0) return { auroc: NaN, ap: NaN, f1max: NaN };
  let i = nPos - 1;
  let j = nNeg - 1;
  let tp = 0;
  let fp = 0;
  let aucTwice = 0; // integer-valued: Σ FP_g·(2·TP_before + TP_g)
  let apNumerator = 0;
  let f1max = 0; // sklearn's appended (precision 1, recall 0) point has F1 = 0
  while (i >= 0 || j >= 0) {
    let v: number;
    if (i < 0) v = negative[j];
    else if (j < 0) v = positive[i];
    else v = positive[i] > negative[j] ? positive[i] : negative[j];
    // `===` treats -0 and +0 as one threshold, like numpy's np.diff(...) != 0.
    let tpGroup = 0;
    while (i >= 0 && positive[i] === v) {
      i--;
      tpGroup++;
    }
    let fpGroup = 0;
    while (j >= 0 && negative[j] === v) {
      j--;
      fpGroup++;
    }
    aucTwice += fpGroup * (2 * tp + tpGroup);
    tp += tpGroup;
    fp += fpGroup;
    if (tpGroup > 0) apNumerator += tpGroup * (tp / (tp + fp));
    if (tp > 0) {
      const f1 = (2 * tp) / (tp + fp + nPos);
      if (f1 > f1max) f1max = f1;
    }
  }
  return { auroc: aucTwice / (2 * nPos * nNeg), ap: apNumerator / nPos, f1max };
}

/**
 * AUROC, AP and F1-max in one pass (one split, two typed sorts, one walk).
 * Prefer this over calling the three single-metric functions separately.
 * See {@link rankingFromSorted} for exactness and the NaN convention.
 */
export function rankingMetrics(scores: ScoreArray, labels: Uint8Array): RankingMetrics {
  const { positive, negative } = splitSorted(scores, labels);
  return rankingFromSorted(positive, negative);
}

/**
 * Area under the ROC curve; equals sklearn `roc_auc_score(labels, scores)`
 * (binary, no `max_fpr`), ties counted one half. Exact rational result rounded
 * once (see {@link rankingFromSorted}). Labels: non-zero = positive.
 * Returns NaN when all labels are equal (sklearn raises). Throws on NaN/±Infinity scores.
 */
export function rocAuc(scores: ScoreArray, labels: Uint8Array): number {
  return rankingMetrics(scores, labels).auroc;
}

/**
 * Average precision; equals sklearn `average_precision_score(labels, scores)`,
 * the step-wise Σ (R_n − R_{n−1})·P_n over distinct thresholds, no interpolation.
 * Returns NaN when all labels are equal (sklearn gives 0 with a warning for all
 * negative and 1 for all positive). Throws on NaN/±Infinity scores.
 */
export function averagePrecision(scores: ScoreArray, labels: Uint8Array): number {
  return rankingMetrics(scores, labels).ap;
}

/**
 * Maximum F1 over sklearn `precision_recall_curve` points, discarding
 * non-finite F1 (0/0), as MuSc's `compute_metrics` does. Returns NaN when all
 * labels are equal. Throws on NaN/±Infinity scores.
 */
export function f1Max(scores: ScoreArray, labels: Uint8Array): number {
  return rankingMetrics(scores, labels).f1max;
}
