/**
 * The MuSc pipeline, stage by stage as in the paper:
 * backbone -> lnamd -> msm -> maps -> rscin. I/O stays at the edges: this module
 * takes file paths only to hand them to the image loader, and reports bad files
 * instead of throwing so a long run finishes with partial results.
 */
import { basename, dirname } from 'node:path';
import type { Backbone, BackboneOutput } from '../backbone/backbone.js';
import { splitSubsets } from '../data/subsets.js';
import { ConfigError, MuscError, errorText } from '../errors.js';
import { loadImageRgb, type LoadedImage } from '../image/io.js';
import { gridOfBatch, type FeatureGrid, type Size2D } from '../tensor.js';
import { lnamdStack } from './lnamd.js';
import { anomalyMap, imageScore, upsampleAccumulate } from './maps.js';
import { MIN_IMAGES, mutualScores, type MsmPrecision, type MutualScoring } from './msm.js';
import { rscin, RSCIN_K_DEFAULT, usableKList } from './rscin.js';
import { SimilarityKernel } from './similarity-kernel.js';

/** Every hyper-parameter of the method, with the defaults used by `musc run/eval`. */
export interface MuscConfig {
  /** Working resolution S: images are resized to S x S; maps and pixel metrics live at S x S. */
  readonly imageSize: number;
  /** Backbone layers whose patch features are scored (each on its own grid). */
  readonly layers: readonly string[];
  /** LNAMD aggregation degrees (odd). */
  readonly rList: readonly number[];
  /** MSM interval of sorted minima as fractions of N−1: [low, high). */
  readonly interval: readonly [number, number];
  /** RsCIN window sizes. */
  readonly kList: readonly number[];
  /** Number of subsets the batch is split into for mutual scoring (reference `divide_num`). */
  readonly divideNum: number;
  /** Images per backbone forward pass. */
  readonly batchSize: number;
  /** Arithmetic of mutual scoring: `int8` (default, VNNI GEMM, ~2x faster) or `fp32` (the reference's). */
  readonly precision: MsmPrecision;
  /**
   * How RsCIN compares image embeddings; set it from `backbone.embeddingSimilarity`
   * (`dot` for DINO/DINOv2 as the reference, `cosine` otherwise).
   */
  readonly embeddingSimilarity: 'cosine' | 'dot';
}

/**
 * Defaults for the bundled ResNet50: 224 px, layer2 + layer3, r ∈ {1,3,5}, the
 * reference's 30 % interval and MVTec RsCIN windows, int8 mutual scoring. See
 * BENCHMARKS.md for the measurements behind the choice.
 */
export const DEFAULT_CONFIG: MuscConfig = {
  imageSize: 224,
  layers: ['layer2', 'layer3'],
  rList: [1, 3, 5],
  interval: [0, 0.3],
  kList: [...RSCIN_K_DEFAULT],
  divideNum: 1,
  batchSize: 8,
  // int8 stays within 0.5 points of fp32 on every metric on ../shared/data and is ~2x faster (BENCHMARKS.md).
  precision: 'int8',
  embeddingSimilarity: 'cosine',
};

/** Backbone output kept for one image. */
export interface ImageFeatures {
  readonly file: string;
  readonly originalWidth: number;
  readonly originalHeight: number;
  /** One grid per configured layer, `[C, gh, gw]` (CNN) or `[gh*gw, C]` (ViT). */
  readonly layers: readonly FeatureGrid[];
  readonly embedding: Float32Array;
}

/** A file that could not be used, with the reason. */
export interface Failure {
  readonly file: string;
  readonly error: string;
  readonly code: string;
}

/** Progress callback: stage name and fraction done in [0, 1]. */
export type ProgressFn = (stage: 'features' | 'scoring' | 'outputs', fraction: number) => void;

/** The working size images are resized to, and maps and pixel metrics live at. */
export function workingSize(cfg: Pick<MuscConfig, 'imageSize'>): Size2D {
  return { width: cfg.imageSize, height: cfg.imageSize };
}

