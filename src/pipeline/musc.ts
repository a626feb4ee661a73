/**
 * The MuSc pipeline, stage by stage as in the paper:
 * backbone -> lnamd -> msm -> maps -> rscin. I/O stays at the edges: this module
 * takes file paths only to hand them to the image loader, and reports bad files
 * instead of throwing so a long run finishes with partial results.
 */
import { basename, dirname } from 'node:path';
import pLimit from 'p-limit';
import type { Backbone, BackboneOutput } from '../backbone/backbone.js';
import { splitSubsets } from '../data/subsets.js';
import { ConfigError, MuscError, errorText } from '../errors.js';
import { cropRgb, decodeImageRgbSizes, imageSize, type LoadedImage } from '../image/io.js';
import { gridOfBatch, type FeatureGrid, type Size2D } from '../tensor.js';
import { needsOriginalSizes, planBatch, type BatchGeometry, type RefineConfig, type TilingConfig } from './geometry.js';
import { WorkerPool, lnamdStackParallel, sharedFloat32 } from './parallel.js';
import { addTilesIntoMap, anomalyMap, imageScoresOf, normaliseStitched, tileBlend, typicalMap, upsampleIntoBox, type ImageScoreRule } from './maps.js';
import { MIN_IMAGES, mutualScores, type MsmPrecision, type MutualScoring } from './msm.js';
import { refineScores, type CrossScoring } from './refine.js';
import { rscin, RSCIN_K_DEFAULT, usableKList } from './rscin.js';
import { SimilarityKernel } from './similarity-kernel.js';

/** Every hyper-parameter of the method, with the defaults used by `musc run/eval`. */
export interface MuscConfig {
  /**
   * Working resolution S: images are resized to S x S (the reference), or to a long side S
   * with `keepAspect`; with a tile grid, the tile side. See geometry.ts.
   */
  readonly imageSize: number;
  /** A fixed working size W x H instead (`--image-size WxH`). */
  readonly imageShape: Size2D | null;
  /** Long side S with the batch's aspect ratio (`--keep-aspect`). */
  readonly keepAspect: boolean;
  /** Tiles as units of mutual scoring (`--tiles RxC` / `--tile-size PX`), or null. */
  readonly tiles: TilingConfig | null;
  /** Coarse-to-fine scoring (`--refine q`), or null. */
  readonly refine: RefineConfig | null;
  /**
   * `--resolution auto`: choose keep-aspect and refinement from the batch's sizes (see
   * `autoPlan`); ignored when a geometry option is given explicitly.
   */
  readonly auto: boolean;
  /** With `auto`: whether it may choose refinement (default true; banks store one size). */
  readonly autoRefine?: boolean;
  /** Backbone layers whose patch features are scored (each on its own grid). */
  readonly layers: readonly string[];
  /** LNAMD aggregation degrees (odd). */
  readonly rList: readonly number[];
  /** MSM interval of sorted minima as fractions of N−1: [low, high). */
  readonly interval: readonly [number, number];
  /**
   * RsCIN window sizes. `configOf` (the facade, CLI) fills them by `defaultKList`; `evaluateDataset`
   * takes its own (`EvaluateHooks.kList`, else `defaultKList` of the dataset family).
   */
  readonly kList: readonly number[];
  /** Number of subsets the batch is split into for mutual scoring (reference `divide_num`). */
  readonly divideNum: number;
  /** Images per backbone forward pass. */
  readonly batchSize: number;
  /** Arithmetic of mutual scoring: `int8` (default, VNNI GEMM, 2.3–3.3× faster) or `fp32` (the reference's). */
  readonly precision: MsmPrecision;
  /**
   * How RsCIN compares image embeddings; set it from `backbone.embeddingSimilarity`
   * (`dot` for DINO/DINOv2 as the reference, `cosine` otherwise).
   */
  readonly embeddingSimilarity: 'cosine' | 'dot';
  /**
   * How a map gives its image score: `max` (the paper's, spec §6.1) or `excess`, the max of the
   * map's excess over the batch's typical map (`typicalMap`). The CLI and the library's
   * `ScoringOptions` (`Musc`, `run`, `evaluate`, banks) default to `excess` (BENCHMARKS.md);
   * `DEFAULT_CONFIG` (`resolveConfig`, the stage-by-stage API) stays the paper's `max`.
   */
  readonly imageScore: ImageScoreRule;
}

