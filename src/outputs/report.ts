/**
 * The report's data (`ReportData`) from a scored batch's rows and thumbnails: the
 * one place that decides what report.html says about a run.
 */
import { kListWords } from '../pipeline/rscin.js';
import type { ReportConfigValue, ReportData, ReportImage, ReportMetrics } from '../report/report-data.js';
import { decisionQuality } from './decisions.js';
import { displayNames } from './names.js';
import { decisionScore, type OutputMetadata, type ScoredBatch, type ScoreRow } from './tables.js';
import type { Threshold } from './thresholds.js';

/** How the image scores were taken, in the report's words. */
const IMAGE_SCORE_WORDS = {
  excess: "excess: max of the map minus the batch's typical map (per-pixel median)",
  max: "max of the map (the paper's)",
} as const;

/** The summary table of the report: what produced it, at which working size and image score. */
export function reportConfig(meta: OutputMetadata): Record<string, ReportConfigValue> {
  const c = meta.config;
  const { width, height } = meta.resolution;
  return {
    backbone: meta.backbone,
    workingSize: `${width}×${height}`,
    ...(meta.resolution.rule ? { resolution: meta.resolution.rule } : {}),
    ...(c.imageScore ? { imageScore: IMAGE_SCORE_WORDS[c.imageScore] } : {}),
    layers: c.layers,
    rList: c.rList,
    interval: c.interval,
    kList: kListWords(c.kList),
    ...(c.divideNum !== undefined ? { divideNum: c.divideNum } : {}),
    ...(c.precision !== undefined ? { precision: c.precision } : {}),
    ...(meta.bank
      ? { bank: meta.bank.file ?? '(in memory)', bankImages: meta.bank.images, bankReference: meta.bank.reference, bankEncoding: meta.bank.encoding }
      : {}),
  };
}

/** Builds the report of a batch. `thumbs[i]` are the data-URI thumbnails of `batch.items[i]`. */
export function buildReportData(
  batch: ScoredBatch,
  rows: readonly ScoreRow[],
  thumbs: readonly { thumb: string; heat: string }[],
  threshold: Threshold,
  meta: OutputMetadata,
  title: string,
  metrics?: Omit<ReportMetrics, 'decisionQuality'>,
): ReportData {
  const names = displayNames(batch.items.map((it) => it.file));
  const images: ReportImage[] = batch.items.map((it, i) => ({
    id: i,
    name: names[i],
    path: it.file,
    score: it.imageScore,
    rscin: decisionScore(it),
    decision: rows[i].decision === 'anomalous' ? 'anomalous' : 'normal',
    thumb: thumbs[i].thumb,
    heat: thumbs[i].heat,
    region: rows[i].region,
    originalWidth: it.originalWidth,
    originalHeight: it.originalHeight,
    ...(it.label !== undefined ? { label: it.label } : {}),
    ...(it.defectType !== undefined ? { defectType: it.defectType } : {}),
  }));
  const labels = batch.items.map((it) => it.label);
  const labelled = labels.every((l): l is 0 | 1 => l !== undefined) && labels.length > 0;
  const quality = labelled ? { decisionQuality: decisionQuality(batch.items.map(decisionScore), labels as (0 | 1)[], threshold.value) } : {};
  return {
    title,
    generatedAt: new Date().toISOString(),
    tool: 'musc-ts',
    config: reportConfig(meta),
    threshold,
    images,
    failures: batch.failures.map((f) => ({ file: f.file, error: f.error })),
    ...(metrics ? { metrics: { ...metrics, ...quality } } : {}),
  };
}
