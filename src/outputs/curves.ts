/**
 * Image-level ROC and PR curves for the report (small N; exact, ties grouped),
 * downsampled to at most `maxPoints` points for drawing.
 */

/** ROC (fpr, tpr) and PR (recall, precision) points, thresholds descending. */
export function imageCurves(
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
  maxPoints = 200,
): { roc: { fpr: number[]; tpr: number[] }; pr: { recall: number[]; precision: number[] } } {
  const idx = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[b] - scores[a]);
  let P = 0;
  for (let i = 0; i < labels.length; i++) P += labels[i] ? 1 : 0;
  const N = labels.length - P;
  const fpr = [0];
  const tpr = [0];
  const recall: number[] = [];
  const precision: number[] = [];
  let tp = 0;
  let fp = 0;
  for (let k = 0; k < idx.length; k++) {
    if (labels[idx[k]]) tp++;
    else fp++;
    if (k + 1 < idx.length && scores[idx[k + 1]] === scores[idx[k]]) continue;
    fpr.push(N ? fp / N : 0);
    tpr.push(P ? tp / P : 0);
    recall.push(P ? tp / P : 0);
    precision.push(tp / (tp + fp));
  }
  const thin = <T>(xs: T[]) => (xs.length <= maxPoints ? xs : Array.from({ length: maxPoints }, (_, i) => xs[Math.round((i * (xs.length - 1)) / (maxPoints - 1))]));
  return { roc: { fpr: thin(fpr), tpr: thin(tpr) }, pr: { recall: thin(recall), precision: thin(precision) } };
}
