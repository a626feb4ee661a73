/**
 * The metric result types: the one definition used by the metrics, eval, the report
 * and the library. Types only (no imports), so the report's browser script can use them.
 */

/** Image-level metrics of one category, each in [0, 1] (the one definition: eval, report and library use it). */
export interface ImageMetrics {
  /** Area under the image-level ROC curve. */
  readonly auroc: number;
  /** Image-level average precision. */
  readonly ap: number;
  /** Best F1 over all image-level thresholds. */
  readonly f1max: number;
}

/** Pixel-level metrics of one category, each in [0, 1]. */
export interface PixelMetrics extends ImageMetrics {
  /** MuSc / cflow-ad PRO (the number MuSc reports as AUPRO). */
  readonly pro: number;
  /** Official MVTec AD AUPRO, FPR limit 0.3, normalised by 0.3. */
  readonly aupro_mvtec: number;
}
