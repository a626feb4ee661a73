/**
 * `Musc.buildBank` / `musc bank build` and `Musc.score` / `musc score`: feature banks of
 * reference images, and new images scored against them with the same outputs as `musc run`.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { buildBank, checkBankBuild } from '../bank/bank.js';
import { bankImageScore, readBank, typicalOf, writeBank, type Bank, type BankEncoding, type BankReference } from '../bank/format.js';
import { bankGeometry, bankHeatScale } from '../bank/score.js';
import { MuscScorer, type BankSaveResult, type MuscOpenOptions } from '../bank/scorer.js';
import { ConfigError, MuscError, errorText } from '../errors.js';
import { collectImages } from '../inputs/collect.js';
import { MIN_IMAGES } from '../pipeline/msm.js';
import { extractFeatures, type Failure } from '../pipeline/musc.js';
import { checkOutputFolder } from '../outputs/output-folder.js';
import { scoreRows, type OutputMetadata, type ScoredBatch } from '../outputs/tables.js';
import { bankThreshold, chooseThreshold, type ThresholdRule } from '../outputs/thresholds.js';
import { writeOutputs } from '../outputs/write-outputs.js';
import { configOf, openScoring, type ScoringOptions } from './options.js';
import { batchResult, type BatchResult } from './results.js';

/** Options of `Musc.buildBank`. */
export interface BankBuildOptions extends ScoringOptions {
  /** Bank file to write (atomically); without it the bank is only returned. */
  readonly out?: string;
  /** `unlabeled` (default): zero-shot MuSc against the bank; `good`: few-shot nearest neighbour against known-good images. */
  readonly reference?: BankReference;
  /** Storage of patch vectors: `int8` (default, 1 byte per value), `fp16` or `fp32`. */
  readonly encoding?: BankEncoding;
  /** Decision rule on the bank's own scores (default: Otsu for unlabeled banks, median + 3·MAD for good ones). */
  readonly threshold?: ThresholdRule;
}

/** A built bank. */
export interface BuiltBank {
  /** The bank in memory (usable with `Musc.open({ bank })`). */
  readonly bank: Bank;
  /** Size of the written file in bytes, when `out` was given. */
  readonly bytes?: number;
  /** Files that could not be read, with the reason. */
  readonly failures: readonly Failure[];
}

/** Largest sensible fixed threshold: RsCIN scores are in [0, 1], raw scores (good banks) in [0, 2]. */
function checkBankThreshold(value: number, reference: BankReference, flag = '--threshold'): void {
  const max = reference === 'good' ? 2 : 1;
  const what = reference === 'good' ? "the raw score of a good bank (a patch distance or, with image score excess, its excess over the bank's typical map; at most 2)" : 'the RsCIN score of an unlabeled bank (0..1)';
  if (!(value >= 0 && value <= max)) throw new ConfigError(`${flag} must be a number in [0, ${max}] for ${what} (got ${value})`);
}

async function checkWritableFile(file: string): Promise<void> {
  const st = await stat(file).catch(() => null);
  if (st?.isDirectory()) throw new MuscError('OUTPUT', `cannot write bank ${file}: it is a folder`);
  const dir = dirname(resolve(file));
  await access(dir, constants.W_OK | constants.X_OK).catch((err: unknown) => {
    throw new MuscError('OUTPUT', `cannot write bank ${file}: ${errorText(err)}`, { cause: err });
  });
}

/**
 * Extracts and stores the features of reference images: an unlabeled batch (zero-shot)
 * or known-good images (`reference: 'good'`, few-shot). Inputs and the output path are
 * checked before the model loads.
 */
export async function buildBankFromImages(inputs: readonly string[], opts: BankBuildOptions = {}): Promise<BuiltBank> {
  const reference = opts.reference ?? 'unlabeled';
  const planned = configOf(opts);
  // Also checked by buildBank, but only after every image's features: refused before the model loads.
  checkBankBuild(Boolean(planned.refine), planned.divideNum, reference);
  if (opts.threshold) {
    chooseThreshold([0, 1], opts.threshold);
    if (opts.threshold.method === 'fixed') checkBankThreshold(opts.threshold.value, reference);
  }
  if (opts.out) await checkWritableFile(opts.out);
  const { files, skippedOutputs } = await collectImages(inputs);
  for (const d of skippedOutputs) opts.log?.(`skipped output folder ${d}`);
  const minImages = reference === 'good' ? 2 : MIN_IMAGES;
  if (files.length < minImages) throw new ConfigError(`a ${reference} bank needs at least ${minImages} readable images; found ${files.length} (image files in ${inputs.join(', ')})`);
  const { backbone, cfg, bankBackbone } = await openScoring(opts);
  try {
    // A bank stores one size: --resolution auto may keep the aspect but not refine.
    const bankCfg = { ...cfg, autoRefine: false };
    const { features, failures } = await extractFeatures(files, backbone, bankCfg, opts);
    const bank = await buildBank(features, bankCfg, { backbone: bankBackbone, reference, encoding: opts.encoding, threshold: opts.threshold, threads: opts.threads, signal: opts.signal });
    const bytes = opts.out
      ? await writeBank(opts.out, bank).catch((err: unknown) => {
          throw new MuscError('OUTPUT', `cannot write bank ${opts.out}: ${errorText(err)}`, { cause: err });
        })
      : undefined;
    return { bank, failures, ...(bytes !== undefined ? { bytes } : {}) };
  } finally {
    await backbone.dispose();
  }
}

