/**
 * Normal or anomalous: the one decision rule (`score > threshold`) used by every
 * command, the bank scorer and the server, and how good its decisions were when
 * labels are known (`musc eval --report`).
 */

/** The verdict on one image. */
export type Decision = 'anomalous' | 'normal';

/** The decision for a score: anomalous when strictly above the threshold. */
export function decide(score: number, threshold: number): Decision {
  return score > threshold ? 'anomalous' : 'normal';
}

/** Counts of decisions against labels (anomalous = positive). */
export interface Confusion {
  /** Labelled anomalous, decided anomalous. */
  readonly tp: number;
  /** Labelled normal, decided anomalous (false alarms). */
  readonly fp: number;
  /** Labelled anomalous, decided normal (missed). */
  readonly fn: number;
  /** Labelled normal, decided normal. */
  readonly tn: number;
}

/** How good a threshold's decisions were, next to the best threshold in hindsight. */
export interface DecisionQuality {
  /** Accuracy of the decisions at the threshold, in [0, 1]. */
  readonly accuracy: number;
  /** F1 of the decisions at the threshold (anomalous = positive), in [0, 1]. */
  readonly f1: number;
  /** The decisions at the threshold against the labels. */
  readonly confusion: Confusion;
  /** Best accuracy any threshold reaches on these labels, in [0, 1]. */
  readonly bestAccuracy: number;
  /** F1 at the best-accuracy threshold, in [0, 1]. */
  readonly bestF1: number;
  /** The oracle threshold (chosen with the labels). */
  readonly bestThreshold: number;
}

/** Confusion counts of `decide(scores[i], t)` against `labels` (truthy = anomalous). */
export function confusionAt(scores: ArrayLike<number>, labels: ArrayLike<number>, t: number): Confusion {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  let tn = 0;
  for (let i = 0; i < scores.length; i++) {
    const pred = decide(scores[i], t) === 'anomalous';
    if (labels[i]) pred ? tp++ : fn++;
    else pred ? fp++ : tn++;
  }
  return { tp, fp, fn, tn };
}

const accuracyOf = (c: Confusion) => (c.tp + c.tn) / (c.tp + c.fp + c.fn + c.tn);
const f1Of = (c: Confusion) => (c.tp === 0 ? 0 : (2 * c.tp) / (2 * c.tp + c.fp + c.fn));

/** Accuracy, F1 and confusion of the decisions at `t` against labels, and the best achievable over all cuts. */
export function decisionQuality(scores: ArrayLike<number>, labels: ArrayLike<number>, t: number): DecisionQuality {
  const n = scores.length;
  const confusion = confusionAt(scores, labels, t);
  const s = Float64Array.from(scores).sort();
  let best = { accuracy: -1, f1: 0, thr: t };
  const cuts = [s[0] - 1, ...Array.from(s.subarray(0, n - 1), (v, i) => (v + s[i + 1]) / 2), s[n - 1]];
  for (const c of cuts) {
    const q = confusionAt(scores, labels, c);
    if (accuracyOf(q) > best.accuracy) best = { accuracy: accuracyOf(q), f1: f1Of(q), thr: c };
  }
  return { accuracy: accuracyOf(confusion), f1: f1Of(confusion), confusion, bestAccuracy: best.accuracy, bestF1: best.f1, bestThreshold: best.thr };
}