/** Checks ranges of a config and fills defaults. */
export function resolveConfig(partial: Partial<MuscConfig> = {}): MuscConfig {
  const cfg: MuscConfig = { ...DEFAULT_CONFIG, ...partial };
  if (!Number.isInteger(cfg.imageSize) || cfg.imageSize < 32 || cfg.imageSize > 2048) throw new ConfigError(`image size must be an integer in 32..2048 (got ${cfg.imageSize})`);
  if (cfg.layers.length === 0) throw new ConfigError('at least one layer is needed');
  if (cfg.rList.length === 0 || cfg.rList.some((r) => !Number.isInteger(r) || r < 1 || r % 2 === 0)) throw new ConfigError(`r values must be odd positive integers (got ${cfg.rList.join(',')})`);
  const [lo, hi] = cfg.interval;
  if (!(lo >= 0 && hi <= 1 && lo < hi)) throw new ConfigError(`interval must satisfy 0 ≤ low < high ≤ 1 (got ${lo}, ${hi})`);
  if (cfg.kList.some((k) => !Number.isInteger(k) || k < 0)) throw new ConfigError(`RsCIN k values must be non-negative integers (got ${cfg.kList.join(',')})`);
  if (!Number.isInteger(cfg.divideNum) || cfg.divideNum < 1) throw new ConfigError(`divide number must be a positive integer (got ${cfg.divideNum})`);
  if (!Number.isInteger(cfg.batchSize) || cfg.batchSize < 1) throw new ConfigError(`batch size must be a positive integer (got ${cfg.batchSize})`);
  if (cfg.precision !== 'fp32' && cfg.precision !== 'int8') throw new ConfigError(`precision must be fp32 or int8 (got ${String(cfg.precision)})`);
  if (cfg.embeddingSimilarity !== 'cosine' && cfg.embeddingSimilarity !== 'dot') throw new ConfigError(`embedding similarity must be cosine or dot (got ${String(cfg.embeddingSimilarity)})`);
  return cfg;
}

/** Splits one backbone batch into per-image features (copies, so the batch can be freed). */
export function featuresOfBatch(images: readonly LoadedImage[], out: BackboneOutput): ImageFeatures[] {
  const d = out.embedding.dims[1];
  return images.map((img, i) => ({
    file: img.file,
    originalWidth: img.originalWidth,
    originalHeight: img.originalHeight,
    layers: out.layers.map((m) => {
      const g = gridOfBatch(m, i);
      return { ...g, data: g.data.slice() };
    }),
    embedding: out.embedding.data.slice(i * d, (i + 1) * d),
  }));
}

/**
 * Runs the backbone over `files`. Unreadable images are reported in `failures`
 * and skipped; decoding of the next batch overlaps the current forward pass.
 */
export async function extractFeatures(
  files: readonly string[],
  backbone: Backbone,
  cfg: MuscConfig,
  hooks: { onProgress?: ProgressFn; signal?: AbortSignal } = {},
): Promise<{ features: ImageFeatures[]; failures: Failure[] }> {
  const features: ImageFeatures[] = [];
  const failures: Failure[] = [];
  const load = (batch: readonly string[]) =>
    Promise.all(
      batch.map((f) =>
        loadImageRgb(f, workingSize(cfg), backbone.resizeKernel).catch((err: unknown) => {
          failures.push({ file: f, error: errorText(err), code: err instanceof MuscError ? err.code : 'IMAGE_DECODE' });
          return null;
        }),
      ),
    );
  const batches: string[][] = [];
  for (let i = 0; i < files.length; i += cfg.batchSize) batches.push(files.slice(i, i + cfg.batchSize));
  let next = batches.length > 0 ? load(batches[0]) : null;
  for (let b = 0; b < batches.length; b++) {
    hooks.signal?.throwIfAborted();
    const images = (await next!).filter((x): x is LoadedImage => x !== null);
    next = b + 1 < batches.length ? load(batches[b + 1]) : null;
    if (images.length > 0) {
      features.push(...featuresOfBatch(images, await backbone.extract(images)));
    }
    hooks.onProgress?.('features', (b + 1) / batches.length);
  }
  return { features, failures };
}

/** Wall-clock seconds spent per stage of `scoreFeatures` (filled in when passed). */
export interface StageTimes {
  lnamd: number;
  msm: number;
  maps: number;
  rscin: number;
}

/** Result of scoring one batch of images against each other. */
export interface MuscScores {
  /** Anomaly maps `[height, width]` per image, raw averaged distances. */
  readonly maps: Float32Array[];
  /** Max of each map. */
  readonly imageScores: Float64Array;
  /** RsCIN-refined image scores (what image metrics and decisions use). */
  readonly rscinScores: Float64Array;
  /** RsCIN windows actually used: those of `cfg.kList` that fit the number of images. */
  readonly kList: readonly number[];
  /** Working size of the maps. */
  readonly width: number;
  readonly height: number;
}

/**
 * Mutual scoring of all images (within each subset), segmentation maps, image
 * scores and RsCIN over the whole set.
 * @param subsets optional index lists (see `splitSubsets`); default: one subset with everything
 */
