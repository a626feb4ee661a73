/**
 * Per-region overlap (PRO) metrics for anomaly segmentation:
 * - {@link proMuSc}: the cflow-ad style PRO that MuSc reports (`cal_pro_score`
 *   in MuSc's `utils/metrics.py`: 200 numpy-arange thresholds, FPR < 0.3,
 *   min-max rescaled FPR axis, trapezoid area);
 * - {@link auproMvtec}: the official MVTec AD evaluation AUPRO (`compute_pro` +
 *   `trapezoid`, integrated to FPR 0.3 and divided by 0.3).
 *
 * Hand-written: no JavaScript library implements either. Both are computed
 * without one pass per threshold: pixels are split once by ground truth into
 * typed arrays, then the MuSc PRO bins every pixel into its threshold interval
 * and prefix-sums, and the MVTec AUPRO sorts scores numerically (typed arrays,
 * radix sort for large float32 inputs) and sweeps distinct values. 83 images of
 * 518x518 (22 M pixels) take about a second each, not minutes.
 */
import { MuscError } from '../errors.js';
import { assertFiniteScore, sortScores, type ScoreArray } from './ranking.js';
import { label8 } from './regions.js';

/**
 * The pixels of a set of images split by ground truth, with 8-connected GT
 * regions numbered across all images. Built once by {@link partitionPixels}
 * and shared by the pixel metrics so the category is labelled and copied once.
 */
export interface PixelPartition {
  /** Scores of GT-normal pixels. Order is unspecified until {@link sortNormalScores} sorts it ascending in place. */
  normal: ScoreArray;
  /** Whether `normal` is sorted ascending. */
  normalSorted: boolean;
  /** Scores of GT-anomalous pixels, image by image in raster order. */
  anomalous: ScoreArray;
  /** Region index (0-based, pooled over all images) of each anomalous pixel. */
  anomalousRegion: Int32Array;
  /** Pixel count of each region. */
  regionArea: Int32Array;
  /** Number of regions over all images. */
  regionCount: number;
  /** Minimum and maximum score over all pixels (NaN for no pixels). */
  min: number;
  max: number;
}

/** The MuSc PRO curve: one point per threshold. */
export interface ProCurve {
  /** numpy `arange(min, max, (max - min)/steps)`, bit-exact (see {@link numpyArangeThresholds}). */
  thresholds: Float64Array;
  /** FPR at each threshold: normal pixels with score > th over all normal pixels. */
  fpr: Float64Array;
  /** Mean over all regions (pooled over images) of the fraction of region pixels with score > th. */
  pro: Float64Array;
}

/** Options of {@link auproMvtec}. */
export interface AuproMvtecOptions {
  /** FPR integration limit, in (0, 1]; the result is divided by it. Default 0.3. */
  integrationLimit?: number;
  /**
   * Round each FPR to float32 as the official code does (it casts the
   * cumulative false-positive counts to float32 before dividing). Default false:
   * FPRs stay float64; the result then differs from the official one by float32
   * resolution at most (~1e-7; ~1e-9 on the test fixtures). With true it matches
   * the official code to ~1e-15, under NumPy 1.x and 2.x alike (both compute
   * float32(float32(count) / normalCount)).
   */
  float32Fpr?: boolean;
}

function checkShapes(maps: readonly ScoreArray[], masks: readonly Uint8Array[], height: number, width: number): void {
  if (maps.length !== masks.length) {
    throw new MuscError('METRIC_INPUT', `${maps.length} anomaly maps but ${masks.length} masks`);
  }
  const size = height * width;
  if (!Number.isInteger(size) || height < 0 || width < 0) {
    throw new MuscError('METRIC_INPUT', `invalid map size ${height}x${width}`);
  }
  for (let i = 0; i < maps.length; i++) {
    if (maps[i].length !== size || masks[i].length !== size) {
      throw new MuscError(
        'METRIC_INPUT',
        `image ${i}: map has ${maps[i].length} and mask ${masks[i].length} pixels, expected ${height}x${width}`,
      );
    }
  }
}

