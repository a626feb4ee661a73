/**
 * MuSc evaluation metrics (spec section 7, MuSc `utils/metrics.py`), values in
 * [0, 1] (MuSc prints them x100).
 *
 * Hand-written: no JavaScript library provides sklearn-equal AUROC / AP /
 * F1-max, the cflow-ad PRO or the MVTec AUPRO. Each is checked against
 * scikit-learn / scikit-image / the official Python code by
 * `scripts/gen-metric-fixtures.py` and `test/metrics.test.ts`.
 */
import { MuscError } from '../errors.js';
import type { ImageMetrics, PixelMetrics } from './types.js';
import { rankingFromSorted, sortScores, splitSorted, type ScoreArray } from './ranking.js';
import {
  auproMvtecFromPartition,
  partitionPixels,
  proMuScCurveFromPartition,
  proScoreFromCurve,
  sortNormalScores,
} from './pro.js';

export {
  averagePrecision,
  f1Max,
  rankingFromSorted,
  rankingMetrics,
  rocAuc,
  sortScores,
  splitSorted,
  type RankingMetrics,
  type ScoreArray,
  type SortedByClass,
} from './ranking.js';
export { label8, type Labelling } from './regions.js';
export type { ImageMetrics, PixelMetrics } from './types.js';
export {
  auproMvtec,
  auproMvtecFromPartition,
  numpyArangeThresholds,
  partitionPixels,
  proMuSc,
  proMuScCurveFromPartition,
  proScoreFromCurve,
  sortNormalScores,
  type AuproMvtecOptions,
  type PixelPartition,
  type ProCurve,
} from './pro.js';

function toScoreArray(scores: ScoreArray | readonly number[]): ScoreArray {
  return scores instanceof Float32Array || scores instanceof Float64Array ? scores : Float64Array.from(scores);
}

function toLabels(labels: Uint8Array | readonly (number | boolean)[]): Uint8Array {
  if (labels instanceof Uint8Array) return labels;
  const out = new Uint8Array(labels.length);
  for (let i = 0; i < labels.length; i++) out[i] = labels[i] ? 1 : 0;
  return out;
}

/**
 * Image-level AUROC, AP and F1-max as MuSc's `compute_metrics` computes them
 * (sklearn `roc_auc_score`, `average_precision_score`, max finite F1 over
 * `precision_recall_curve`), in [0, 1].
 *
 * Follows MuSc's convention: if all labels are equal (or there are no images)
 * all three are 0. Labels: truthy / non-zero = anomalous. Exact up to the last
 * float rounding (see `rankingFromSorted`); throws a `MuscError` (code
 * `METRIC_INPUT`) on a length mismatch or a non-finite score.
 */
export function imageMetrics(
  scores: ScoreArray | readonly number[],
  labels: Uint8Array | readonly (number | boolean)[],
): ImageMetrics {
  const { positive, negative } = splitSorted(toScoreArray(scores), toLabels(labels));
  if (positive.length === 0 || negative.length === 0) return { auroc: 0, ap: 0, f1max: 0 };
  return rankingFromSorted(positive, negative);
}

/**
 * Pixel-level metrics of one category, in [0, 1]: AUROC, AP and F1-max over all
 * pixels of all images flattened (as sklearn on MuSc's raveled arrays), MuSc's
 * PRO (`proMuSc`: 200 numpy-arange thresholds, FPR < 0.3, min-max rescaled FPR)
 * and the official MVTec AUPRO (`auproMvtec`, limit 0.3, float64 FPR).
 *
 * `maps[i]` and `masks[i]` are row-major height x width; mask non-zero =
 * anomalous. The category is split by ground truth and labelled once, and the
 * sorted score arrays are shared between the ranking metrics and the MVTec sweep.
 *
 * Conventions: if no pixel is anomalous, all five are 0 (MuSc's rule). If every
 * pixel is anomalous, AUROC/AP/F1-max and both PRO values are NaN (undefined;
 * sklearn would raise). `pro` is NaN when fewer than 2 of its thresholds have
 * FPR < 0.3 or all scores are equal (the reference raises or returns nan).
 * Throws a `MuscError` (code `METRIC_INPUT`) on shape mismatches or non-finite scores.
 */
export function pixelMetrics(
  maps: readonly ScoreArray[],
  masks: readonly Uint8Array[],
  height: number,
  width: number,
): PixelMetrics {
  if (maps.length === 0) throw new MuscError('METRIC_INPUT', 'pixel metrics need at least one image');
  const part = partitionPixels(maps, masks, height, width);
  if (part.anomalous.length === 0) return { auroc: 0, ap: 0, f1max: 0, pro: 0, aupro_mvtec: 0 };
  const pro = proScoreFromCurve(proMuScCurveFromPartition(part));
  // Sorting `normal` in place is harmless for the PRO above (binning ignores order) and is reused below.
  sortNormalScores(part);
  const anomalousSorted = part.anomalous.slice();
  sortScores(anomalousSorted);
  const ranking = rankingFromSorted(anomalousSorted, part.normal);
  const aupro_mvtec = auproMvtecFromPartition(part, {}, anomalousSorted);
  return { ...ranking, pro, aupro_mvtec };
}