export async function scoreFeatures(
  features: readonly ImageFeatures[],
  cfg: MuscConfig,
  hooks: {
    onProgress?: ProgressFn;
    subsets?: readonly (readonly number[])[];
    signal?: AbortSignal;
    times?: StageTimes;
    /** Benchmarks only, see `MsmOptions.maxQueryGroups`. */
    maxQueryGroups?: number;
    /** ONNX Runtime intra-op threads for mutual scoring (default: all cores). */
    threads?: number;
    /** Runs mutual scoring of each set (default: `mutualScores` in this process). */
    mutualScoring?: MutualScoring;
  } = {},
): Promise<MuscScores> {
  const M = features.length;
  if (M < MIN_IMAGES) {
    throw new ConfigError(`MuSc scores images against each other and needs at least ${MIN_IMAGES} readable images (got ${M})`);
  }
  // Without explicit subsets, `divideNum` splits like the reference: stratified by parent folder, seed 42.
  const subsets =
    hooks.subsets ??
    (cfg.divideNum > 1
      ? splitSubsets(
          features.map((f) => ({ imagePath: f.file, maskPath: null, label: 0 as const, defectType: basename(dirname(f.file)) })),
          cfg.divideNum,
          42,
        )
      : [features.map((_, i) => i)]);
  for (const s of subsets) {
    if (s.length < MIN_IMAGES) throw new ConfigError(`every subset needs at least ${MIN_IMAGES} images (one has ${s.length}); use fewer subsets`);
  }
  const size = workingSize(cfg);
  const maps = features.map(() => new Float32Array(size.width * size.height));
  const nMaps = cfg.layers.length * cfg.rList.length;
  const kernel = await SimilarityKernel.create({ precision: cfg.precision, threads: hooks.threads });
  // Progress is weighted by GEMM work: N² · P² · C per (layer, r).
  const work = (n: number, l: number) => {
    const g = features[0].layers[l];
    return n * n * (g.height * g.width) ** 2 * g.channels;
  };
  const total = subsets.reduce((a, s) => a + cfg.layers.reduce((b, _, l) => b + work(s.length, l) * cfg.rList.length, 0), 0);
  let done = 0;
  try {
    for (const [subsetIndex, subset] of subsets.entries()) {
      const N = subset.length;
      for (let l = 0; l < cfg.layers.length; l++) {
        const g0 = features[subset[0]].layers[l];
        const P = g0.height * g0.width;
        const C = g0.channels;
        const z = new Float32Array(N * P * C);
        for (const r of cfg.rList) {
          hooks.signal?.throwIfAborted();
          let t = performance.now();
          lnamdStack(subset.map((idx) => features[idx].layers[l]), r, z);
          const w = work(N, l);
          if (hooks.times) hooks.times.lnamd += (performance.now() - t) / 1000;
          t = performance.now();
          const scores = await (hooks.mutualScoring ?? mutualScores)(
            z,
            { N, P, C },
            {
              intervalLow: cfg.interval[0],
              intervalHigh: cfg.interval[1],
              kernel,
              precision: cfg.precision,
              signal: hooks.signal,
              maxQueryGroups: hooks.maxQueryGroups,
              onProgress: (f) => hooks.onProgress?.('scoring', (done + f * w) / total),
            },
            { subset: subsetIndex, layer: cfg.layers[l], r },
          );
          done += w;
          if (hooks.times) hooks.times.msm += (performance.now() - t) / 1000;
          t = performance.now();
          subset.forEach((idx, n) => upsampleAccumulate(scores.subarray(n * P, (n + 1) * P), g0.height, g0.width, size, maps[idx], 1 / nMaps));
          if (hooks.times) hooks.times.maps += (performance.now() - t) / 1000;
        }
      }
    }
  } finally {
    await kernel.dispose();
  }
  const t = performance.now();
  const imageScores = Float64Array.from(maps, imageScore);
  const dim = features[0].embedding.length;
  const emb = new Float32Array(M * dim);
  features.forEach((f, i) => emb.set(f.embedding, i * dim));
  const kList = usableKList(cfg.kList, M);
  const rscinScores = rscin(imageScores, emb, dim, kList, { cosine: cfg.embeddingSimilarity === 'cosine' });
  if (hooks.times) hooks.times.rscin += (performance.now() - t) / 1000;
  return { maps, imageScores, rscinScores, width: size.width, height: size.height, kList };
}

export { anomalyMap };
