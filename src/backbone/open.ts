/**
 * One entry point for every backbone: the bundled ResNet50 when no model is given,
 * otherwise a ViT export (see vit.ts). Returns the backbone with the working
 * resolution it was prepared for.
 */
import type { Normalization } from '../image/normalize.js';
import { createResNet50Backbone, type Backbone } from './backbone.js';
import type { SessionOptions } from './onnx-backbone.js';
import { createVitBackbone, type GeluMode, type VitBackboneInfo, type VitFamily } from './vit.js';

/** Options of `openBackbone`. */
export interface OpenBackboneOptions {
  /** Path of a ViT ONNX export; omit for the bundled ResNet50. */
  readonly model?: string;
  readonly family?: VitFamily | 'auto';
  /** Layer names (ResNet50 `layer1..4`, ViT 0-based block indices or tensor names); default per backbone. */
  readonly layers?: readonly string[];
  /** Working resolution; default 224 for ResNet50, the paper's 518/512 for ViTs. */
  readonly imageSize?: number;
  readonly gelu?: GeluMode;
  readonly normalization?: Normalization;
  readonly session?: SessionOptions;
  readonly log?: (msg: string) => void;
}

/** Default working resolution of the bundled ResNet50. */
export const RESNET50_IMAGE_SIZE = 224;

/** Opens the backbone described by `opts`. */
export async function openBackbone(opts: OpenBackboneOptions = {}): Promise<{ backbone: Backbone; imageSize: number; vit: VitBackboneInfo | null }> {
  if (!opts.model) {
    const backbone = await createResNet50Backbone({ layers: opts.layers, session: opts.session, log: opts.log });
    return { backbone, imageSize: opts.imageSize ?? RESNET50_IMAGE_SIZE, vit: null };
  }
  const backbone = await createVitBackbone({
    model: opts.model,
    family: opts.family,
    layers: opts.layers,
    imageSize: opts.imageSize,
    gelu: opts.gelu,
    normalization: opts.normalization,
    session: opts.session,
    log: opts.log,
  });
  return { backbone, imageSize: backbone.info.imageSize, vit: backbone.info };
}
