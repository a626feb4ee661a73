/**
 * `musc-ts/stages`: the pipeline stage by stage, for comparing results with other
 * implementations (backbone -> lnamd -> msm -> maps -> rscin -> metrics). Every stage
 * works on plain typed arrays with the layouts of `Size2D`, `ChwGrid` and
 * `PatchVectors` (see docs/ARCHITECTURE.md). For everyday jobs use `Musc` from `musc-ts`.
 *
 * ```ts
 * import { createResNet50Backbone, extractFeatures, resolveConfig, scoreFeatures } from 'musc-ts/stages';
 * const cfg = resolveConfig();
 * const backbone = await createResNet50Backbone({ layers: cfg.layers });
 * const { features } = await extractFeatures(files, backbone, cfg);
 * const { rscinScores, maps } = await scoreFeatures(features, cfg);
 * await backbone.dispose();
 * ```
 */
export type { ChwGrid, FeatureMap, PatchVectors, Size2D, SizeLike } from './tensor.js';
export { createResNet50Backbone, RESNET50_LAYERS, type Backbone, type BackboneOutput } from './backbone/backbone.js';
export { createVitBackbone, VIT_FAMILIES, type GeluMode, type VitBackboneInfo, type VitBackboneOptions, type VitFamily } from './backbone/vit.js';
export { openBackbone, type OpenBackboneOptions } from './backbone/open.js';
export { OnnxFeatureExtractor } from './backbone/onnx-backbone.js';
export { listTensorCandidates, type TensorCandidate } from './backbone/graph-surgery.js';
export { loadImageRgb, type LoadedImage, type RgbImage } from './image/io.js';
export { DEFAULT_CONFIG, extractFeatures, resolveConfig, scoreFeatures, type ImageFeatures, type MuscConfig, type MuscScores } from './pipeline/musc.js';
export { lnamd } from './pipeline/lnamd.js';
export { intervalBounds, MIN_IMAGES, mutualScores, mutualScoresOf } from './pipeline/msm.js';
export { anomalyMap, excessScore, imageScore, imageScoresOf, typicalMap, upsampleBilinear, type ImageScoreRule, type ScoreGrid } from './pipeline/maps.js';
export { rscin, RSCIN_K_DEFAULT, RSCIN_K_VISA } from './pipeline/rscin.js';
export { imageMetrics, pixelMetrics, type ImageMetrics, type PixelMetrics } from './metrics/index.js';
export { scoreAgainstBank, type BankScores } from './bank/score.js';
export { inspectBank, MIN_BANK_IMAGES, readBank, writeBank, type BankHeader, type BankInspection } from './bank/format.js';
export { updateBankFile, type BankLockOptions, type BankOnDisk } from './bank/lock.js';
