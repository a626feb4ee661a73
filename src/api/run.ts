/**
 * `Musc.run` / `musc run`: score a batch of unlabeled images against each other and
 * (optionally) write the outputs. Everything that can be checked without the model is
 * checked first: inputs, image count, output folder.
 */
import { ConfigError } from '../errors.js';
import { collectImages } from '../inputs/collect.js';
import { MIN_IMAGES } from '../pipeline/msm.js';
import { extractFeatures, scoreFeatures, type ImageFeatures, type MuscConfig, type MuscScores } from '../pipeline/musc.js';
import { checkOutputFolder } from '../outputs/output-folder.js';
import { scoreRows, type OutputMetadata, type ScoredBatch } from '../outputs/tables.js';
import { chooseThreshold, type ThresholdRule } from '../outputs/thresholds.js';
import { writeOutputs } from '../outputs/write-outputs.js';
import { configOf, openScoring, type ScoringOptions } from './options.js';
import { batchResult, type BatchResult } from './results.js';

/** Options of `Musc.run`. */
export interface RunOptions extends ScoringOptions {
  /** Output folder for scores.csv/json, overlays/, maps/ and report.html; without it nothing is written. */
  readonly out?: string;
  /** Write into a non-empty folder that musc did not write (default: refuse). */
  readonly overwrite?: boolean;
  /** How the decision threshold is chosen (default: Otsu). */
  readonly threshold?: ThresholdRule;
  /** Report title (default: the inputs). */
  readonly title?: string;
}

/** A file and its original size. */
type ImageSizes = Pick<ImageFeatures, 'file' | 'originalWidth' | 'originalHeight'>;

/** The items of a batch scored together (`features[i]` gives the file and original size of score `i`). */
export function batchOf(features: readonly ImageSizes[], scores: MuscScores, failures: ScoredBatch['failures'], extra?: (i: number) => { label?: 0 | 1; defectType?: string }): ScoredBatch {
  return {
    items: features.map((f, i) => ({
      file: f.file,
      imageScore: scores.imageScores[i],
      rscinScore: scores.rscinScores[i],
      map: scores.maps[i],
      originalWidth: f.originalWidth,
      originalHeight: f.originalHeight,
      ...extra?.(i),
    })),
    size: { width: scores.width, height: scores.height },
    failures,
    typical: scores.typical,
  };
}

/** The metadata of a batch's outputs. */
export function batchMetadata(command: 'run' | 'eval', backbone: string, cfg: MuscConfig, scores: MuscScores): OutputMetadata {
  return { command, backbone, config: { ...cfg, kList: scores.kList }, resolution: { width: scores.width, height: scores.height, rule: scores.geometry.rule } };
}

/**
 * Scores every image of a batch against the others (zero-shot MuSc), decides normal or
 * anomalous, and writes the outputs to `opts.out` when given.
 * @param inputs image folders (searched recursively), files or glob patterns
 * @throws DatasetError when no image is found, ConfigError with fewer than 5 readable
 *   images, MuscError `OUTPUT`/`OUTPUT_NOT_EMPTY` when the output folder cannot be used
 */
export async function runBatch(inputs: readonly string[], opts: RunOptions = {}): Promise<BatchResult> {
  const rule = opts.threshold ?? { method: 'otsu' };
  configOf(opts);
  chooseThreshold([0, 1], rule); // validates the rule
  const plan = opts.out ? await checkOutputFolder(opts.out, { overwrite: opts.overwrite }) : null;
  const { files, skippedOutputs } = await collectImages(inputs, { outputs: plan ? [plan.dir] : [] });
  for (const d of skippedOutputs) opts.log?.(`skipped output folder ${d}`);
  if (files.length < MIN_IMAGES) {
    throw new ConfigError(`MuSc scores images against each other and needs at least ${MIN_IMAGES} readable images; found ${files.length} (image files in ${inputs.join(', ')})`);
  }
  const { backbone, cfg } = await openScoring(opts);
  let scored: { features: ImageSizes[]; scores: MuscScores; failures: ScoredBatch['failures'] };
  try {
    const { features, failures, geometry } = await extractFeatures(files, backbone, cfg, opts);
    opts.log?.(`working size: ${geometry.rule}`);
    if (features.length < MIN_IMAGES) {
      const why = failures.length ? ` (${failures.length} of ${files.length} files could not be read)` : '';
      throw new ConfigError(`MuSc scores images against each other and needs at least ${MIN_IMAGES} readable images; found ${features.length}${why}`);
    }
    const scores = await scoreFeatures(features, cfg, { onProgress: opts.onProgress, signal: opts.signal, threads: opts.threads, mutualScoring: opts.mutualScoring, crossScoring: opts.crossScoring, setsInFlight: opts.setsInFlight });
    // Keep only what the outputs need: the backbone features can be freed now.
    scored = { features: features.map((f) => ({ file: f.file, originalWidth: f.originalWidth, originalHeight: f.originalHeight })), scores, failures };
  } finally {
    await backbone.dispose();
  }
  const { features, scores, failures } = scored;
  const batch = batchOf(features, scores, failures);
  const threshold = chooseThreshold(scores.rscinScores, rule);
  if (!plan) return batchResult(batch, scoreRows(batch, threshold), threshold);
  const written = await writeOutputs(plan, batch, {
    threshold,
    metadata: batchMetadata('run', backbone.id, cfg, scores),
    title: opts.title ?? `musc run: ${inputs.join(', ')}`,
    signal: opts.signal,
    onImage: (d, t) => opts.onProgress?.('outputs', d / t),
  });
  return batchResult(batch, written.rows, threshold, written.dir);
}
