/**
 * `musc run`: score every image of a batch against the others (zero-shot) and
 * write what an inspection engineer needs: scores.csv / scores.json, an overlay
 * PNG and a raw `.npy` map per image, and a self-contained report.html.
 * Bad files are reported and skipped; outputs are written atomically.
 */
import { existsSync } from 'node:fs';
import { access, constants, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backbone } from '../backbone/backbone.js';
import { ConfigError, MuscError, errorText } from '../errors.js';
import { MIN_IMAGES } from '../pipeline/msm.js';
import { extractFeatures, scoreFeatures, type Failure, type MuscConfig, type MuscScores, type ProgressFn } from '../pipeline/musc.js';
import { renderReportHtml } from '../report/html.js';
import type { ReportData, ReportImage } from '../report/report-data.js';
import { writeAtomic } from './atomic.js';
import { collectImages, displayNames, outputStems } from './files.js';
import { encodeNpy, renderOverlay, type HeatScale } from './overlay.js';
import { strongestRegion, type Region } from './region.js';
import { chooseThreshold, decisionQuality, type Threshold, type ThresholdRule } from './threshold.js';

/** One row of scores.csv / scores.json. */
export interface ScoreRow {
  readonly path: string;
  readonly imageScore: number | null;
  readonly rscinScore: number | null;
  readonly decision: 'anomalous' | 'normal' | 'error';
  readonly threshold: number | null;
  readonly region: Region | null;
  readonly overlay: string | null;
  readonly map: string | null;
  readonly error?: string;
}

/** What a run produced. */
export interface RunResult {
  readonly outDir: string;
  readonly rows: readonly ScoreRow[];
  readonly failures: readonly Failure[];
  readonly threshold: Threshold;
}

/** Ground truth and metrics to include in the report (from `musc eval --report`). */
export interface ReportExtras {
  readonly labels?: readonly (0 | 1)[];
  readonly defectTypes?: readonly string[];
  readonly metrics?: ReportData['metrics'];
}

/** Fails early, before any work, when the output folder cannot be written. */
export async function ensureWritableDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK);
    const probe = join(dir, `.musc-write-test-${process.pid}`);
    await writeFile(probe, '');
    await rm(probe, { force: true });
  } catch (err) {
    throw new MuscError('OUTPUT', `cannot write to output folder ${dir}: ${errorText(err)}`, { cause: err });
  }
}

function csvCell(v: string | number | null | undefined): string {
  if (v === null || v === undefined) return '';
  const s = typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toPrecision(8)) : v;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** scores.csv text (RFC 4180 quoting). */
export function scoresCsv(rows: readonly ScoreRow[]): string {
  const head = ['path', 'image_score', 'rscin_score', 'decision', 'threshold', 'region_x', 'region_y', 'region_width', 'region_height', 'overlay', 'map', 'error'];
  const lines = rows.map((r) =>
    [r.path, r.imageScore, r.rscinScore, r.decision, r.threshold, r.region?.x, r.region?.y, r.region?.width, r.region?.height, r.overlay, r.map, r.error].map(csvCell).join(','),
  );
  return `${head.join(',')}\n${lines.join('\n')}\n`;
}

/**
 * Writes all per-image outputs and the report for already-scored features.
 * Shared by `musc run` and `musc eval --report`.
 */
