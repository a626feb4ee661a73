/**
 * The result tables: one row per input image (scored or not) as scores.csv and
 * scores.json, and the metadata that says what produced them.
 */
import type { Failure, MuscConfig } from '../pipeline/musc.js';
import type { Size2D } from '../tensor.js';
import { decide } from './decisions.js';
import { strongestRegion, type Region } from './region.js';
import type { Threshold } from './thresholds.js';

/** One scored image, whatever scored it (a batch, a bank). */
export interface ScoredItem {
  /** Path of the image file. */
  readonly file: string;
  /** Raw image score: the maximum of the anomaly map, or of its excess over the typical map (image score `excess`). */
  readonly imageScore: number;
  /** RsCIN score in [0, 1], the score decisions use; `null` where RsCIN does not apply (good banks decide on `imageScore`). */
  readonly rscinScore: number | null;
  /** Anomaly map `[height, width]` at the batch's working size (raw mean patch distances). */
  readonly map: Float32Array;
  readonly originalWidth: number;
  readonly originalHeight: number;
  /** Ground truth when known (eval): 1 anomalous, 0 normal. */
  readonly label?: 0 | 1;
  /** Defect type when known (eval), e.g. `good`, `broken_large`. */
  readonly defectType?: string;
}

/** Images scored together, the maps' working size, and the files that could not be scored. */
export interface ScoredBatch {
  readonly items: readonly ScoredItem[];
  /** Working size of every map. */
  readonly size: Size2D;
  readonly failures: readonly Failure[];
  /** The typical map the image scores are measured against (image score `excess`), else null or absent. */
  readonly typical?: Float32Array | null;
}

/** The score a decision is made on. */
export const decisionScore = (it: Pick<ScoredItem, 'imageScore' | 'rscinScore'>): number => it.rscinScore ?? it.imageScore;

/** One row of scores.csv / scores.json. */
export interface ScoreRow {
  readonly path: string;
  readonly imageScore: number | null;
  readonly rscinScore: number | null;
  readonly decision: 'anomalous' | 'normal' | 'error';
  readonly threshold: number | null;
  /** The strongest anomalous region in original pixels. */
  readonly region: Region | null;
  /** Overlay PNG, relative to the output folder (when written). */
  readonly overlay: string | null;
  /** Raw map `.npy`, relative to the output folder (when written). */
  readonly map: string | null;
  readonly error?: string;
}

/** Rows of a scored batch: decisions at `threshold`, strongest regions, then one error row per failure. */
export function scoreRows(batch: ScoredBatch, threshold: Threshold): ScoreRow[] {
  const rows: ScoreRow[] = batch.items.map((it) => ({
    path: it.file,
    imageScore: it.imageScore,
    rscinScore: it.rscinScore,
    decision: decide(decisionScore(it), threshold.value),
    threshold: threshold.value,
    region: strongestRegion(it.map, batch.size, it.originalWidth, it.originalHeight, batch.typical ?? null),
    overlay: null,
    map: null,
  }));
  for (const f of batch.failures) {
    rows.push({ path: f.file, imageScore: null, rscinScore: null, decision: 'error', threshold: threshold.value, region: null, overlay: null, map: null, error: f.error });
  }
  return rows;
}

/** The hyper-parameters outputs state (a batch's `MuscConfig`, or a bank's config). */
export type OutputConfig = Pick<MuscConfig, 'imageSize' | 'layers' | 'rList' | 'interval' | 'kList'> & Partial<MuscConfig>;

/** The resolution the maps were computed at, and how it was chosen. */
export interface OutputResolution {
  /** Working width W in pixels (maps are `[H, W]`). */
  readonly width: number;
  /** Working height H in pixels. */
  readonly height: number;
  /** How the working size (and tiles, refinement) was chosen, in words (`BatchGeometry.rule`). */
  readonly rule?: string;
}

/** The bank a `musc score` batch was scored against. */
export interface OutputBankInfo {
  /** The bank file, when scored from a file. */
  readonly file?: string;
  readonly images: number;
  readonly reference: string;
  readonly encoding: string;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** What produced a set of outputs: written to scores.json and shown in the report. */
export interface OutputMetadata {
  /** The command (or library call) that wrote them: `run`, `eval` or `score`. */
  readonly command: 'run' | 'eval' | 'score';
  /** Backbone id, e.g. `resnet50-keras-imagenet`. */
  readonly backbone: string;
  readonly config: OutputConfig;
  readonly resolution: OutputResolution;
  /** Present for `musc score`. */
  readonly bank?: OutputBankInfo;
}

/** The scores.json document. */
export interface ScoresDocument extends OutputMetadata {
  readonly tool: 'musc-ts';
  readonly threshold: Threshold;
  /** How to read `maps/*.npy`. */
  readonly mapFormat: string;
  readonly images: readonly ScoreRow[];
  readonly failures: readonly Failure[];
}

/** scores.json text. */
export function scoresJson(meta: OutputMetadata, threshold: Threshold, rows: readonly ScoreRow[], failures: readonly Failure[]): string {
  const { width, height } = meta.resolution;
  const doc: ScoresDocument = {
    tool: 'musc-ts',
    ...meta,
    threshold,
    mapFormat: `maps/*.npy: float32 [${height}, ${width}] raw anomaly maps (mean patch distance, 0..2) at the working resolution ${width}x${height}${meta.config.imageScore === 'excess' ? "; typical.npy: the batch's (or bank's) typical map, same layout; image_score = max(map - typical)" : ''}`,
    images: rows,
    failures,
  };
  return `${JSON.stringify(doc, null, 1)}\n`;
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