/**
 * Splits all pixels by ground truth (mask non-zero = anomalous) and labels the
 * 8-connected GT regions of each mask (skimage `label(connectivity=2)` /
 * scipy `label` with a 3x3 structure, as both PRO references use).
 * Scores are copied into Float32Array if every map is Float32Array, else Float64Array.
 * Throws a `MuscError` (code `METRIC_INPUT`) on shape mismatches and non-finite scores.
 */
export function partitionPixels(
  maps: readonly ScoreArray[],
  masks: readonly Uint8Array[],
  height: number,
  width: number,
): PixelPartition {
  checkShapes(maps, masks, height, width);
  const size = height * width;
  let nAnom = 0;
  for (const m of masks) for (let p = 0; p < size; p++) if (m[p] !== 0) nAnom++;
  const nNormal = maps.length * size - nAnom;
  const f32 = maps.every((m) => m instanceof Float32Array);
  const normal = f32 ? new Float32Array(nNormal) : new Float64Array(nNormal);
  const anomalous = f32 ? new Float32Array(nAnom) : new Float64Array(nAnom);
  const anomalousRegion = new Int32Array(nAnom);
  // Region areas grow image by image; each image's label map is dropped after
  // its pass so 80+ full-size Int32 label maps are never alive at once.
  let regionArea = new Int32Array(64);
  let regionCount = 0;
  let min = Infinity;
  let max = -Infinity;
  let q = 0;
  let a = 0;
  for (let i = 0; i < maps.length; i++) {
    const map = maps[i];
    const { labels, count } = label8(masks[i], height, width);
    if (regionCount + count > regionArea.length) {
      const grown = new Int32Array(Math.max(2 * regionArea.length, regionCount + count));
      grown.set(regionArea);
      regionArea = grown;
    }
    for (let p = 0; p < size; p++) {
      const v = map[p];
      if (v - v !== 0) assertFiniteScore(v, i * size + p, `anomaly map ${i}`);
      if (v < min) min = v;
      if (v > max) max = v;
      const l = labels[p];
      if (l === 0) {
        normal[q++] = v;
      } else {
        const r = regionCount + l - 1;
        anomalous[a] = v;
        anomalousRegion[a++] = r;
        regionArea[r]++;
      }
    }
    regionCount += count;
  }
  regionArea = regionArea.slice(0, regionCount);
  if (maps.length === 0 || size === 0) {
    min = NaN;
    max = NaN;
  }
  return { normal, normalSorted: false, anomalous, anomalousRegion, regionArea, regionCount, min, max };
}

/** Sorts `part.normal` ascending in place (once), see `sortScores`. */
export function sortNormalScores(part: PixelPartition): void {
  if (!part.normalSorted) {
    sortScores(part.normal);
    part.normalSorted = true;
  }
}

/**
 * numpy's `np.arange(min, max, (max - min) / steps)` for float64 `min < max`,
 * bit for bit: length ceil((max − min)/step) (normally `steps`, but rounding
 * makes it steps + 1 for a few percent of ranges), element 0 = min,
 * element 1 = min + step, and element k ≥ 2 = min + k·(element1 − min), which is
 * how numpy's float fill loop extrapolates. Returns an empty array if min ≥ max
 * (numpy raises for a zero step).
 */
export function numpyArangeThresholds(min: number, max: number, steps = 200): Float64Array {
  if (!(min < max)) return new Float64Array(0);
  const step = (max - min) / steps;
  const length = Math.ceil((max - min) / step);
  const th = new Float64Array(length);
  th[0] = min;
  if (length > 1) {
    th[1] = min + step;
    const delta = th[1] - min;
    for (let k = 2; k < length; k++) th[k] = min + k * delta;
  }
  return th;
}

