/**
 * The facade: the common jobs, one call each.
 *
 * ```ts
 * const run = await Musc.run(['photos/'], { out: 'results' });          // a batch, zero-shot
 * const ev = await Musc.evaluate('mvtec_ad/bottle');                     // labelled folder -> metrics
 * await Musc.buildBank(['line-A/'], { out: 'line-A.mbank' });             // a bank of earlier images
 * const scored = await Musc.score(['new/'], { bank: 'line-A.mbank', out: 'scored' });
 * const scorer = await Musc.open({ bank: 'line-A.mbank' });               // or keep it open
 * ```
 */
import { MuscScorer, type MuscOpenOptions } from '../bank/scorer.js';
import { buildBankFromImages, scoreWithBank } from './bank.js';
import { evaluate } from './evaluate.js';
import { runBatch } from './run.js';

/** Entry point of the library: each common job in one call. */
export const Musc = {
  /**
   * Scores a batch of unlabeled images against each other (zero-shot MuSc), decides
   * normal/anomalous, and with `out` writes scores.csv/json, overlays/, maps/ and report.html.
   * Needs at least 5 readable images; unreadable files come back in `failures`.
   */
  run: runBatch,
  /** Evaluates labelled category folders (MVTec AD / BTAD / VisA layout): metrics, and with `report` the outputs and report. */
  evaluate,
  /** Builds a feature bank from reference images (unlabeled batch or known-good images) and writes it to `out`. */
  buildBank: buildBankFromImages,
  /** Scores new images against a bank in one call; with `out` writes the same outputs as `run`. */
  score: scoreWithBank,
  /** Opens a bank and its backbone to score images as they come (`scorer.score(...)`, then `scorer.dispose()`). */
  open: (opts: MuscOpenOptions): Promise<MuscScorer> => MuscScorer.open(opts),
} as const;
