/**
 * musc-ts public API. The pipeline reads like the paper:
 * backbone -> lnamd -> msm -> rscin -> maps -> metrics.
 *
 * @example
 * ```ts
 * import { createResNet50Backbone, extractFeatures, scoreFeatures, resolveConfig } from 'musc-ts';
 * const cfg = resolveConfig();                       // 224 px, layer2+layer3, r = 1,3,5
 * const backbone = await createResNet50Backbone({ layers: cfg.layers });
 * const { features, failures } = await extractFeatures(files, backbone, cfg);
 * const { rscinScores, maps } = await scoreFeatures(features, cfg);
 * ```
 */
export * from './errors.js';
export * from './tensor.js';
export { createResNet50Backbone, RESNET50_LAYERS, type Backbone, type BackboneOutput } from './backbone/backbone.js';
export { OnnxFeatureExtractor } from './backbone/onnx-backbone.js';
export { addGraphOutputs, listTensorCandidates, resolveTensorRule, type TensorCandidate } from './backbone/graph-surgery.js';
export { ensureResNet50 } from './backbone/resnet50.js';
export { loadImageRgb, loadImageOriginal, loadMaskGrey, type LoadedImage, type RgbImage } from './image/io.js';
export { CAFFE_BGR, CLIP_MEAN_STD, IMAGENET_MEAN_STD, normalizeBatch, type Normalization } from './image/normalize.js';
export { lnamd } from './pipeline/lnamd.js';
export { mutualScores, mutualScoresOf, intervalBounds, MIN_IMAGES } from './pipeline/msm.js';
export { rscin, RSCIN_K_DEFAULT, RSCIN_K_VISA } from './pipeline/rscin.js';
export { anomalyMap, imageScore, upsampleBilinear } from './pipeline/maps.js';
export { DEFAULT_CONFIG, extractFeatures, resolveConfig, scoreFeatures, type ImageFeatures, type MuscConfig, type MuscScores, type Failure } from './pipeline/musc.js';
export { imageMetrics, pixelMetrics } from './metrics/index.js';
export { evaluateCategory, readCategory, meanMetrics, type CategoryResult } from './eval.js';
export { createVitBackbone, defaultVitLayers, defaultVitImageSize, detectVitFamily, VIT_FAMILIES, VIT_FAMILY_DESCRIPTORS, type GeluMode, type VitBackboneInfo, type VitBackboneOptions, type VitFamily } from './backbone/vit.js';
export { analyzeVit, type VitGraphInfo } from './backbone/vit-graph.js';
export { bicubicResize } from './backbone/bicubic.js';
export { openBackbone, type OpenBackboneOptions } from './backbone/open.js';
export { Musc, MuscScorer, type MuscOpenOptions, type ScoreInput, type ScoredImage } from './bank/scorer.js';
export { buildBank, appendToBank, type BuildBankOptions } from './bank/bank.js';
export { readBank, writeBank, encodeBank, decodeBank, BankError, BANK_VERSION, type Bank, type BankEncoding, type BankReference } from './bank/format.js';
export { scoreAgainstBank, type BankScores } from './bank/score.js';