/**
 * The per-threshold curve of {@link proMuSc}, computed from a partition.
 *
 * Instead of one pass per threshold, every pixel is put once into bin
 * c(v) = #{k : th_k < v} (a float estimate fixed up against the exact
 * thresholds, so `pred > th` is decided exactly as numpy does on float64);
 * pixel v is predicted positive at threshold k iff k < c(v). Suffix sums of
 * the bin counts give the FP count of every threshold, and per region the TP
 * count, so the curve equals 200 separate `pred > th` passes exactly; only the
 * mean over regions is summed in a different order than numpy (~1e-16).
 *
 * FPR is NaN if there is no normal pixel, PRO is NaN if there is no region.
 * Empty curve if all scores are equal (numpy's arange raises for a zero step).
 */
export function proMuScCurveFromPartition(part: PixelPartition, steps = 200): ProCurve {
  const th = numpyArangeThresholds(part.min, part.max, steps);
  const L = th.length;
  const fpr = new Float64Array(L);
  const pro = new Float64Array(L);
  if (L === 0) return { thresholds: th, fpr, pro };
  const min = th[0];
  const delta = L > 1 ? th[1] - min : 1;

  const binOf = (v: number): number => {
    let j = Math.ceil((v - min) / delta);
    if (!(j >= 0)) j = 0;
    else if (j > L) j = L;
    while (j > 0 && th[j - 1] >= v) j--;
    while (j < L && th[j] < v) j++;
    return j;
  };

  // bins: j in [0, L]; positive at threshold k  <=>  bin > k.
  const normalCount = new Float64Array(L + 1);
  const normal = part.normal;
  for (let p = 0; p < normal.length; p++) normalCount[binOf(normal[p])]++;
  let acc = 0;
  for (let k = L - 1; k >= 0; k--) {
    acc += normalCount[k + 1];
    fpr[k] = acc / normal.length;
  }

  // Group the anomalous pixels' bins by region (counting sort on region index)
  // so each region needs only one reusable histogram.
  const R = part.regionCount;
  if (R === 0) {
    pro.fill(NaN);
    return { thresholds: th, fpr, pro };
  }
  const start = new Int32Array(R + 1);
  for (let r = 0; r < R; r++) start[r + 1] = start[r] + part.regionArea[r];
  const fill = start.slice(0, R);
  const grouped = new Int32Array(part.anomalous.length);
  for (let a = 0; a < part.anomalous.length; a++) {
    grouped[fill[part.anomalousRegion[a]]++] = binOf(part.anomalous[a]);
  }
  const hist = new Int32Array(L + 1);
  const proSum = new Float64Array(L);
  for (let r = 0; r < R; r++) {
    hist.fill(0);
    for (let t = start[r]; t < start[r + 1]; t++) hist[grouped[t]]++;
    const area = part.regionArea[r];
    let tp = 0;
    for (let k = L - 1; k >= 0; k--) {
      tp += hist[k + 1];
      // tp / area per region, as cal_pro_score does, so each term is rounded like numpy's.
      proSum[k] += tp / area;
    }
  }
  for (let k = 0; k < L; k++) pro[k] = proSum[k] / R;
  return { thresholds: th, fpr, pro };
}

/**
 * The MuSc / cflow-ad PRO score of a curve: keep thresholds with FPR < 0.3
 * (strict, no interpolation at 0.3), min-max rescale the kept FPRs to [0, 1],
 * trapezoidal area under (FPR, PRO) as sklearn `auc` (positive for the
 * decreasing FPR axis). NaN if fewer than 2 thresholds are kept or the kept FPRs
 * are all equal (the reference raises or returns nan there), or PRO is NaN.
 */
