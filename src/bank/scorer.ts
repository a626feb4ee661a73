/**
 * The library face of banks: `const scorer = await Musc.open({ bank })`, then
 * `await scorer.score(images)` for each new image or small batch. The scorer reopens
 * the bank's backbone with the bank's settings, keeps the GEMM kernels open, and can
 * add what it scored to the bank (a rolling window) and save it.
 */
import { resolve } from 'node:path';
import type { Backbone } from '../backbone/backbone.js';
import { openBackbone } from '../backbone/open.js';
import type { GeluMode, VitFamily } from '../backbone/vit.js';
import { MuscError, errorText } from '../errors.js';
import type { Normalization } from '../image/normalize.js';
import { featuresOfViews, loadViews, resolveConfig, type ImageViews, type Failure, type ImageFeatures, type MuscConfig } from '../pipeline/musc.js';
import type { MsmPrecision } from '../pipeline/msm.js';
import { SimilarityKernel } from '../pipeline/similarity-kernel.js';
import { appendToBank } from './bank.js';
import { BankError, readBank, writeBank, type Bank, type BankBackbone } from './format.js';
import { bankGeometry, scoreAgainstBank } from './score.js';
import { decide, type Decision } from '../outputs/decisions.js';

/** An image to score: a file path, or encoded bytes (PNG, JPEG, ...) with a name for messages. */
export type ScoreInput = string | { readonly name: string; readonly bytes: Uint8Array };

/** The verdict on one image. */
export interface ScoredImage {
  /** The file path, or the name given with the bytes. */
  readonly name: string;
  /** The score decisions use (RsCIN against the bank, or the raw score for good banks). */
  readonly score: number;
  /** Max of the anomaly map. */
  readonly imageScore: number;
  /** `decide(score, threshold)`. */
  readonly decision: Decision;
  /** The threshold the decision used. */
  readonly threshold: number;
  /** `[height, width]` anomaly map (raw averaged distances) at the working size. */
  readonly map: Float32Array;
  /** Working width of `map`. */
  readonly width: number;
  /** Working height of `map`. */
  readonly height: number;
  /** Width of the image as decoded, in pixels. */
  readonly originalWidth: number;
  /** Height of the image as decoded, in pixels. */
  readonly originalHeight: number;
}

/** Options of `Musc.open`. */
export interface MuscOpenOptions {
  /** A bank file (`musc bank build`) or a bank in memory. */
  readonly bank: string | Bank;
  /** Path of the ViT export when it moved since the bank was built (checked by SHA-256). */
  readonly backboneModel?: string;
  /** GEMM arithmetic (default: int8 for int8 banks, else fp32). */
  readonly precision?: MsmPrecision;
  /** Override the bank's decision threshold. */
  readonly threshold?: number;
  /** ONNX Runtime intra-op threads (default: all cores). */
  readonly threads?: number;
  /** Messages about what is being done (model downloads, conversions). */
  readonly log?: (msg: string) => void;
}

/** What a bank says about its backbone, from an opened backbone and the options that opened it. */
export function bankBackboneOf(
  backbone: Backbone,
  opts: { model?: string; family?: VitFamily | 'auto'; gelu?: GeluMode; normalization?: Normalization },
  vit: { family: string; modelSha256: string } | null,
): BankBackbone {
  if (!opts.model || !vit) return { kind: 'resnet50', id: backbone.id };
  const n = opts.normalization;
  return {
    kind: 'vit',
    id: backbone.id,
    model: resolve(opts.model),
    modelSha256: vit.modelSha256,
    family: vit.family,
    gelu: opts.gelu ?? 'auto',
    ...(n && n.kind === 'mean-std' ? { normalization: { mean: [...n.mean], std: [...n.std] } } : {}),
  };
}

/** Scores new images against a bank; see `Musc.open`. */
export class MuscScorer {
  private queue: Promise<unknown> = Promise.resolve();
  private constructor(
    private current: Bank,
    private readonly backbone: Backbone,
    /** The bank's configuration (working size, layers, r, interval, k). */
    readonly config: MuscConfig,
    private readonly precision: MsmPrecision,
    private readonly thresholdOverride: number | undefined,
    private readonly kernel: SimilarityKernel,
  ) {}

