/**
 * musc-ts: zero-shot industrial anomaly classification and segmentation by mutual
 * scoring of unlabeled images (MuSc, ICLR 2024).
 *
 * The public API is the {@link Musc} facade, one call per common job, its option and
 * result types, and the error classes:
 *
 * ```ts
 * import { Musc } from 'musc-ts';
 * const run = await Musc.run(['photos/'], { out: 'results' });
 * for (const im of run.images) console.log(im.decision, im.score.toFixed(3), im.file);
 * ```
 *
 * The pipeline's stages (backbones, LNAMD, mutual scoring, RsCIN, maps, metrics) are
 * exported for comparison work from `musc-ts/stages`. `QueuedScoring` and `startWorker`
 * run mutual scoring on several machines (README "Scaling out").
 */
export { Musc } from './api/musc.js';
export type { BackboneChoice, ScoringOptions } from './api/options.js';
export type { RunOptions } from './api/run.js';
export type { BatchResult, ImageResult } from './api/results.js';
export type { CategoryEvent, EvaluateOptions, EvaluationResult } from './api/evaluate.js';
export type { BankBuildOptions, BankScoreOptions, BankScoreResult, BuiltBank } from './api/bank.js';
export type { BankSaveResult, MuscOpenOptions, MuscScorer, ScoreCallOptions, ScoreInput, ScoredImage, ScoreResult } from './bank/scorer.js';
export type { BankLockOptions } from './bank/lock.js';
export type { Bank, BankEncoding, BankReference } from './bank/format.js';
export type { CategoryResult } from './eval.js';
export type { ImageMetrics, PixelMetrics } from './metrics/index.js';
export type { Failure, MuscConfig, ProgressFn } from './pipeline/musc.js';
export type { Decision } from './outputs/decisions.js';
export type { Region } from './outputs/region.js';
export type { Threshold, ThresholdRule } from './outputs/thresholds.js';
export { QueuedScoring, type DistributedStats, type QueuedScoringOptions } from './distributed/coordinator.js';
export { startWorker, type TileWorker, type TileWorkerOptions } from './distributed/worker.js';
export type { MutualScoring, MsmOptions, ScoringSetId } from './pipeline/msm.js';
export type { CrossScoring } from './pipeline/refine.js';
export { BankError } from './bank/format.js';
export { ConfigError, DatasetError, ImageDecodeError, ModelError, MuscError } from './errors.js';
