/**
 * `musc eval`: zero-shot scoring of a labelled category and its metrics. The
 * labels and masks are read only after scoring, for the metrics; the method
 * itself never sees them.
 */
import { existsSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Backbone } from './backbone/backbone.js';
import { loadMaskBinary, type Dataset } from './data/dataset.js';
import { imageSize } from './image/io.js';
import { readBtadCategory, readMvtecCategory, readVisaCategory } from './data/mvtec.js';
import { splitSubsets } from './data/subsets.js';
import { ConfigError, DatasetError } from './errors.js';
import { imageMetrics, pixelMetrics, type ImageMetrics, type PixelMetrics } from './metrics/index.js';
import { MIN_IMAGES, type MutualScoring } from './pipeline/msm.js';
import type { CrossScoring } from './pipeline/refine.js';
import { defaultKList } from './pipeline/rscin.js';
import { extractFeatures, planGeometry, scoreFeatures, type Failure, type MuscConfig, type MuscScores, type ProgressFn, type StageTimes } from './pipeline/musc.js';

/** Evaluation of one category. */
export interface CategoryResult {
  /** Category name (folder name, or VisA class). */
  readonly name: string;
  /** Images scored. */
  readonly n: number;
  /** Image-level metrics on the RsCIN scores. */
  readonly image: ImageMetrics;
  /** Pixel-level metrics on the maps at the working size. */
  readonly pixel: PixelMetrics;
  /** Wall-clock seconds for the whole category. */
  readonly seconds: number;
  /** Wall-clock seconds per stage: backbone (decode + forward), then scoring stages. */
  readonly times: { readonly features: number; readonly metrics: number } & Readonly<StageTimes>;
  /** Images that could not be read, with the reason. */
  readonly failures: readonly Failure[];
  /** Maps `[height, width]`, image and RsCIN scores, aligned with `dataset.items`. */
  readonly scores: MuscScores;
  /** The category as read, restricted to the scored images (labels, defect types, mask paths). */
  readonly dataset: Dataset;
  /** The configuration actually used (RsCIN windows resolved for the dataset). */
  readonly config: MuscConfig;
  /** Original sizes of the scored images, aligned with `dataset.items`. */
  readonly features: readonly { originalWidth: number; originalHeight: number }[];
}

/**
 * Reads a category folder in MVTec AD layout (also BTAD: `test/{ok,ko}`), or a VisA
 * class folder whose parent holds `split_csv/1cls.csv`.
 */
export async function readCategory(dir: string): Promise<Dataset> {
  const abs = resolve(dir);
  if (!existsSync(abs)) throw new DatasetError(`${abs} does not exist`);
  const parent = dirname(abs);
  if (existsSync(join(parent, 'split_csv', '1cls.csv')) && !existsSync(join(abs, 'test'))) {
    return readVisaCategory(parent, basename(abs));
  }
  if (existsSync(join(abs, 'test', 'ko')) || existsSync(join(abs, 'test', 'ok'))) return readBtadCategory(abs);
  return readMvtecCategory(abs);
}

/** Hooks and options of `evaluateCategory` / `evaluateDataset`. */
export interface EvaluateHooks {
  readonly onProgress?: ProgressFn;
  readonly signal?: AbortSignal;
  /** Score a stratified, deterministic subset of at most this many images (≥ 5). */
  readonly maxImages?: number;
  /** RsCIN windows (default: `defaultKList`: 1 under `excess`, else the dataset family's, as the reference). */
  readonly kList?: readonly number[];
  readonly threads?: number;
  /** Where mutual scoring runs (default: in this process; see `MutualScoring`). */
  readonly mutualScoring?: MutualScoring;
  /** Where refinement's cross jobs run (default: in this process; see `CrossScoring`). */
  readonly crossScoring?: CrossScoring;
  /** Mutual-scoring sets in progress at once (default 1). */
  readonly setsInFlight?: number;
}

/** Scores one category folder zero-shot and computes its metrics (`readCategory` + `evaluateDataset`). */
export async function evaluateCategory(dir: string, backbone: Backbone, cfg: MuscConfig, hooks: EvaluateHooks = {}): Promise<CategoryResult> {
  checkMaxImages(hooks.maxImages);
  return evaluateDataset(await readCategory(dir), backbone, cfg, hooks);
}

