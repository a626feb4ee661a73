/**
 * The library face of banks: `const scorer = await Musc.open({ bank })`, then
 * `await scorer.score(images)` for each new image or small batch. The scorer reopens
 * the bank's backbone with the bank's settings, keeps the GEMM kernels open, and can
 * add what it scored to the bank (a rolling window) and save it.
 *
 * Saving is safe with other writers of the same file (other processes, other scorers):
 * the scorer remembers the images it added since it last read or wrote the file, and
 * `save` re-reads the file under its lock and adds them to what is there (lock.ts).
 */
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Backbone } from '../backbone/backbone.js';
import { openBackbone } from '../backbone/open.js';
import type { GeluMode, VitFamily } from '../backbone/vit.js';
import { ConfigError, MuscError, errorText } from '../errors.js';
import type { Normalization } from '../image/normalize.js';
import { featuresOfViews, loadViews, resolveConfig, type ImageViews, type Failure, type ImageFeatures, type MuscConfig } from '../pipeline/musc.js';
import type { MsmPrecision } from '../pipeline/msm.js';
import { SimilarityKernel } from '../pipeline/similarity-kernel.js';
import { appendToBank } from './bank.js';
import { BankError, MIN_BANK_IMAGES, readBankFile, type Bank, type BankBackbone, type BankReference } from './format.js';
import { updateBankFile, type BankLockOptions } from './lock.js';
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
  /** Raw image score under the bank's rule (`config.imageScore`: the map's max, or its max excess over the bank's typical map). */
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

/** Options of `MuscScorer.score`. */
export interface ScoreCallOptions {
  readonly update?: boolean;
  readonly maxBank?: number;
  readonly signal?: AbortSignal;
  readonly chunk?: number;
}

/** Images decoded, featurised and scored at once by `MuscScorer.score` (see its `chunk`). */
export const DEFAULT_SCORE_CHUNK = 64;

/** What one `score` call returns. */
export interface ScoreResult {
  /** Scored images, in input order. */
  readonly results: ScoredImage[];
  /** Unreadable images, in input order. */
  readonly failures: Failure[];
  /** How many bank images they were scored against (before any update of this call). */
  readonly bankImages: number;
}

/** What `save` did. */
export interface BankSaveResult {
  /** Size of the file written. */
  readonly bytes: number;
  /** Images the bank file holds now. */
  readonly images: number;
  /** Images this scorer added to it with this save. */
  readonly added: number;
  /** Oldest images that left the rolling window with this save. */
  readonly dropped: number;
  /** Whether another writer had updated the file since this scorer read it (their images were kept). */
  readonly merged: boolean;
}

/** Images added by one `score(..., { update })` call, kept until they are saved. */
interface PendingUpdate {
  readonly features: readonly ImageFeatures[];
  readonly scores: readonly number[];
  readonly maxBank: number;
}

/**
 * Checks that a rolling window of `maxBank` images leaves a bank of kind `reference` usable.
 * @param what the option's name in messages (`--max-bank` on the command line)
 * @throws ConfigError when it would not
 */
export function checkMaxBank(reference: BankReference, maxBank: number | undefined, what = 'maxBank'): void {
  if (maxBank === undefined || maxBank === Infinity) return;
  const min = MIN_BANK_IMAGES[reference];
  if (!Number.isInteger(maxBank) || maxBank < min) {
    throw new ConfigError(`${what} ${maxBank} would leave the bank unusable: ${reference === 'unlabeled' ? 'an' : 'a'} ${reference} bank needs at least ${min} images to score against`);
  }
}

/** Why bank `b` cannot take images featurised for bank `a` (empty when it can). */
function kindDifferences(a: Bank, b: Bank): string[] {
  const diffs: string[] = [];
  const same = (x: unknown, y: unknown) => JSON.stringify(x) === JSON.stringify(y);
  if (a.reference !== b.reference) diffs.push(`reference ${a.reference} vs ${b.reference}`);
  if (a.backbone.id !== b.backbone.id || (a.backbone.kind === 'vit' && b.backbone.kind === 'vit' && a.backbone.modelSha256 !== b.backbone.modelSha256)) diffs.push(`backbone ${a.backbone.id} vs ${b.backbone.id}`);
  if (!same(a.config, b.config)) diffs.push('configuration');
  // The pending scores were measured against a's typical map: a bank rebuilt since has another.
  const bytes = (t: Float32Array) => Buffer.from(t.buffer, t.byteOffset, t.byteLength);
  if (a.typical && b.typical ? !bytes(a.typical).equals(bytes(b.typical)) : a.typical !== b.typical) diffs.push('typical map (the bank was rebuilt)');
  if (a.embeddingDim !== b.embeddingDim || !same(a.sets.map((s) => [s.layer, s.r, s.patches, s.channels]), b.sets.map((s) => [s.layer, s.r, s.patches, s.channels]))) diffs.push('feature shapes');
  return diffs;
}

