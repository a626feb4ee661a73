/**
 * Options shared by the facade's scoring jobs (`Musc.run`, `Musc.evaluate`,
 * `Musc.buildBank`), and opening the backbone and configuration they name.
 */
import type { Backbone } from '../backbone/backbone.js';
import { openBackbone, RESNET50_IMAGE_SIZE } from '../backbone/open.js';
import type { GeluMode, VitBackboneInfo, VitFamily } from '../backbone/vit.js';
import type { BankBackbone } from '../bank/format.js';
import { bankBackboneOf } from '../bank/scorer.js';
import { ConfigError } from '../errors.js';
import type { Normalization } from '../image/normalize.js';
import type { ImageScoreRule } from '../pipeline/maps.js';
import type { MutualScoring } from '../pipeline/msm.js';
import type { CrossScoring } from '../pipeline/refine.js';
import { DEFAULT_CONFIG, resolveConfig, type MuscConfig, type ProgressFn } from '../pipeline/musc.js';
import { defaultKList } from '../pipeline/rscin.js';
import type { Size2D } from '../tensor.js';

/** Which backbone extracts the features (default: the bundled ImageNet ResNet50). */
export interface BackboneChoice {
  /** Path of a ViT ONNX export (CLIP, DINO, DINOv2, ViT); omit for the bundled ResNet50. */
  readonly model?: string;
  /** ViT family of `model` (default `auto`: detected from module names). */
  readonly family?: VitFamily | 'auto';
  /** CLIP activation: `auto` (erf GELU at non-native sizes, like the paper), `quick` or `erf`. */
  readonly gelu?: GeluMode;
  /** Overrides the ViT input normalisation mean (RGB, 0..1 scale). */
  readonly mean?: readonly [number, number, number];
  /** Overrides the ViT input normalisation standard deviation. */
  readonly std?: readonly [number, number, number];
}

/** Hyper-parameters and hooks of a scoring job; every field is optional (defaults: `DEFAULT_CONFIG`). */
export interface ScoringOptions {
  /** The backbone (default: the bundled ResNet50). */
  readonly backbone?: BackboneChoice;
  /**
   * Working size: S (images resized to S x S, or to a long side S with `keepAspect`; default 224
   * for ResNet50, 518/512 for ViTs), or a fixed W x H.
   */
  readonly imageSize?: number | Size2D;
  /** Keep the aspect ratio: long side S, the other side from the batch's median aspect. */
  readonly keepAspect?: boolean;
  /** Tiles as units of mutual scoring: an R x C `grid` of S x S tiles, or square tiles of `size` px at native resolution. */
  readonly tiles?: { readonly grid?: { readonly rows: number; readonly cols: number }; readonly size?: number; readonly overlap?: number; readonly match?: 'position' | 'any' };
  /** Coarse-to-fine: re-score the top `fraction` of patches at the fine size `imageSize` (default 2 S). */
  readonly refine?: { readonly fraction: number; readonly imageSize?: number };
  /**
   * `auto`: keep the aspect of elongated batches and refine detailed ones (`autoPlan`); `fixed`:
   * exactly the size options given. Default: `auto`, unless `imageSize` is given (then `fixed`),
   * and `fixed` for backbones that take one input size only (ViTs at their native size).
   */
  readonly resolution?: 'auto' | 'fixed';
  /**
   * Image score: `excess` (default), the max of a map's excess over the batch's typical map
   * (per-pixel median of its maps; a bank keeps its own), or `max`, the map's max (the paper's).
   */
  readonly imageScore?: ImageScoreRule;
  /** Backbone layers (ResNet50: `layer1`..`layer4`; ViT: 0-based block indices as strings). */
  readonly layers?: readonly string[];
  /** LNAMD aggregation degrees (odd). */
  readonly rList?: readonly number[];
  /** MSM interval of sorted minima as fractions of N−1. */
  readonly interval?: readonly [number, number];
  /**
   * RsCIN window sizes. Default (`defaultKList`): 1 under the image score `excess` (each image's
   * own score, no neighbours); under `max`, by dataset for `evaluate` (VisA 1,8,9), else 1,2,3.
   */
  readonly kList?: readonly number[];
  /** Split the batch into this many subsets for mutual scoring. */
  readonly divideNum?: number;
  /** Images per backbone pass. */
  readonly batchSize?: number;
  /** Mutual-scoring arithmetic: `int8` (default) or `fp32` (the reference's). */
  readonly precision?: MuscConfig['precision'];
  /** ONNX Runtime intra-op threads (default: all cores). */
  readonly threads?: number;
  /** Aborts the job at the next step; the promise rejects with the signal's reason. */
  readonly signal?: AbortSignal;
  /** Progress: stage and fraction done. */
  readonly onProgress?: ProgressFn;
  /** Messages about what is being done (model downloads, skipped folders); default: none. */
  readonly log?: (message: string) => void;
  /**
   * Where mutual scoring of each set runs (default: in this process). `QueuedScoring.mutualScoring`
   * (musc-ts/distributed) runs it on `musc worker` processes with the same scores.
   */
  readonly mutualScoring?: MutualScoring;
  /** Where refinement's cross jobs run (default: in this process); `QueuedScoring.crossScoring` likewise. */
  readonly crossScoring?: CrossScoring;
  /**
   * Mutual-scoring sets in progress at once (default 1). 2 with a queued executor: the next set's
   * vectors are prepared and queued while the workers finish the current one.
   */
  readonly setsInFlight?: number;
}