/** Fails for a `maxImages` below what mutual scoring needs. */
export function checkMaxImages(maxImages: number | undefined): void {
  if (maxImages !== undefined && !(Number.isInteger(maxImages) && maxImages >= MIN_IMAGES)) {
    throw new ConfigError(`--max-images must be an integer of at least ${MIN_IMAGES} (got ${maxImages}): MuSc scores images against each other`);
  }
}

/** Scores a dataset read by `readCategory` zero-shot and computes its metrics. */
export async function evaluateDataset(full: Dataset, backbone: Backbone, cfg: MuscConfig, hooks: EvaluateHooks = {}): Promise<CategoryResult> {
  const start = performance.now();
  checkMaxImages(hooks.maxImages);
  let dataset = full;
  if (hooks.maxImages && dataset.items.length > hooks.maxImages) {
    // A stratified, deterministic subset: the reference's own subset split, first part.
    // Per-type rounding can overshoot by a few images: add parts until the first subset fits.
    let parts = Math.ceil(dataset.items.length / hooks.maxImages);
    let keep = splitSubsets(dataset.items, parts, 42)[0];
    while (keep.length > hooks.maxImages) keep = splitSubsets(dataset.items, ++parts, 42)[0];
    dataset = { ...dataset, items: keep.map((i) => dataset.items[i]) };
  }
  // Masks are read before the expensive part so a corrupt mask costs seconds, not the scoring;
  // they are resized to the maps' working size, exactly as the images are.
  const files = dataset.items.map((i) => i.imagePath);
  // The images' sizes, from their headers once: for the geometry, and to check each mask against its
  // image's shape (a rotated or foreign mask is refused, not stretched). An unreadable image is
  // reported by the extraction instead.
  const sizes = await Promise.all(files.map((f) => imageSize(f).catch(() => null)));
  const geometry = await planGeometry(files, backbone, cfg, sizes);
  const allMasks = await Promise.all(dataset.items.map((it, k) => loadMaskBinary(it, geometry.map, dataset.maskRule, sizes[k] ?? undefined)));
  let t = performance.now();
  const { features, failures } = await extractFeatures(files, backbone, cfg, { ...hooks, geometry });
  const ok = new Set(features.map((f) => f.file));
  const items = dataset.items.filter((i) => ok.has(i.imagePath));
  const masks = allMasks.filter((_, k) => ok.has(dataset.items[k].imagePath));
  // RsCIN windows follow the dataset family as in the reference unless given explicitly
  // (only each image's own score under the image score `excess`: `defaultKList`).
  const kList = hooks.kList ?? defaultKList(cfg.imageScore, dataset.rscinKList);
  // With divideNum > 1, scoreFeatures splits by parent folder, which is each item's defect type here.
  const featureSeconds = (performance.now() - t) / 1000;
  const times: StageTimes = { lnamd: 0, msm: 0, maps: 0, rscin: 0 };
  const scores = await scoreFeatures(features, { ...cfg, kList }, { ...hooks, times });
  t = performance.now();
  const labels = Uint8Array.from(items, (i) => i.label);
  const image = imageMetrics(scores.rscinScores, labels);
  const pixel = pixelMetrics(scores.maps, masks, scores.height, scores.width);
  return {
    name: dataset.name,
    n: items.length,
    image,
    pixel,
    seconds: (performance.now() - start) / 1000,
    times: { features: featureSeconds, ...times, metrics: (performance.now() - t) / 1000 },
    failures,
    scores,
    dataset: { ...dataset, items },
    features: features.map((f) => ({ originalWidth: f.originalWidth, originalHeight: f.originalHeight })),
    config: { ...cfg, kList: scores.kList },
  };
}

/** Arithmetic mean over categories of every metric. */
export function meanMetrics(results: readonly Pick<CategoryResult, 'image' | 'pixel'>[]): { image: ImageMetrics; pixel: PixelMetrics } {
  const m = (f: (r: Pick<CategoryResult, 'image' | 'pixel'>) => number) => results.reduce((a, r) => a + f(r), 0) / results.length;
  return {
    image: { auroc: m((r) => r.image.auroc), ap: m((r) => r.image.ap), f1max: m((r) => r.image.f1max) },
    pixel: {
      auroc: m((r) => r.pixel.auroc),
      ap: m((r) => r.pixel.ap),
      f1max: m((r) => r.pixel.f1max),
      pro: m((r) => r.pixel.pro),
      aupro_mvtec: m((r) => r.pixel.aupro_mvtec),
    },
  };
}