/**
 * Defaults for the bundled ResNet50: 224 px, layer2 + layer3, r ∈ {1,3,5}, the
 * reference's 30 % interval and MVTec RsCIN windows, int8 mutual scoring. See
 * BENCHMARKS.md for the measurements behind the choice.
 */
export const DEFAULT_CONFIG: MuscConfig = {
  imageSize: 224,
  imageShape: null,
  keepAspect: false,
  tiles: null,
  refine: null,
  auto: false,
  layers: ['layer2', 'layer3'],
  rList: [1, 3, 5],
  interval: [0, 0.3],
  kList: [...RSCIN_K_DEFAULT],
  divideNum: 1,
  batchSize: 8,
  // int8 stays within 0.1 points of fp32 on every metric on ../shared/data and is 2.3–3.3× faster (BENCHMARKS.md).
  precision: 'int8',
  embeddingSimilarity: 'cosine',
  imageScore: 'max',
};

/** Backbone output kept for one image. */
export interface ImageFeatures {
  readonly file: string;
  readonly originalWidth: number;
  readonly originalHeight: number;
  /** The batch's geometry (one object shared by the batch). */
  readonly geometry: BatchGeometry;
  /**
   * Per unit (one, or one per tile in `geometry.coarse.boxes` order), one grid per configured
   * layer, `[C, gh, gw]` (CNN) or `[gh*gw, C]` (ViT).
   */
  readonly units: readonly (readonly FeatureGrid[])[];
  /** Coarse-to-fine: the grids of the whole image at the fine canvas (null otherwise). */
  readonly fine: readonly FeatureGrid[] | null;
  /** Image embedding for RsCIN (the fine pass's when refining; the mean of the units' embeddings when tiled). */
  readonly embedding: Float32Array;
}

/** A file that could not be used, with the reason. */
export interface Failure {
  /** The file (or upload name). */
  readonly file: string;
  /** Why it could not be used, in words. */
  readonly error: string;
  /** `MuscError` code, e.g. `IMAGE_DECODE`. */
  readonly code: string;
}

/** Progress callback: stage name and fraction done in [0, 1]. */
export type ProgressFn = (stage: 'features' | 'scoring' | 'outputs', fraction: number) => void;

/**
 * The geometry of a batch of `files` under `cfg` for `backbone` (reads image headers when
 * the working size depends on the images' sizes). Unreadable files are left to the decoder.
 */
export async function planGeometry(
  files: readonly string[],
  backbone: Pick<Backbone, 'sizeMultiple'>,
  cfg: MuscConfig,
  /** The files' original sizes when the caller has read them already (null: unreadable). */
  known?: readonly (Size2D | null)[],
): Promise<BatchGeometry> {
  const sizes: Size2D[] = [];
  if (needsOriginalSizes(cfg)) {
    for (const [i, f] of files.entries()) {
      const s = known ? known[i] : await imageSize(f).catch(() => null);
      if (s) sizes.push(s);
    }
  }
  return planBatch(cfg, sizes, backbone.sizeMultiple);
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
  if (cfg.imageScore !== 'max' && cfg.imageScore !== 'excess') throw new ConfigError(`image score must be max or excess (got ${String(cfg.imageScore)})`);
  if (cfg.embeddingSimilarity !== 'cosine' && cfg.embeddingSimilarity !== 'dot') throw new ConfigError(`embedding similarity must be cosine or dot (got ${String(cfg.embeddingSimilarity)})`);
  if (cfg.imageShape && ![cfg.imageShape.width, cfg.imageShape.height].every((v) => Number.isInteger(v) && v >= 32 && v <= 4096)) {
    throw new ConfigError(`image width and height must be integers in 32..4096 (got ${cfg.imageShape.width}x${cfg.imageShape.height})`);
  }
  if (cfg.imageShape && (cfg.keepAspect || cfg.tiles)) throw new ConfigError('a fixed WxH image size does not combine with --keep-aspect or tiles');
  if (cfg.keepAspect && cfg.tiles) throw new ConfigError('--keep-aspect applies to whole images; tiles keep the aspect through their grid');
  // Range checks of tiles and refinement, before any image is read: on a probe image of S (or, for
  // native tiles, of one tile: their size against the images is checked once the sizes are known).
  const probe = cfg.tiles?.size !== undefined && !cfg.tiles.grid ? cfg.tiles.size : cfg.imageSize;
  planBatch(cfg, [{ width: probe, height: probe }]);
  return cfg;
}

