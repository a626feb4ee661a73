/**
 * Choosing the decision threshold without labels. MuSc gives scores, not decisions;
 * a threshold on the RsCIN image scores needs an assumption about the batch, and
 * each rule states its own so the report can show it. The one place thresholds are
 * chosen: `musc run`, `musc eval --report` and bank building all call `chooseThreshold`.
 * Decisions themselves are made by `decide` (decisions.ts).
 */
import { ConfigError } from '../errors.js';

/** How the decision threshold is chosen. */
export type ThresholdRule =
  /** Otsu's split of the scores: assumes the batch holds normal and defective images in two groups. */
  | { readonly method: 'otsu' }
  /** median + z·1.4826·MAD (z default 3): assumes defects are a minority of outliers. */
  | { readonly method: 'mad'; readonly z?: number }
  /** Flags the round(defectRate·n) highest scores; `defectRate` in [0, 1). */
  | { readonly method: 'rate'; readonly defectRate: number }
  /** A fixed value on the decision score. */
  | { readonly method: 'fixed'; readonly value: number };

/** A chosen threshold with the assumption behind it, in words for the report. */
export interface Threshold {
  /** Images whose decision score is above `value` are anomalous. */
  readonly value: number;
  /** How it was chosen, in a few words (e.g. `Otsu split`). */
  readonly method: string;
  /** The assumption the choice rests on, in a sentence for the report. */
  readonly assumption: string;
}

function sortedCopy(scores: ArrayLike<number>): Float64Array {
  return Float64Array.from(scores).sort();
}

/**
 * Otsu's split of the score distribution: the cut maximising the between-class
 * variance, computed exactly over all n−1 cuts of the sorted scores.
 */
export function otsuThreshold(scores: ArrayLike<number>): number {
  const s = sortedCopy(scores);
  const n = s.length;
  if (n < 2) return s[0] ?? 0;
  let total = 0;
  for (const v of s) total += v;
  let best = -1;
  let cut = (s[0] + s[n - 1]) / 2;
  let left = 0;
  for (let k = 1; k < n; k++) {
    left += s[k - 1];
    if (s[k] === s[k - 1]) continue; // no cut between equal scores
    const w0 = k / n;
    const w1 = 1 - w0;
    const m0 = left / k;
    const m1 = (total - left) / (n - k);
    const between = w0 * w1 * (m0 - m1) ** 2;
    if (between > best) {
      best = between;
      cut = (s[k - 1] + s[k]) / 2;
    }
  }
  return cut;
}

/**
 * median + z · 1.4826 · MAD: the robust outlier rule. When more than half the scores are equal
 * the MAD is 0 and the threshold would be the median itself, flagging any image a hair above it;
 * the spread is then estimated from the mean absolute deviation, 1.2533 · meanAD (the usual
 * fallback of robust z-scores, Iglewicz & Hoaglin), which is 0 only when all scores are equal.
 */
export function madThreshold(scores: ArrayLike<number>, z = 3): number {
  const s = sortedCopy(scores);
  const med = quantileSorted(s, 0.5);
  const dev = sortedCopy(Array.from(s, (v) => Math.abs(v - med)));
  const mad = quantileSorted(dev, 0.5);
  if (mad > 0) return med + z * 1.4826 * mad;
  const meanAd = dev.reduce((a, v) => a + v, 0) / Math.max(1, dev.length);
  return med + z * 1.2533 * meanAd;
}

/** Linear-interpolated quantile of sorted values (numpy's default). */
export function quantileSorted(s: Float64Array, q: number): number {
  if (s.length === 0) return NaN;
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(s.length - 1, lo + 1);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

/** Applies a rule to the scores (decisions are then `decide(score, value)`). */
export function chooseThreshold(scores: ArrayLike<number>, rule: ThresholdRule): Threshold {
  switch (rule.method) {
    case 'fixed':
      if (!Number.isFinite(rule.value)) throw new ConfigError(`--threshold must be a number (got ${rule.value})`);
      return { value: rule.value, method: 'fixed', assumption: `Threshold ${rule.value} given by the user.` };
    case 'rate': {
      const p = rule.defectRate;
      if (!(p >= 0 && p < 1)) throw new ConfigError(`--defect-rate must be in [0, 1) (got ${p})`);
      const s = sortedCopy(scores);
      // The k = round(p·n) highest scores are flagged; the cut lies between ranks.
      const k = Math.round(p * s.length);
      const value = k === 0 ? s[s.length - 1] : k >= s.length ? s[0] - 1e-9 : (s[s.length - k - 1] + s[s.length - k]) / 2;
      // Ties at the cut flag all or none of the tied images: say how many the threshold flags.
      let flagged = 0;
      for (const v of s) if (v > value) flagged++;
      const tie = flagged === k ? '' : ` (${flagged}, not ${k}: scores tie at the cut)`;
      return {
        value,
        method: `expected defect rate ${(100 * p).toFixed(1)} %`,
        assumption: `About ${(100 * p).toFixed(1)} % of the images are defective (given with --defect-rate); the ${k} highest-scoring images are flagged${tie}.`,
      };
    }
    case 'mad': {
      const z = rule.z ?? 3;
      return {
        value: madThreshold(scores, z),
        method: `median + ${z}·MAD`,
        assumption: `Most images are normal (defects are a minority, well under half), so defective images are outliers more than ${z} robust standard deviations above the median score.`,
      };
    }
    case 'otsu':
      return {
        value: otsuThreshold(scores),
        method: 'Otsu split',
        assumption:
          'The batch holds both normal and defective images and their scores form two groups; the threshold is the split that best separates them (Otsu). If every image is normal, some will still be flagged: use --defect-rate or --threshold then.',
      };
  }
}

/**
 * The threshold of a bank (chosen on the bank's own scores when it was built), or the
 * user's override, with its assumption in words.
 */
export function bankThreshold(bank: { readonly threshold: { readonly value: number; readonly method: string }; readonly reference: string; readonly images: readonly unknown[] }, override?: number): Threshold {
  if (override !== undefined) return chooseThreshold([], { method: 'fixed', value: override });
  const what = bank.reference === 'good' ? "leave-one-out scores of the bank's known-good images" : "RsCIN scores of the bank's images against each other";
  return {
    value: bank.threshold.value,
    method: `bank: ${bank.threshold.method}`,
    assumption: `Chosen when the bank was built (${bank.threshold.method} of the ${what}); new images are judged as they would have been among the bank images.`,
  };
}