  /** Opens a bank and its backbone. @throws BankError / ModelError with the reason. */
  static async open(opts: MuscOpenOptions): Promise<MuscScorer> {
    const bank = typeof opts.bank === 'string' ? await readBank(opts.bank) : opts.bank;
    const b = bank.backbone;
    const cfg = resolveConfig({ ...bank.config, interval: [bank.config.interval[0], bank.config.interval[1]] });
    const opened =
      b.kind === 'vit'
        ? await openBackbone({
            model: opts.backboneModel ?? b.model,
            family: b.family as VitFamily,
            layers: bank.config.layers,
            imageSize: bank.config.imageSize,
            gelu: b.gelu as GeluMode,
            normalization: b.normalization ? { kind: 'mean-std', mean: b.normalization.mean as [number, number, number], std: b.normalization.std as [number, number, number] } : undefined,
            session: { threads: opts.threads },
            log: opts.log,
          }).catch((err: unknown) => {
            throw new BankError(`cannot open the bank's backbone ${b.model}: ${errorText(err)} (pass the model's new path with --backbone)`, { cause: err });
          })
        : await openBackbone({ layers: bank.config.layers, imageSize: bank.config.imageSize, session: { threads: opts.threads }, log: opts.log });
    const { backbone, vit } = opened;
    if (b.kind === 'vit' && vit?.modelSha256 !== b.modelSha256) {
      await backbone.dispose();
      throw new BankError(`the backbone model differs from the one the bank was built with (SHA-256 ${vit?.modelSha256.slice(0, 12)} vs ${b.modelSha256.slice(0, 12)})`);
    }
    if (b.kind === 'resnet50' && backbone.id !== b.id) {
      await backbone.dispose();
      throw new BankError(`the bank was built with backbone ${b.id}, not ${backbone.id}`);
    }
    const precision = opts.precision ?? (bank.encoding === 'int8' ? 'int8' : 'fp32');
    const kernel = await SimilarityKernel.create({ precision, threads: opts.threads });
    return new MuscScorer(bank, backbone, cfg, precision, opts.threshold, kernel);
  }

  /** The bank as it is now (with any images added by `score(..., { update })`). */
  get bank(): Bank {
    return this.current;
  }

  /** The threshold decisions use. */
  get threshold(): number {
    return this.thresholdOverride ?? this.current.threshold.value;
  }

  /**
   * Scores images against the bank. Unreadable images are returned in `failures`, the
   * rest are scored. Calls are serialised (one runs at a time; the GEMMs use every core).
   * @param opts.update add the scored images to the bank, keeping at most `maxBank` (oldest leave first)
   */
  score(
    images: readonly ScoreInput[],
    opts: { update?: boolean; maxBank?: number; signal?: AbortSignal } = {},
  ): Promise<{ results: ScoredImage[]; failures: Failure[] }> {
    const run = this.queue.then(() => this.scoreNow(images, opts));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async scoreNow(images: readonly ScoreInput[], opts: { update?: boolean; maxBank?: number; signal?: AbortSignal }) {
    // New images are cut exactly as the bank's images were.
    const geometry = bankGeometry(this.current);
    const failures: Failure[] = [];
    const loaded: ImageViews[] = [];
    await Promise.all(
      images.map(async (img, i) => {
        const name = typeof img === 'string' ? img : img.name;
        try {
          loaded[i] = await loadViews(name, typeof img === 'string' ? null : img.bytes, geometry, this.backbone);
        } catch (err) {
          failures.push({ file: name, error: errorText(err), code: err instanceof MuscError ? err.code : 'IMAGE_DECODE' });
        }
      }),
    );
    const ok = loaded.filter((x): x is ImageViews => x !== undefined);
    const features: ImageFeatures[] = [];
    const perStep = Math.max(1, Math.floor(this.config.batchSize / geometry.coarse.boxes.length));
    for (let i = 0; i < ok.length; i += perStep) {
      opts.signal?.throwIfAborted();
      features.push(...(await featuresOfViews(ok.slice(i, i + perStep), this.backbone, geometry, this.config.batchSize)));
    }
    const res = await scoreAgainstBank(features, this.current, { precision: this.precision, kernel: this.kernel, signal: opts.signal });
    const t = this.threshold;
    const results: ScoredImage[] = features.map((f, i) => ({
      name: f.file,
      score: res.scores[i],
      imageScore: res.imageScores[i],
      decision: decide(res.scores[i], t),
      threshold: t,
      map: res.maps[i],
      width: res.width,
      height: res.height,
      originalWidth: f.originalWidth,
      originalHeight: f.originalHeight,
    }));
    if (opts.update) this.current = appendToBank(this.current, features, res.imageScores, opts.maxBank ?? Infinity);
    return { results, failures };
  }

  /** Writes the bank (atomically). @returns its size in bytes */
  async save(file: string): Promise<number> {
    await this.queue;
    return writeBank(file, this.current);
  }

  /** Releases the backbone and the kernels once the calls in progress are done. */
  async dispose(): Promise<void> {
    await this.queue;
    await this.backbone.dispose();
    await this.kernel.dispose();
  }
}