/** One image decoded into what its geometry needs: the units (whole canvas or tiles) and the fine canvas. */
export interface ImageViews {
  readonly file: string;
  readonly originalWidth: number;
  readonly originalHeight: number;
  readonly units: readonly LoadedImage[];
  readonly fine: LoadedImage | null;
}

/**
 * Decodes one image (a file, or bytes with a label) once into its views.
 * @throws ImageDecodeError for unreadable images
 */
export async function loadViews(label: string, bytes: Uint8Array | null, geometry: BatchGeometry, backbone: Pick<Backbone, 'resizeKernel'>): Promise<ImageViews> {
  const sizes = geometry.fine ? [geometry.coarse.canvas, geometry.fine.canvas] : [geometry.coarse.canvas];
  const [canvas, fine] = await decodeImageRgbSizes(label, bytes, sizes, backbone.resizeKernel);
  return {
    file: label,
    originalWidth: canvas.originalWidth,
    originalHeight: canvas.originalHeight,
    units: geometry.coarse.boxes.map((b) => cropRgb(canvas, b)),
    fine: fine ?? null,
  };
}

/**
 * Per image of a backbone batch, its grids: copies (so the batch can be freed) in shared memory,
 * where the worker threads of LNAMD read them (parallel.ts).
 */
function gridsOfBatch(out: Pick<BackboneOutput, 'layers'>, n: number): FeatureGrid[][] {
  return Array.from({ length: n }, (_, i) =>
    out.layers.map((m) => {
      const g = gridOfBatch(m, i);
      return { ...g, data: sharedFloat32(g.data) };
    }),
  );
}

/**
 * Runs the backbone over decoded views (units in batches of `batchSize`, fine canvases
 * likewise) and assembles each image's features; a tiled image's embedding is the mean
 * of its tiles' embeddings.
 */
export async function featuresOfViews(views: readonly ImageViews[], backbone: Backbone, geometry: BatchGeometry, batchSize: number): Promise<ImageFeatures[]> {
  const T = geometry.coarse.boxes.length;
  const units = views.flatMap((v) => v.units);
  const unitGrids: FeatureGrid[][] = [];
  const unitEmb: Float32Array[] = [];
  // Refining a whole image, the embedding comes from the fine pass: the coarse one needs layers only.
  const layersOnly = geometry.fine && T === 1 ? backbone.extractLayers?.bind(backbone) : undefined;
  for (let i = 0; i < units.length; i += batchSize) {
    const batch = units.slice(i, i + batchSize);
    if (layersOnly) {
      unitGrids.push(...gridsOfBatch({ layers: await layersOnly(batch) }, batch.length));
      continue;
    }
    const out = await backbone.extract(batch);
    const d = out.embedding.dims[1];
    unitGrids.push(...gridsOfBatch(out, batch.length));
    batch.forEach((_, b) => unitEmb.push(out.embedding.data.slice(b * d, (b + 1) * d)));
  }
  const fineGrids: FeatureGrid[][] = [];
  const fineEmb: Float32Array[] = [];
  if (geometry.fine) {
    const fines = views.map((v) => v.fine!);
    for (let i = 0; i < fines.length; i += batchSize) {
      const batch = fines.slice(i, i + batchSize);
      const out = await backbone.extract(batch);
      const d = out.embedding.dims[1];
      fineGrids.push(...gridsOfBatch(out, batch.length));
      batch.forEach((_, b) => fineEmb.push(out.embedding.data.slice(b * d, (b + 1) * d)));
    }
  }
  return views.map((v, i) => {
    const emb = unitEmb.slice(i * T, (i + 1) * T);
    // The finest view of the whole image describes it best: the fine pass when refining. Under the
    // max, the coarse embedding measured lower (bottle I-AUROC 99.13 vs 99.21, synthetic flange 74.5
    // vs 79.1); under `excess` it was a wash in I-AUROC over 14 synthetic sets and lower in I-AP and
    // I-F1 (−10.3 and −5.8 points summed; BENCHMARKS run K).
    let embedding = geometry.fine ? fineEmb[i] : emb[0];
    if (T > 1) {
      embedding = new Float32Array(emb[0].length);
      for (const e of emb) for (let d = 0; d < e.length; d++) embedding[d] += e[d] / T;
    }
    return {
      file: v.file,
      originalWidth: v.originalWidth,
      originalHeight: v.originalHeight,
      geometry,
      units: unitGrids.slice(i * T, (i + 1) * T),
      fine: geometry.fine ? fineGrids[i] : null,
      embedding,
    };
  });
}

