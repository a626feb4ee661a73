/**
 * One entry point for every backbone: the bundled ResNet50 when no model is given,
 * otherwise a ViT export (see vit.ts). Returns the backbone with the working
 * resolution it was prepared for.
 */
import { createResNet50Backbone, type Backbone } from './backbone.js';
import { createVitBackbone, type VitBackboneInfo, type VitBackboneOptions } from './vit.js';

/**
 * Options of `openBackbone`: those of `createVitBackbone`, with `model` optional (omit it for
 * the bundled ResNet50, whose layers are `layer1..4` and default size 224).
 */
export type OpenBackboneOptions = Omit<VitBackboneOptions, 'model'> & { readonly model?: string };

/** Default working resolution of the bundled ResNet50. */
export const RESNET50_IMAGE_SIZE = 224;

/** Opens the backbone described by `opts`. */
export async function openBackbone(opts: OpenBackboneOptions = {}): Promise<{ backbone: Backbone; imageSize: number; vit: VitBackboneInfo | null }> {
  if (!opts.model) {
    const backbone = await createResNet50Backbone({ layers: opts.layers, session: opts.session, log: opts.log });
    return { backbone, imageSize: opts.imageSize ?? RESNET50_IMAGE_SIZE, vit: null };
  }
  const backbone = await createVitBackbone({ ...opts, model: opts.model });
  return { backbone, imageSize: backbone.info.imageSize, vit: backbone.info };
}
