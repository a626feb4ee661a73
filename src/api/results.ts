/** What the facade's scoring jobs return, and how it is assembled from the outputs layer's rows. */
import { join } from 'node:path';
import type { Failure } from '../pipeline/musc.js';
import type { Decision } from '../outputs/decisions.js';
import type { Region } from '../outputs/region.js';
import { decisionScore, type ScoredBatch, type ScoreRow } from '../outputs/tables.js';
import type { Threshold } from '../outputs/thresholds.js';

/** One scored image. */
export interface ImageResult {
  /** Path of the image file. */
  readonly file: string;
  /**
   * Raw image score (comparable within a batch or bank): the maximum of the anomaly map, or with
   * image score `excess` (the default) the maximum of its excess over the typical map (`BatchResult.typical`).
   */
  readonly imageScore: number;
  /** RsCIN score in [0, 1]; `null` for images scored against a good bank (no RsCIN). */
  readonly rscinScore: number | null;
  /** The score the decision is made on: `rscinScore`, or `imageScore` where that is null. */
  readonly score: number;
  /** `anomalous` when `score` is above the threshold. */
  readonly decision: Decision;
  /** The strongest anomalous region, in original-image pixels. */
  readonly region: Region;
  /** Anomaly map `[height, width]` at the batch's working size (raw mean patch distances). */
  readonly map: Float32Array;
  /** Width of the image file in pixels. */
  readonly originalWidth: number;
  /** Height of the image file in pixels. */
  readonly originalHeight: number;
  /** Absolute path of the overlay PNG, when outputs were written. */
  readonly overlay?: string;
}

/** A scored batch. */
export interface BatchResult {
  /** Scored images, in input order (sorted paths). */
  readonly images: readonly ImageResult[];
  /** Files that could not be scored, with the reason. */
  readonly failures: readonly Failure[];
  /** The decision threshold and the assumption behind it. */
  readonly threshold: Threshold;
  /** Working width of the maps. */
  readonly width: number;
  /** Working height of the maps. */
  readonly height: number;
  /** Absolute path of the output folder, when outputs were written. */
  readonly outDir?: string;
  /** With image score `excess`: the typical map `[height, width]` the image scores and regions are measured against (also `typical.npy`). */
  readonly typical?: Float32Array;
}

/** Assembles the facade's result from a batch and its rows (as `scoreRows` / `writeOutputs` made them). */
export function batchResult(batch: ScoredBatch, rows: readonly ScoreRow[], threshold: Threshold, outDir?: string): BatchResult {
  const images = batch.items.map((it, i): ImageResult => {
    const row = rows[i];
    return {
      file: it.file,
      imageScore: it.imageScore,
      rscinScore: it.rscinScore,
      score: decisionScore(it),
      decision: row.decision === 'anomalous' ? 'anomalous' : 'normal',
      region: row.region!,
      map: it.map,
      originalWidth: it.originalWidth,
      originalHeight: it.originalHeight,
      ...(outDir && row.overlay ? { overlay: join(outDir, ...row.overlay.split('/')) } : {}),
    };
  });
  return { images, failures: batch.failures, threshold, width: batch.size.width, height: batch.size.height, ...(outDir ? { outDir } : {}), ...(batch.typical ? { typical: batch.typical } : {}) };
}
