/**
 * `Musc.evaluate` / `musc eval`: zero-shot scoring of labelled category folders and
 * their metrics, optionally with the same outputs and report as `musc run` (plus
 * metrics and curves). Datasets and report folders are checked before the model loads;
 * one broken category does not stop the others.
 */
import { join } from 'node:path';
import type { Dataset } from '../data/dataset.js';
import { MuscError } from '../errors.js';
import { checkMaxImages, evaluateDataset, meanMetrics, readCategory, type CategoryResult } from '../eval.js';
import type { ImageMetrics, PixelMetrics } from '../metrics/index.js';
import type { MuscConfig } from '../pipeline/musc.js';
import { imageCurves } from '../outputs/curves.js';
import { checkOutputFolder, type OutputFolderPlan } from '../outputs/output-folder.js';
import { chooseThreshold, type ThresholdRule } from '../outputs/thresholds.js';
import { writeOutputs } from '../outputs/write-outputs.js';
import { configOf, openScoring, type ScoringOptions } from './options.js';
import { batchMetadata, batchOf } from './run.js';

/** Options of `Musc.evaluate`. */
export interface EvaluateOptions extends ScoringOptions {
  /** Score a stratified, deterministic subset of at most this many images per category (≥ 5). */
  readonly maxImages?: number;
  /** Also write outputs and report.html (with metrics and curves) here; one sub-folder per category when several. */
  readonly report?: string;
  /** Write reports into non-empty folders that musc did not write (default: refuse). */
  readonly overwrite?: boolean;
  /** Decision rule of the report (default: Otsu). */
  readonly threshold?: ThresholdRule;
  /** Called as each category starts, ends or fails (e.g. to show one progress bar per category). */
  readonly onCategory?: (event: CategoryEvent) => void;
}

/** Progress of `Musc.evaluate` across categories. */
export type CategoryEvent =
  | { readonly kind: 'start'; readonly dir: string; readonly name: string }
  | { readonly kind: 'done'; readonly dir: string; readonly result: CategoryResult; readonly reportDir?: string }
  | { readonly kind: 'failed'; readonly dir: string; readonly error: string };

/** What `Musc.evaluate` found. */
export interface EvaluationResult {
  /** One entry per category evaluated, in the order given. */
  readonly categories: readonly CategoryResult[];
  /** Mean of every metric over the categories. */
  readonly mean: { readonly image: ImageMetrics; readonly pixel: PixelMetrics };
  /** Categories that could not be evaluated, with the reason. */
  readonly failed: readonly { readonly dir: string; readonly error: string }[];
  /** The configuration used (RsCIN windows resolved per category are in `categories[i].config`). */
  readonly config: MuscConfig;
  /** Backbone id. */
  readonly backbone: string;
}

/**
 * Evaluates category folders (MVTec AD, BTAD or VisA layout): zero-shot scores,
 * image and pixel metrics, and with `report` the outputs of `Musc.run` plus metrics.
 * @throws MuscError `EVAL_FAILED` when no category could be evaluated; the signal's reason when aborted
 */
export async function evaluate(dirs: string | readonly string[], opts: EvaluateOptions = {}): Promise<EvaluationResult> {
  const list = typeof dirs === 'string' ? [dirs] : [...dirs];
  configOf(opts);
  checkMaxImages(opts.maxImages);
  const rule = opts.threshold ?? { method: 'otsu' };
  chooseThreshold([0, 1], rule);
  const failed: { dir: string; error: string }[] = [];
  const fail = (dir: string, err: unknown) => {
    if (!(err instanceof MuscError)) throw err;
    failed.push({ dir, error: err.message });
    opts.onCategory?.({ kind: 'failed', dir, error: err.message });
  };
  // Everything that needs no model first: a typo in a folder name costs no model load.
  const ready: { dir: string; dataset: Dataset; plan: OutputFolderPlan | null }[] = [];
  for (const dir of list) {
    try {
      const dataset = await readCategory(dir);
      const out = opts.report && (list.length > 1 ? join(opts.report, dataset.name) : opts.report);
      ready.push({ dir, dataset, plan: out ? await checkOutputFolder(out, { overwrite: opts.overwrite }) : null });
    } catch (err) {
      fail(dir, err);
    }
  }
  const results: CategoryResult[] = [];
  let backboneId = '';
  let config: MuscConfig = configOf(opts);
  if (ready.length > 0) {
    const { backbone, cfg } = await openScoring(opts);
    backboneId = backbone.id;
    config = cfg;
    try {
      for (const { dir, dataset, plan } of ready) {
        opts.onCategory?.({ kind: 'start', dir, name: dataset.name });
        try {
          const r = await evaluateDataset(dataset, backbone, cfg, { onProgress: opts.onProgress, maxImages: opts.maxImages, kList: opts.kList, signal: opts.signal, threads: opts.threads, mutualScoring: opts.mutualScoring, crossScoring: opts.crossScoring, setsInFlight: opts.setsInFlight });
          if (plan) {
            const items = r.dataset.items;
            const labels = items.map((it) => it.label);
            await writeOutputs(plan, batchOf(r.features.map((f, i) => ({ ...f, file: items[i].imagePath })), r.scores, r.failures, (i) => ({ label: labels[i], defectType: items[i].defectType })), {
              threshold: chooseThreshold(r.scores.rscinScores, rule),
              metadata: batchMetadata('eval', backbone.id, r.config, r.scores),
              title: `musc eval: ${r.name}`,
              metrics: { image: r.image, pixel: r.pixel, ...imageCurves(r.scores.rscinScores, labels) },
              signal: opts.signal,
              onImage: (d, t) => opts.onProgress?.('outputs', d / t),
            });
          }
          results.push(r);
          opts.onCategory?.({ kind: 'done', dir, result: r, ...(plan ? { reportDir: plan.dir } : {}) });
        } catch (err) {
          // Ctrl-C stops the loop; any other error of ours skips this category only.
          if (opts.signal?.aborted) throw err;
          fail(dir, err);
        }
      }
    } finally {
      await backbone.dispose();
    }
  }
  if (results.length === 0) {
    throw new MuscError('EVAL_FAILED', `${failed.length} of ${list.length} categories could not be evaluated: ${failed.map((f) => `${f.dir}: ${f.error}`).join('; ')}`);
  }
  return { categories: results, mean: meanMetrics(results), failed, config: results.length === 1 ? results[0].config : config, backbone: backboneId };
}
