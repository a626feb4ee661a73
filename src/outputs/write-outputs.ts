/**
 * The one writer of results, used by `musc run`, `musc eval --report`, `musc score`
 * and the library: for a scored batch it writes
 *
 *   scores.csv, scores.json   one row per input (errors included) and what produced them
 *   overlays/<stem>.png       the heatmap over the original image, at its original size
 *   maps/<stem>.npy           the raw map, float32 [H, W] at the working size
 *   report.html               the self-contained report
 *   .musc-output.json         the marker listing these files (output-folder.ts)
 *
 * Everything is written to a staging folder first and replaces the folder's previous
 * outputs only when complete, so the table and the report always describe the same run.
 */
import { writeFile } from 'node:fs/promises';
import { MuscError, errorText } from '../errors.js';
import { renderReportHtml } from '../report/html.js';
import type { ReportMetrics } from '../report/report-data.js';
import { batchHeatScale, renderImageFile, type HeatScale } from './heatmap.js';
import { outputStems } from './names.js';
import { encodeNpy } from './npy.js';
import { OutputStaging, type OutputFolderPlan } from './output-folder.js';
import { buildReportData } from './report.js';
import { scoreRows, scoresCsv, scoresJson, type OutputMetadata, type ScoredBatch, type ScoreRow } from './tables.js';
import type { Threshold } from './thresholds.js';

/** Options of `writeOutputs`. */
export interface WriteOutputsOptions {
  /** The decision threshold (chosen by `chooseThreshold`, or a bank's). */
  readonly threshold: Threshold;
  /** Colour scale of the heatmaps (default: the batch's own, `batchHeatScale`). */
  readonly heatScale?: HeatScale;
  readonly metadata: OutputMetadata;
  /** Report title. */
  readonly title: string;
  /** Metrics of a labelled batch (eval); decision quality is added from the items' labels. */
  readonly metrics?: Omit<ReportMetrics, 'decisionQuality'>;
  /** Stops before the next image; the folder is then left as it was. */
  readonly signal?: AbortSignal;
  readonly onImage?: (done: number, total: number) => void;
}

/** What was written. */
export interface WrittenOutputs {
  /** Absolute path of the output folder. */
  readonly dir: string;
  /** The rows of scores.csv, in order. */
  readonly rows: readonly ScoreRow[];
}

/** Names of the files every output folder has; moved in last, the report after the tables. */
export const RESULT_FILES = ['scores.json', 'scores.csv', 'report.html'] as const;

/** The typical map (image score `excess`), float32 `[H, W]` like the maps. */
export const TYPICAL_FILE = 'typical.npy';

/**
 * Writes all outputs of a scored batch into the folder `plan` describes (see
 * `checkOutputFolder`). On failure or abort nothing of this run remains.
 */
export async function writeOutputs(plan: OutputFolderPlan, batch: ScoredBatch, opts: WriteOutputsOptions): Promise<WrittenOutputs> {
  const { threshold } = opts;
  const rows = scoreRows(batch, threshold);
  const scale = opts.heatScale ?? batchHeatScale(batch.items.map((it) => it.map));
  const stems = outputStems(batch.items.map((it) => it.file));
  const { width, height } = batch.size;
  opts.signal?.throwIfAborted();
  const staging = await OutputStaging.open(plan);
  try {
    const thumbs: { thumb: string; heat: string }[] = [];
    for (const [i, it] of batch.items.entries()) {
      opts.signal?.throwIfAborted();
      const overlay = `overlays/${stems[i]}.png`;
      const map = `maps/${stems[i]}.npy`;
      await writeFile(await staging.path(map), encodeNpy(it.map, [height, width]));
      try {
        const r = await renderImageFile(it.file, it.map, batch.size, scale);
        await writeFile(await staging.path(overlay), r.png);
        thumbs.push(r);
        rows[i] = { ...rows[i], overlay, map };
      } catch (err) {
        // e.g. the file changed or vanished since it was scored: keep its scores and map.
        thumbs.push({ thumb: 'data:,', heat: 'data:,' });
        rows[i] = { ...rows[i], map, error: `overlay not written: ${errorText(err)}` };
      }
      opts.onImage?.(i + 1, batch.items.length);
    }
    // Image score `excess`: the map the scores and regions are measured against, so they can be rebuilt from the maps.
    if (batch.typical) await writeFile(await staging.path(TYPICAL_FILE), encodeNpy(batch.typical, [height, width]));
    const report = buildReportData(batch, rows, thumbs, threshold, opts.metadata, opts.title, opts.metrics);
    await writeFile(await staging.path('scores.json'), scoresJson(opts.metadata, threshold, rows, batch.failures));
    await writeFile(await staging.path('scores.csv'), scoresCsv(rows));
    await writeFile(await staging.path('report.html'), renderReportHtml(report));
    opts.signal?.throwIfAborted();
    await staging.commit(opts.metadata.command, RESULT_FILES);
  } catch (err) {
    await staging.abort();
    if (opts.signal?.aborted) throw opts.signal.reason instanceof Error ? opts.signal.reason : err;
    if (err instanceof MuscError) throw err;
    throw new MuscError('OUTPUT', `could not write the outputs to ${plan.dir}: ${errorText(err)}; the folder was left as it was`, { cause: err });
  }
  return { dir: plan.dir, rows };
}