/** Options of `Musc.score`. */
export interface BankScoreOptions extends Omit<MuscOpenOptions, 'log'> {
  /** Output folder for scores.csv/json, overlays/, maps/ and report.html (as `Musc.run`); without it nothing is written. */
  readonly out?: string;
  /** Write into a non-empty folder that musc did not write (default: refuse). */
  readonly overwrite?: boolean;
  /** Add the scored images to the bank and save it (to the bank file; needs `bank` to be a path). */
  readonly update?: boolean;
  /** With `update`: keep at most this many images (oldest leave first). */
  readonly maxBank?: number;
  /** Aborts at the next step; nothing is saved or written then. */
  readonly signal?: AbortSignal;
  /** Progress of writing outputs (stage `outputs`). */
  readonly onProgress?: ScoringOptions['onProgress'];
  /** Messages about what is being done (model downloads, skipped folders). */
  readonly log?: (message: string) => void;
}

/** New images scored against a bank. */
export interface BankScoreResult extends BatchResult {
  /** The bank after the call (with the scored images when `update`, and what other writers saved meanwhile). */
  readonly bank: Bank;
  /** How many bank images the new images were scored against (before this call's update). */
  readonly bankImages: number;
  /** With `update`: what saving did (the file's image count after this update, images added and dropped). */
  readonly saved?: BankSaveResult;
  /** Seconds spent scoring (decoding, backbone, bank comparison). */
  readonly seconds: number;
}

/**
 * Opens a bank, scores new images against it and (optionally) writes the outputs of
 * `Musc.run` and saves the updated bank; the bank's threshold and heat scale are used.
 */
export async function scoreWithBank(inputs: readonly string[], opts: BankScoreOptions): Promise<BankScoreResult> {
  if (opts.update && typeof opts.bank !== 'string') throw new ConfigError('update needs the bank as a file path, to save it');
  const plan = opts.out ? await checkOutputFolder(opts.out, { overwrite: opts.overwrite }) : null;
  const bankIn = typeof opts.bank === 'string' ? await readBank(opts.bank) : opts.bank;
  if (opts.threshold !== undefined) checkBankThreshold(opts.threshold, bankIn.reference);
  const { files, skippedOutputs } = await collectImages(inputs, { outputs: plan ? [plan.dir] : [] });
  for (const d of skippedOutputs) opts.log?.(`skipped output folder ${d}`);
  const scorer = await MuscScorer.open({ ...opts, bank: bankIn });
  try {
    const t0 = performance.now();
    const { results, failures, bankImages } = await scorer.score(files, { update: opts.update, maxBank: opts.maxBank, signal: opts.signal });
    const seconds = (performance.now() - t0) / 1000;
    // Under the bank's lock, merged with other writers' updates (MuscScorer.save).
    const saved = opts.update && typeof opts.bank === 'string' ? await scorer.save(opts.bank) : undefined;
    const extra = { bankImages, ...(saved ? { saved } : {}) };
    const bank = scorer.bank;
    const unlabeled = bankIn.reference === 'unlabeled';
    const batch: ScoredBatch = {
      items: results.map((r) => ({ file: r.name, imageScore: r.imageScore, rscinScore: unlabeled ? r.score : null, map: r.map, originalWidth: r.originalWidth, originalHeight: r.originalHeight })),
      size: bankGeometry(bankIn).map,
      failures,
      typical: typicalOf(bankIn),
    };
    const threshold = bankThreshold(bankIn, opts.threshold);
    if (!plan) return { ...batchResult(batch, scoreRows(batch, threshold), threshold), bank, seconds, ...extra };
    const metadata: OutputMetadata = {
      command: 'score',
      backbone: bankIn.backbone.id,
      config: { ...bankIn.config, imageScore: bankImageScore(bankIn.config), precision: opts.precision ?? (bankIn.encoding === 'int8' ? 'int8' : 'fp32') },
      resolution: { ...batch.size, rule: bankGeometry(bankIn).rule },
      bank: {
        ...(typeof opts.bank === 'string' ? { file: resolve(opts.bank) } : {}),
        images: bankIn.images.length,
        reference: bankIn.reference,
        encoding: bankIn.encoding,
        createdAt: bankIn.createdAt,
        updatedAt: bankIn.updatedAt,
      },
    };
    const written = await writeOutputs(plan, batch, {
      threshold,
      heatScale: bankHeatScale(bankIn),
      metadata,
      title: `musc score: ${inputs.join(', ')} against ${typeof opts.bank === 'string' ? basename(opts.bank) : 'a bank'}`,
      signal: opts.signal,
      onImage: (d, t) => opts.onProgress?.('outputs', d / t),
    });
    return { ...batchResult(batch, written.rows, threshold, written.dir), bank, seconds, ...extra };
  } finally {
    await scorer.dispose();
  }
}