export async function writeRunOutputs(
  outDir: string,
  files: readonly string[],
  sizes: readonly { originalWidth: number; originalHeight: number }[],
  scores: MuscScores,
  failures: readonly Failure[],
  rule: ThresholdRule,
  meta: { config: MuscConfig; backbone: string; title: string; extras?: ReportExtras; signal?: AbortSignal; onImage?: (done: number, total: number) => void },
): Promise<RunResult> {
  const threshold = chooseThreshold(scores.rscinScores, rule);
  await mkdir(join(outDir, 'overlays'), { recursive: true });
  await mkdir(join(outDir, 'maps'), { recursive: true });
  const stems = outputStems(files);
  const names = displayNames(files);
  // One colour scale for the batch: from the lowest map value to the highest image score.
  let low = Infinity;
  for (const m of scores.maps) for (let i = 0; i < m.length; i += 7) if (m[i] < low) low = m[i];
  const scale: HeatScale = { low, high: Math.max(...scores.imageScores) };
  const mapSize = { width: scores.width, height: scores.height };
  const rows: ScoreRow[] = files.map((file, i) => {
    const rscinScore = scores.rscinScores[i];
    const { originalWidth: w, originalHeight: h } = sizes[i];
    return {
      path: file,
      imageScore: scores.imageScores[i],
      rscinScore,
      decision: rscinScore > threshold.value ? 'anomalous' : 'normal',
      threshold: threshold.value,
      region: strongestRegion(scores.maps[i], mapSize, w, h),
      overlay: null,
      map: null,
    };
  });
  for (const f of failures) {
    rows.push({ path: f.file, imageScore: null, rscinScore: null, decision: 'error', threshold: threshold.value, region: null, overlay: null, map: null, error: f.error });
  }
  const cfg: MuscConfig = { ...meta.config, kList: scores.kList };
  const writeScores = async () => {
    const json = {
      tool: 'musc-ts',
      backbone: meta.backbone,
      config: cfg,
      threshold,
      mapFormat: `maps/*.npy: float32 [${scores.height}, ${scores.width}] raw anomaly maps (mean patch distance, 0..2) at the working resolution`,
      images: rows,
      failures,
    };
    await writeAtomic(join(outDir, 'scores.json'), `${JSON.stringify(json, null, 1)}\n`);
    await writeAtomic(join(outDir, 'scores.csv'), scoresCsv(rows));
  };
  // Scores first: whatever happens while drawing overlays, the numbers are already safe on disk.
  await writeScores();
  const images: ReportImage[] = [];
  for (let i = 0; i < files.length; i++) {
    meta.signal?.throwIfAborted();
    const row = rows[i];
    const overlay = join('overlays', `${stems[i]}.png`);
    const map = join('maps', `${stems[i]}.npy`);
    let thumbs = { thumb: 'data:,', heat: 'data:,' };
    try {
      await writeAtomic(join(outDir, map), encodeNpy(scores.maps[i], [scores.height, scores.width]));
      thumbs = await renderOverlay(files[i], scores.maps[i], mapSize, scale, join(outDir, overlay));
      rows[i] = { ...row, overlay, map };
    } catch (err) {
      // e.g. the file changed or vanished since it was scored, or the disk is full: keep the scores.
      rows[i] = { ...row, map: existsSync(join(outDir, map)) ? map : null, error: `overlay not written: ${errorText(err)}` };
    }
    images.push({
      id: i,
      name: names[i],
      path: files[i],
      score: scores.imageScores[i],
      rscin: row.rscinScore ?? NaN,
      decision: row.decision === 'anomalous' ? 'anomalous' : 'normal',
      thumb: thumbs.thumb,
      heat: thumbs.heat,
      region: row.region,
      originalWidth: sizes[i].originalWidth,
      originalHeight: sizes[i].originalHeight,
      ...(meta.extras?.labels ? { label: meta.extras.labels[i] } : {}),
      ...(meta.extras?.defectTypes ? { defectType: meta.extras.defectTypes[i] } : {}),
    });
    meta.onImage?.(i + 1, files.length);
  }
  let metrics = meta.extras?.metrics;
  if (meta.extras?.labels && metrics) {
    metrics = { ...metrics, decisionQuality: decisionQuality(scores.rscinScores, meta.extras.labels, threshold.value) };
  }
  const report: ReportData = {
    title: meta.title,
    generatedAt: new Date().toISOString(),
    tool: 'musc-ts',
    config: {
      backbone: meta.backbone,
      imageSize: cfg.imageSize,
      layers: cfg.layers,
      rList: cfg.rList,
      interval: cfg.interval,
      kList: cfg.kList,
      divideNum: cfg.divideNum,
    },
    threshold,
    images,
    failures: failures.map((f) => ({ file: f.file, error: f.error })),
    ...(metrics ? { metrics } : {}),
  };
  await writeScores();
  await writeAtomic(join(outDir, 'report.html'), renderReportHtml(report));
  return { outDir, rows, failures, threshold };
}

/** Scores a batch of images (folders, files or globs) and writes all outputs to `outDir`. */
export async function runBatch(
  inputs: readonly string[],
  outDir: string,
  backbone: Backbone,
  cfg: MuscConfig,
  rule: ThresholdRule,
  hooks: { onProgress?: ProgressFn; signal?: AbortSignal; onImage?: (done: number, total: number) => void; threads?: number } = {},
): Promise<RunResult> {
  await ensureWritableDir(outDir);
  const files = await collectImages(inputs);
  const { features, failures } = await extractFeatures(files, backbone, cfg, hooks);
  if (features.length < MIN_IMAGES) {
    const why = failures.length ? ` (${failures.length} of ${files.length} files could not be read)` : '';
    throw new ConfigError(`MuSc scores images against each other and needs at least ${MIN_IMAGES} readable images; found ${features.length}${why}`);
  }
  const scores = await scoreFeatures(features, cfg, { onProgress: hooks.onProgress, signal: hooks.signal, threads: hooks.threads });
  return writeRunOutputs(
    outDir,
    features.map((f) => f.file),
    features,
    scores,
    failures,
    rule,
    { config: cfg, backbone: backbone.id, title: `musc run: ${inputs.join(', ')}`, signal: hooks.signal, onImage: hooks.onImage },
  );
}

