import type { DecisionQuality } from '../outputs/decisions.js';
import type { ImageMetrics, PixelMetrics } from '../metrics/types.js';

/**
 * The data contract between the pipeline (`musc run`, `musc eval --report`) and
 * the self-contained HTML report. Everything the page shows comes from one
 * {@link ReportData}; the renderer computes nothing that needs the images
 * themselves, so the caller decides thumbnail size and therefore file size, and
 * nothing another module computes (metrics, curves, threshold, decision quality
 * and confusion counts arrive ready).
 */

/** An axis-aligned box in the original image's pixel coordinates. */
export interface ReportRegion {
  /** Left edge, pixels from the left of the original image. */
  x: number;
  /** Top edge, pixels from the top of the original image. */
  y: number;
  /** Width in original pixels. */
  width: number;
  /** Height in original pixels. */
  height: number;
}

/** One scored image, one card in the report's grid. */
export interface ReportImage {
  /** Row index of the image in the run; unique within a report. */
  id: number;
  /** File name as shown to the user. UNTRUSTED: may contain HTML; the report renders it as text only. */
  name: string;
  /** Path as given on the command line or found in the dataset. UNTRUSTED, rendered as text only. */
  path: string;
  /** Raw image score: the map's maximum, or its max excess over the typical map (the run's `imageScore` rule); comparable only within a run. */
  score: number;
  /** RsCIN-refined score in [0, 1]; the score the decision threshold is applied to. */
  rscin: number;
  /** The automatic decision for this image. */
  decision: 'anomalous' | 'normal';
  /** `data:` URI (JPEG) of the image thumbnail. Must be a `data:image/...` URI: the page's CSP blocks anything else. */
  thumb: string;
  /** `data:` URI (JPEG) of the heatmap overlay thumbnail, the same size as {@link ReportImage.thumb}. */
  heat: string;
  /** The strongest anomalous region in original pixels, or `null` when there is none. */
  region: ReportRegion | null;
  /** Width of the original image in pixels (scales {@link ReportImage.region} onto the thumbnail). */
  originalWidth: number;
  /** Height of the original image in pixels. */
  originalHeight: number;
  /** Ground truth when known (eval): 1 anomalous, 0 normal. */
  label?: 0 | 1;
  /** Defect type when known, e.g. `good`, `broken_large`. UNTRUSTED, rendered as text only. */
  defectType?: string;
}

/** A configuration value as shown in the report's summary. */
export type ReportConfigValue = string | number | boolean | readonly (string | number)[];

/** Metrics for a labelled run (`musc eval --report`). */
export interface ReportMetrics {
  /** Image-level metrics. */
  image: ImageMetrics;
  /** Pixel-level metrics, when masks were available. */
  pixel?: PixelMetrics;
  /** Image-level ROC curve, downsampled to at most 200 points, ordered along the curve. */
  roc: { fpr: number[]; tpr: number[] };
  /** Image-level precision–recall curve, downsampled to at most 200 points, ordered along the curve. */
  pr: { recall: number[]; precision: number[] };
  /** Accuracy/F1 and confusion counts of the automatic threshold, next to the best possible one. */
  decisionQuality?: DecisionQuality;
}

/** Everything the HTML report shows. */
export interface ReportData {
  /** Page title, e.g. the category or input folder. UNTRUSTED, escaped. */
  title: string;
  /** When the report was generated, ISO 8601. */
  generatedAt: string;
  /** Producing tool and version, e.g. `musc-ts 0.1.0`. */
  tool: string;
  /** Run configuration shown in the summary (backbone, resolution, k, …). Keys and values are escaped. */
  config: Record<string, ReportConfigValue>;
  /** The decision threshold on the RsCIN score, how it was chosen and the assumption it rests on, in plain words. */
  threshold: { value: number; method: string; assumption: string };
  /** The scored images. */
  images: ReportImage[];
  /** Files that could not be scored, with the reason. UNTRUSTED, rendered as text only. */
  failures: { file: string; error: string }[];
  /** Present when labels were available (eval). */
  metrics?: ReportMetrics;
}