/**
 * Runs the backbone over `files`. Unreadable images are reported in `failures`
 * and skipped; decoding of the next batch overlaps the current forward pass.
 * @param hooks.geometry the batch's geometry when already planned (e.g. by `evaluateCategory`)
 */
export async function extractFeatures(
  files: readonly string[],
  backbone: Backbone,
  cfg: MuscConfig,
  hooks: { onProgress?: ProgressFn; signal?: AbortSignal; geometry?: BatchGeometry } = {},
): Promise<{ features: ImageFeatures[]; failures: Failure[]; geometry: BatchGeometry }> {
  const geometry = hooks.geometry ?? (await planGeometry(files, backbone, cfg));
  if (backbone.fixedInput) {
    const { width, height } = backbone.fixedInput;
    const inputs = [geometry.coarse.input, ...(geometry.fine ? [geometry.fine.input] : [])];
    if (inputs.some((s) => s.width !== width || s.height !== height)) {
      throw new ConfigError(`backbone ${backbone.id} takes ${width}x${height} inputs only; this geometry needs ${inputs.map((s) => `${s.width}x${s.height}`).join(' and ')} (${geometry.rule})`);
    }
  }
  const features: ImageFeatures[] = [];
  const failures: Failure[] = [];
  const load = (batch: readonly string[]) =>
    Promise.all(
      batch.map((f) =>
        loadViews(f, null, geometry, backbone).catch((err: unknown) => {
          failures.push({ file: f, error: errorText(err), code: err instanceof MuscError ? err.code : 'IMAGE_DECODE' });
          return null;
        }),
      ),
    );
  // Images per step: about `batchSize` backbone inputs.
  const perStep = Math.max(1, Math.floor(cfg.batchSize / geometry.coarse.boxes.length));
  const batches: string[][] = [];
  for (let i = 0; i < files.length; i += perStep) batches.push(files.slice(i, i + perStep));
  let next = batches.length > 0 ? load(batches[0]) : null;
  for (let b = 0; b < batches.length; b++) {
    hooks.signal?.throwIfAborted();
    const views = (await next!).filter((x): x is ImageViews => x !== null);
    next = b + 1 < batches.length ? load(batches[b + 1]) : null;
    if (views.length > 0) features.push(...(await featuresOfViews(views, backbone, geometry, cfg.batchSize)));
    hooks.onProgress?.('features', (b + 1) / batches.length);
  }
  // Failures in input order, whatever order decoding finished in.
  const order = new Map(files.map((f, i) => [f, i]));
  failures.sort((a, b) => (order.get(a.file) ?? 0) - (order.get(b.file) ?? 0));
  return { features, failures, geometry };
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
  /** Each map's image score under `cfg.imageScore` (the max, or the max excess over `typical`). */
  readonly imageScores: Float64Array;
  /** The batch's typical map (per-pixel median of `maps`) with image score `excess`, else null. */
  readonly typical: Float32Array | null;
  /** RsCIN-refined image scores (what image metrics and decisions use). */
  readonly rscinScores: Float64Array;
  /** RsCIN windows actually used: those of `cfg.kList` that fit the number of images. */
  readonly kList: readonly number[];
  /** Working size of the maps. */
  readonly width: number;
  readonly height: number;
  /** The batch's geometry (how the working size and units were chosen). */
  readonly geometry: BatchGeometry;
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
    /** Runs refinement's cross jobs (default: `crossScores` in this process). */
    crossScoring?: CrossScoring;
    /** Sets scored at once (default 1; 2 lets a queued executor's workers go on while the next set is prepared). */
    setsInFlight?: number;
    /**
     * Called with each (layer, r)'s LNAMD vectors of the whole batch, `[M·T, P, C]` in image order,
     * and their largest |component|, before they are scored; only when the batch is scored as one
     * subset in image order (a bank build stores them instead of computing them again). The
     * vectors are valid during the call only (their memory serves later sets): copy what is kept.
     */
    onVectors?: (layer: number, r: number, z: Float32Array, range: number) => void;
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
  const wholeBatch = subsets.length === 1 && subsets[0].length === M && subsets[0].every((idx, k) => idx === k);
  const geometry = features[0].geometry;
  if (features.some((f) => f.geometry !== geometry)) throw new ConfigError('all images of a batch must share one geometry (extract them together)');
  const { coarse, fine, map } = geometry;
  const T = coarse.boxes.length;
  const tiled = T > 1;
  const matchAny = tiled && cfg.tiles?.match === 'any';
  const maps = features.map(() => new Float32Array(map.width * map.height));
  // How tiles' maps are stitched (null untiled and when refining, which scores whole images).
  const blend = fine ? null : tileBlend(coarse.boxes, map);
  const nMaps = cfg.layers.length * cfg.rList.length;
  const kernel = await SimilarityKernel.create({ precision: cfg.precision, threads: hooks.threads });
  const workers = WorkerPool.open(hooks.threads);
  // Progress is weighted by GEMM work: units² · P² · C per (layer, r), plus the fine pass.
  const layerWork = (n: number, l: number) => {
    const g = features[0].units[0][l];
    const coarseWork = (matchAny ? (n * T) ** 2 : n * n * T) * (g.height * g.width) ** 2 * g.channels;
    const f = features[0].fine?.[l];
    // The refinement's fraction comes from the geometry (explicit --refine, or chosen by --resolution auto).
    const fineWork = f ? Math.min(1, 2 * geometry.refineFraction) * n * n * (f.height * f.width) ** 2 * f.channels : 0;
    return coarseWork + fineWork;
  };
  const total = subsets.reduce((a, s) => a + cfg.layers.reduce((b, _, l) => b + layerWork(s.length, l) * cfg.rList.length, 0), 0);
  const time = (stage: keyof StageTimes, t0: number) => {
    if (hooks.times) hooks.times[stage] += (performance.now() - t0) / 1000;
  };
  // Progress: each set's fraction done, weighted by its work (sets may run side by side).
  const fractions: number[] = [];
  const weights: number[] = [];
  const report = () => hooks.onProgress?.('scoring', fractions.reduce((a, f, i) => a + f * weights[i], 0) / total);
  const msmOptions = (i: number) => ({
    intervalLow: cfg.interval[0],
    intervalHigh: cfg.interval[1],
    kernel,
    workers,
    precision: cfg.precision,
    signal: hooks.signal,
    maxQueryGroups: hooks.maxQueryGroups,
    onProgress: (f: number) => {
      fractions[i] = f;
      report();
    },
  });
  const mutual = hooks.mutualScoring ?? mutualScores;

  /** Scores one set; returns how to add its maps (applied in set order, so the float sums do not depend on timing). */
  const scoreSet = async (i: number, subsetIndex: number, subset: readonly number[], l: number, r: number): Promise<() => void> => {
    hooks.signal?.throwIfAborted();
    const N = subset.length;
    const g0 = features[subset[0]].units[0][l];
    const P = g0.height * g0.width;
    const C = g0.channels;
    const set = { subset: subsetIndex, layer: cfg.layers[l], r };
    // Unit vectors and coarse scores of every unit, `[N, T, P, ·]` (image-major).
    let t0 = performance.now();
    const { z: zAll, range } = await lnamdStackParallel(subset.flatMap((idx) => features[idx].units.map((u) => u[l])), r, workers);
    time('lnamd', t0);
    if (wholeBatch) hooks.onVectors?.(l, r, zAll, range);
    const unitScores = new Float32Array(N * T * P);
    if (!tiled || matchAny) {
      t0 = performance.now();
      const owner = tiled ? Int32Array.from({ length: N * T }, (_, u) => Math.floor(u / T)) : undefined;
      unitScores.set(await mutual(zAll, { N: N * T, P, C }, { ...msmOptions(i), owner, int8Range: range }, set));
      time('msm', t0);
    } else {
      // Tiles matched by position: one mutual-scoring set per tile position, one int8 scale for all
      // (as a bank of these tiles has).
      const int8Range = range;
      const per = P * C;
      for (let t = 0; t < T; t++) {
        const z = new Float32Array(N * per);
        for (let n = 0; n < N; n++) z.set(zAll.subarray((n * T + t) * per, (n * T + t + 1) * per), n * per);
        t0 = performance.now();
        const base = t / T;
        const opts = msmOptions(i);
        const scores = await mutual(z, { N, P, C }, { ...opts, int8Range, onProgress: (f) => opts.onProgress(base + f / T) }, { ...set, tile: t });
        time('msm', t0);
        for (let n = 0; n < N; n++) unitScores.set(scores.subarray(n * P, (n + 1) * P), (n * T + t) * P);
      }
    }
    // The coarse vectors are read (the GEMM operands are copies or codes): their memory serves the next set.
    workers?.release(zAll);
    if (fine) {
      t0 = performance.now();
      const gf = features[subset[0]].fine![l];
      const { z: zFine, range: fineRange } = await lnamdStackParallel(subset.map((idx) => features[idx].fine![l]), r, workers);
      time('lnamd', t0);
      t0 = performance.now();
      const { scores } = await refineScores(zFine, { N, P: gf.height * gf.width, C: gf.channels }, { scores: unitScores, gridHeight: g0.height, gridWidth: g0.width }, { gridHeight: gf.height, gridWidth: gf.width }, geometry.refineFraction, { ...msmOptions(i), int8Range: fineRange, select: geometry.refineSelect, mutual, cross: hooks.crossScoring, set: { ...set, fine: true } });
      time('msm', t0);
      workers?.release(zFine);
      const Pf = gf.height * gf.width;
      return () => subset.forEach((idx, n) => upsampleIntoBox(scores.subarray(n * Pf, (n + 1) * Pf), gf.height, gf.width, fine.boxes[0], map.width, maps[idx], 1 / nMaps));
    }
    return () => subset.forEach((idx, n) => addTilesIntoMap(unitScores.subarray(n * T * P, (n + 1) * T * P), g0.height, g0.width, coarse.boxes, blend, map.width, maps[idx], 1 / nMaps));
  };

  // Sets start in order, at most `setsInFlight` at once (a queued executor keeps its workers busy
  // while the next set is prepared); their maps are added in order.
  const slot = pLimit(Math.max(1, hooks.setsInFlight ?? 1));
  const started: Promise<() => void>[] = [];
  // After a failure the queued sets settle at once without running. (p-limit's clearQueue would
  // drop them unsettled: waiting for them then hung, and the process exited silently with code 0.)
  let failed = false;
  for (const [subsetIndex, subset] of subsets.entries()) {
    for (let l = 0; l < cfg.layers.length; l++) {
      for (const r of cfg.rList) {
        const i = started.length;
        fractions.push(0);
        weights.push(layerWork(subset.length, l));
        started.push(slot(() => (failed ? Promise.reject(new Error('not scored: an earlier set failed')) : scoreSet(i, subsetIndex, subset, l, r))));
      }
    }
  }
  try {
    for (const pending of started) {
      const apply = await pending;
      const t0 = performance.now();
      apply();
      time('maps', t0);
    }
  } catch (err) {
    // Nothing may still use the kernel when it is disposed.
    failed = true;
    await Promise.allSettled(started);
    throw err;
  } finally {
    await kernel.dispose();
    await workers?.close();
  }
  // Overlapping tiles are blended (weights falling off across each overlap).
  normaliseStitched(maps, blend);
  const t = performance.now();
  // The typical map is taken over the whole batch (all subsets), like RsCIN.
  const typical = cfg.imageScore === 'excess' ? typicalMap(maps) : null;
  const imageScores = imageScoresOf(maps, typical);
  const dim = features[0].embedding.length;
  const emb = new Float32Array(M * dim);
  features.forEach((f, i) => emb.set(f.embedding, i * dim));
  const kList = usableKList(cfg.kList, M);
  const rscinScores = rscin(imageScores, emb, dim, kList, { cosine: cfg.embeddingSimilarity === 'cosine' });
  if (hooks.times) hooks.times.rscin += (performance.now() - t) / 1000;
  return { maps, imageScores, typical, rscinScores, width: map.width, height: map.height, kList, geometry };
}

export { anomalyMap };