export function proScoreFromCurve(curve: ProCurve, expectFpr = 0.3): number {
  const xs: number[] = [];
  const ys: number[] = [];
  for (let k = 0; k < curve.fpr.length; k++) {
    if (curve.fpr[k] < expectFpr) {
      xs.push(curve.fpr[k]);
      ys.push(curve.pro[k]);
    }
  }
  if (xs.length < 2) return NaN;
  let lo = Infinity;
  let hi = -Infinity;
  for (const x of xs) {
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  if (!(hi > lo)) return NaN;
  const span = hi - lo;
  for (let i = 0; i < xs.length; i++) xs[i] = (xs[i] - lo) / span;
  // sklearn auc: direction -1 for a non-increasing x, error for a non-monotonic one.
  let anyDown = false;
  let anyUp = false;
  for (let i = 1; i < xs.length; i++) {
    if (xs[i] < xs[i - 1]) anyDown = true;
    else if (xs[i] > xs[i - 1]) anyUp = true;
  }
  if (anyDown && anyUp) return NaN; // cannot happen: FPR never rises with the threshold
  const direction = anyDown ? -1 : 1;
  let area = 0;
  for (let i = 1; i < xs.length; i++) area += ((xs[i] - xs[i - 1]) * (ys[i] + ys[i - 1])) / 2;
  return direction * area;
}

/**
 * PRO as MuSc reports it (`cal_pro_score`, from cflow-ad), in [0, 1].
 *
 * Thresholds: `np.arange(min, max, (max − min)/200)` over the global min/max
 * of all maps (200 or, by float rounding, 201 values; max excluded),
 * reproduced bit-exactly in float64. Prediction `pred > th` (strict). Regions:
 * 8-connected GT components of each mask, the PRO being the mean over all
 * regions of all images pooled. FPR pooled over all normal pixels. Then
 * {@link proScoreFromCurve}.
 *
 * Exactness: the per-threshold FP/TP counts equal numpy's exactly for the
 * given values taken as float64 (MuSc's maps are float64; for Float32Array
 * input this is numpy on the float32 values widened to float64). The score
 * matches the Python reference to ~1e-15.
 *
 * Returns NaN when there is no GT region, no normal pixel, all scores are equal,
 * or fewer than 2 thresholds have FPR < 0.3. Masks: non-zero = anomalous.
 * Throws a `MuscError` (code `METRIC_INPUT`) on shape mismatches or non-finite scores.
 */
export function proMuSc(maps: readonly ScoreArray[], masks: readonly Uint8Array[], height: number, width: number): number {
  const part = partitionPixels(maps, masks, height, width);
  return proScoreFromCurve(proMuScCurveFromPartition(part));
}

/** Index of the first element ≥ v in ascending `a` (v is known to be present). */
function lowerBound(a: ScoreArray, v: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Official MVTec AD AUPRO from a partition. `anomalousSorted` may pass the
 * anomalous scores already sorted ascending (pixelMetrics reuses the ranking's
 * copy); `part.normal` is sorted in place if it is not yet.
 * See {@link auproMvtec} for the definition and exactness.
 */
export function auproMvtecFromPartition(
  part: PixelPartition,
  options: AuproMvtecOptions = {},
  anomalousSorted?: ScoreArray,
): number {
  const limit = options.integrationLimit ?? 0.3;
  if (!(limit > 0 && limit <= 1)) {
    throw new MuscError('METRIC_INPUT', `integration limit must be in (0, 1], got ${limit}`);
  }
  const f32 = options.float32Fpr ?? false;
  const nNormal = part.normal.length;
  const R = part.regionCount;
  if (nNormal === 0 || R === 0) return NaN;
  sortNormalScores(part);
  const normal = part.normal;
  let sortedAnom = anomalousSorted;
  if (sortedAnom === undefined) {
    sortedAnom = part.anomalous.slice();
    sortScores(sortedAnom);
  } else if (sortedAnom.length !== part.anomalous.length) {
    throw new MuscError('METRIC_INPUT', 'anomalousSorted does not match the partition');
  }

  // Distinct anomalous values, each with the summed PRO increment 1/area of its
  // pixels: what the official cumsum adds over a run of tied scores.
  const distinct = sortedAnom.slice();
  let m = 0;
  for (let t = 0; t < sortedAnom.length; t++) {
    if (m === 0 || sortedAnom[t] !== distinct[m - 1]) distinct[m++] = sortedAnom[t];
  }
  const weight = new Float64Array(m);
  const uniq = distinct.subarray(0, m);
  for (let a = 0; a < part.anomalous.length; a++) {
    weight[lowerBound(uniq, part.anomalous[a])] += 1 / part.regionArea[part.anomalousRegion[a]];
  }

  // Sweep distinct scores from the top; only the last point of each tie run is a
  // curve point (the official keep_mask). The curve is integrated on the fly so
  // 22 M-point curves are never stored; x is non-decreasing, so the sweep stops
  // at the first point past the limit.
  let u = m - 1;
  let j = nNormal - 1;
  let fpCum = 0;
  let proCum = 0;
  let x0 = 0; // the official curve starts at (0, 0)
  let y0 = 0;
  let area = 0;
  let done = false;
  const step = (x1: number, y1: number): void => {
    if (x1 <= limit) {
      area += 0.5 * (y1 + y0) * (x1 - x0);
      x0 = x1;
      y0 = y1;
      return;
    }
    // First x past the limit: linear interpolation unless the limit itself was a point.
    if (x0 !== limit) {
      const yInterp = y0 + ((y1 - y0) * (limit - x0)) / (x1 - x0);
      area += 0.5 * (yInterp + y0) * (limit - x0);
    }
    done = true;
  };
  while (!done && (u >= 0 || j >= 0)) {
    let v: number;
    if (u < 0) v = normal[j];
    else if (j < 0) v = uniq[u];
    else v = uniq[u] > normal[j] ? uniq[u] : normal[j];
    while (j >= 0 && normal[j] === v) {
      j--;
      fpCum++;
    }
    if (u >= 0 && uniq[u] === v) proCum += weight[u--];
    let x = f32 ? Math.fround(Math.fround(fpCum) / nNormal) : fpCum / nNormal;
    let y = proCum / R;
    // The official code clips both to 1 against cumsum rounding.
    if (x > 1) x = 1;
    if (y > 1) y = 1;
    step(x, y);
  }
  if (!done) step(1, 1); // the official curve ends at (1, 1)
  return area / limit;
}

/**
 * Official MVTec AD AUPRO (the MVTec AD evaluation code: `compute_pro` then
 * `trapezoid(fprs, pros, x_max=0.3) / 0.3`), in [0, 1].
 *
 * Definition: for every distinct anomaly score s (all pixels of all images
 * sorted, ties merged), the point (FPR, PRO) of the prediction `score ≥ s`,
 * where FPR = false positives over all GT-normal pixels and PRO = mean over all
 * 8-connected GT regions of all images of the region's fraction of
 * predicted-positive pixels; the curve is prefixed by (0, 0) and suffixed by
 * (1, 1), integrated with the trapezoid rule up to the limit, linearly
 * interpolating the last segment at the limit, and divided by the limit.
 *
 * Exactness: the sweep visits every distinct score (no threshold sampling), so
 * the curve points are the official ones exactly. FPR is count/normalCount in
 * float64 by default (the official code stores it in float32, a ≤ ~1e-7
 * difference); `float32Fpr: true` reproduces that rounding. PRO sums 1/area
 * per pixel like the official cumsum, in a different order (~1e-15).
 *
 * Returns NaN when there is no GT region or no normal pixel (the official code
 * divides by zero). Masks: non-zero = anomalous. Throws a `MuscError`
 * (code `METRIC_INPUT`) on shape mismatches, non-finite scores or a limit outside (0, 1].
 */
export function auproMvtec(
  maps: readonly ScoreArray[],
  masks: readonly Uint8Array[],
  height: number,
  width: number,
  options: AuproMvtecOptions = {},
): number {
  return auproMvtecFromPartition(partitionPixels(maps, masks, height, width), options);
}