/**
 * Drops pending images that a later rolling window has pushed out for good: replaying the
 * updates on any bank would drop them again, so keeping them would only hold memory.
 */
function keepInWindow(pending: readonly PendingUpdate[]): PendingUpdate[] {
  const out: PendingUpdate[] = [];
  let room = Infinity; // how many of the images up to this update the later windows leave room for
  for (let i = pending.length - 1; i >= 0 && room > 0; i--) {
    const u = pending[i];
    room = Math.min(room, u.maxBank);
    const keep = Math.min(u.features.length, room);
    out.unshift(keep === u.features.length ? u : { ...u, features: u.features.slice(-keep), scores: u.scores.slice(-keep) });
    room -= u.features.length;
  }
  return out;
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
  /** Updates not saved yet, oldest first (only those that can still be in the rolling window). */
  private pending: PendingUpdate[] = [];
  private constructor(
    private current: Bank,
    /** The file the bank was last read from or written to, its checksum and image count then. */
    private source: { readonly file: string; readonly checksum: string; readonly images: number } | null,
    private readonly backbone: Backbone,
    /** The bank's configuration (working size, layers, r, interval, k). */
    readonly config: MuscConfig,
    private readonly precision: MsmPrecision,
    private readonly thresholdOverride: number | undefined,
    private readonly kernel: SimilarityKernel,
  ) {}

  /** Opens a bank and its backbone. @throws BankError / ModelError with the reason. */
  static async open(opts: MuscOpenOptions): Promise<MuscScorer> {
    const read = typeof opts.bank === 'string' ? await readBankFile(opts.bank) : null;
    const bank = read ? read.bank : (opts.bank as Bank);
    const source = read ? { file: resolve(opts.bank as string), checksum: read.checksum, images: read.bank.images.length } : null;
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
    return new MuscScorer(bank, source, backbone, cfg, precision, opts.threshold, kernel);
  }

  /** The bank as it is now (with any images added by `score(..., { update })`, and, after `save`, by other writers). */
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
   * @param opts.update add the scored images to the bank in memory, keeping at most `maxBank`
   *   (oldest leave first); `save` writes them to the bank file
   * @param opts.chunk images decoded, featurised and scored at once (default 64): memory grows
   *   with it (a 224 px image's backbone features take ~2.4 MB); every image of the call is scored
   *   against the bank as it was when the call began, so in fp32 the scores do not depend on it. In
   *   int8 the query side quantises at the larger of the bank's and the chunk's value range, so
   *   images beyond the bank's range round slightly differently in other chunks (as they do between
   *   one image per request and a folder at once): maps within 1 % of their range
   * @throws ConfigError when `maxBank` is below the bank's minimum (`MIN_BANK_IMAGES`), before any work
   */
  score(images: readonly ScoreInput[], opts: ScoreCallOptions = {}): Promise<ScoreResult> {
    const run = this.queue.then(() => this.scoreNow(images, opts));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async scoreNow(images: readonly ScoreInput[], opts: ScoreCallOptions): Promise<ScoreResult> {
    if (opts.update) checkMaxBank(this.current.reference, opts.maxBank);
    const chunk = opts.chunk ?? DEFAULT_SCORE_CHUNK;
    if (!(Number.isInteger(chunk) && chunk >= 1)) throw new ConfigError(`chunk must be a positive integer (got ${chunk})`);
    // New images are cut exactly as the bank's images were.
    const geometry = bankGeometry(this.current);
    const bank = this.current; // every chunk is scored against the bank as the call found it
    const t = this.threshold;
    const results: ScoredImage[] = [];
    const failures: Failure[] = [];
    const kept: ImageFeatures[] = []; // only with update: the bank stores them
    const keptScores: number[] = [];
    const perStep = Math.max(1, Math.floor(this.config.batchSize / geometry.coarse.boxes.length));
    // In chunks, so memory holds one chunk's decoded images and features, not the whole input.
    for (let c = 0; c < images.length; c += chunk) {
      opts.signal?.throwIfAborted();
      // Indexed by input, so results and failures keep the input order whatever order decoding ends in.
      const decoded = await Promise.all(
        images.slice(c, c + chunk).map(async (img): Promise<ImageViews | Failure> => {
          const name = typeof img === 'string' ? img : img.name;
          try {
            return await loadViews(name, typeof img === 'string' ? null : img.bytes, geometry, this.backbone);
          } catch (err) {
            return { file: name, error: errorText(err), code: err instanceof MuscError ? err.code : 'IMAGE_DECODE' };
          }
        }),
      );
      failures.push(...decoded.filter((x): x is Failure => 'error' in x));
      const ok = decoded.filter((x): x is ImageViews => !('error' in x));
      const features: ImageFeatures[] = [];
      for (let i = 0; i < ok.length; i += perStep) {
        opts.signal?.throwIfAborted();
        features.push(...(await featuresOfViews(ok.slice(i, i + perStep), this.backbone, geometry, this.config.batchSize)));
      }
      if (features.length === 0) continue;
      const res = await scoreAgainstBank(features, bank, { precision: this.precision, kernel: this.kernel, signal: opts.signal });
      features.forEach((f, i) =>
        results.push({
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
        }),
      );
      if (opts.update) {
        kept.push(...features);
        keptScores.push(...res.imageScores);
        // The rolling window keeps the last maxBank images at most: older ones need not be held.
        const max = opts.maxBank ?? Infinity;
        if (kept.length > max) {
          kept.splice(0, kept.length - max);
          keptScores.splice(0, keptScores.length - max);
        }
      }
    }
    const bankImages = bank.images.length;
    if (opts.update && kept.length > 0) {
      const update: PendingUpdate = { features: kept, scores: keptScores, maxBank: opts.maxBank ?? Infinity };
      this.current = appendToBank(this.current, update.features, update.scores, update.maxBank);
      this.pending = keepInWindow([...this.pending, update]);
    }
    return { results, failures, bankImages };
  }

  /**
   * Saves the images this scorer added (`score(..., { update })`) to the bank file, safely
   * with other writers: under the file's lock, when the file is as this scorer last read or
   * wrote it, its bank is written; when someone else updated it meanwhile, the file is
   * re-read and this scorer's new images are added to it (with the same rolling windows),
   * so nobody's update is lost; then the scorer goes on with the bank as written. A file
   * that does not exist yet receives the scorer's whole bank. Atomic: a crash leaves the
   * previous file. To replace a file outright, use `writeBank(file, scorer.bank)`.
   * @throws BankError when the file holds another bank (other kind, backbone or config), is
   *   corrupt, or stays locked longer than `opts.waitMs`; the file is untouched then
   */
  save(file: string, opts: BankLockOptions = {}): Promise<BankSaveResult> {
    const run = this.queue.then(() => this.saveNow(file, opts));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async saveNow(file: string, opts: BankLockOptions): Promise<BankSaveResult> {
    const target = resolve(file);
    const added = this.pending.reduce((n, u) => n + u.features.length, 0);
    let before = 0; // images in the file before this save
    let merged = false;
    const written = await updateBankFile(
      target,
      async (onDisk) => {
        if (!onDisk.exists) return this.current;
        if (this.source?.file === target && onDisk.checksum === this.source.checksum) {
          before = this.source.images;
          return added === 0 ? null : this.current; // nobody else wrote it: the bank in memory is the update
        }
        let bank = await onDisk.read();
        const diffs = kindDifferences(this.current, bank);
        if (diffs.length) throw new BankError(`${file} holds another bank (${diffs.join('; ')}); not adding this scorer's images to it`);
        merged = true;
        before = bank.images.length;
        for (const u of this.pending) bank = appendToBank(bank, u.features, u.scores, u.maxBank);
        return bank;
      },
      opts,
    );
    if (!written) return { bytes: (await stat(target)).size, images: this.current.images.length, added: 0, dropped: 0, merged: false };
    this.current = written.bank;
    this.source = { file: target, checksum: written.checksum, images: written.bank.images.length };
    this.pending = [];
    return { bytes: written.bytes, images: written.bank.images.length, added, dropped: Math.max(0, before + added - written.bank.images.length), merged };
  }

  /** Releases the backbone and the kernels once the calls in progress are done. */
  async dispose(): Promise<void> {
    await this.queue;
    await this.backbone.dispose();
    await this.kernel.dispose();
  }
}