/** S of `imageSize` (the long side of a fixed W x H). */
function sideOf(o: ScoringOptions): number | undefined {
  return typeof o.imageSize === 'object' ? Math.max(o.imageSize.width, o.imageSize.height) : o.imageSize;
}

/** The configuration the options name, validated, before any model is loaded. */
export function configOf(o: ScoringOptions): MuscConfig {
  if ((o.backbone?.mean || o.backbone?.std) && !o.backbone?.model) {
    throw new ConfigError('--mean/--std apply to ViT backbones (--backbone); the bundled ResNet50 has a fixed normalisation');
  }
  const S = sideOf(o) ?? RESNET50_IMAGE_SIZE;
  const t = o.tiles;
  const imageScore = o.imageScore ?? 'excess';
  return resolveConfig({
    imageSize: S,
    imageShape: typeof o.imageSize === 'object' ? o.imageSize : null,
    keepAspect: o.keepAspect ?? false,
    tiles: t && (t.grid || t.size) ? { ...(t.grid ? { grid: t.grid } : { size: t.size }), overlap: t.overlap ?? 0.25, match: t.match ?? 'position' } : null,
    refine: o.refine ? { fraction: o.refine.fraction, imageSize: o.refine.imageSize ?? 2 * S } : null,
    auto: o.resolution === 'auto' || (o.resolution === undefined && o.imageSize === undefined),
    layers: o.layers ?? DEFAULT_CONFIG.layers,
    rList: o.rList ?? DEFAULT_CONFIG.rList,
    interval: o.interval ?? DEFAULT_CONFIG.interval,
    kList: o.kList ?? defaultKList(imageScore),
    divideNum: o.divideNum ?? DEFAULT_CONFIG.divideNum,
    batchSize: o.batchSize ?? DEFAULT_CONFIG.batchSize,
    precision: o.precision ?? DEFAULT_CONFIG.precision,
    imageScore,
  });
}

/** An opened backbone with the configuration that goes with it. */
export interface OpenedScoring {
  readonly backbone: Backbone;
  /** The configuration with the backbone's working size, layers and embedding similarity. */
  readonly cfg: MuscConfig;
  /** What a bank built with this backbone records about it. */
  readonly bankBackbone: BankBackbone;
  readonly vit: VitBackboneInfo | null;
}

/** Opens the backbone the options name (the caller disposes it). */
export async function openScoring(o: ScoringOptions): Promise<OpenedScoring> {
  const base = configOf(o); // fails on bad values before loading a (possibly large) model
  const b = o.backbone ?? {};
  const normalization: Normalization | undefined =
    b.mean || b.std ? { kind: 'mean-std', mean: b.mean ?? [0.485, 0.456, 0.406], std: b.std ?? [0.229, 0.224, 0.225] } : undefined;
  const { backbone, imageSize, vit } = await openBackbone({
    model: b.model,
    family: b.family,
    layers: o.layers ? base.layers : undefined,
    imageSize: sideOf(o),
    gelu: b.gelu ?? 'auto',
    normalization,
    // No arena: a batch runs the backbone over its images and then idles it through all of LNAMD
    // and mutual scoring, where an arena would hold the activations of its largest batch (hundreds
    // of MB at 320²; two sessions when refining) as dead weight. Bottle at `--resolution auto`:
    // 37.2–37.4 → 33.4–34.1 s, peak RSS 2.4 → 2.0 GB; at 224 the same time (BENCHMARKS.md, run I).
    // Bank scoring (`musc score`, `serve`) keeps it: a server's memory stays flat with it.
    session: { threads: o.threads, arena: false },
    log: o.log,
  });
  return {
    backbone,
    vit,
    bankBackbone: bankBackboneOf(backbone, { model: b.model, family: b.family, gelu: b.gelu ?? 'auto', normalization }, vit),
    // The backbone may fix S (ViT defaults); the fine size of refinement follows unless given.
    cfg: resolveConfig({
      ...base,
      imageSize,
      refine: base.refine && o.refine?.imageSize === undefined ? { ...base.refine, imageSize: 2 * imageSize } : base.refine,
      // A backbone with one input size cannot change the working size (a ViT exported at 518).
      auto: base.auto && !backbone.fixedInput,
      layers: backbone.layers,
      embeddingSimilarity: backbone.embeddingSimilarity,
    }),
  };
}
