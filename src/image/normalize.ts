/**
 * One normalisation step per backbone family, from HWC 8-bit RGB to a CHW float
 * tensor the model consumes.
 */
import type { RgbImage } from './io.js';

/** How a backbone family expects its input. */
export type Normalization =
  /** Keras "caffe" mode (ResNet50): RGB->BGR, 0..255, minus the ImageNet BGR mean. */
  | { readonly kind: 'caffe-bgr'; readonly meanBgr: readonly [number, number, number] }
  /** torchvision / CLIP: 0..1, minus mean, divided by std, RGB order. */
  | { readonly kind: 'mean-std'; readonly mean: readonly [number, number, number]; readonly std: readonly [number, number, number] };

export const CAFFE_BGR: Normalization = { kind: 'caffe-bgr', meanBgr: [103.939, 116.779, 123.68] };
export const IMAGENET_MEAN_STD: Normalization = { kind: 'mean-std', mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
export const CLIP_MEAN_STD: Normalization = {
  kind: 'mean-std',
  mean: [0.48145466, 0.4578275, 0.40821073],
  std: [0.26862954, 0.26130258, 0.27577711],
};

/** Writes the normalised `[3, H, W]` tensor of `img` into `out` at `offset` (returns `out`). */
export function normalizeInto(img: RgbImage, norm: Normalization, out: Float32Array, offset = 0): Float32Array {
  const plane = img.width * img.height;
  const src = img.data;
  if (norm.kind === 'caffe-bgr') {
    const [mb, mg, mr] = norm.meanBgr;
    for (let i = 0; i < plane; i++) {
      out[offset + i] = src[3 * i + 2] - mb;
      out[offset + plane + i] = src[3 * i + 1] - mg;
      out[offset + 2 * plane + i] = src[3 * i] - mr;
    }
  } else {
    for (let c = 0; c < 3; c++) {
      const scale = 1 / (255 * norm.std[c]);
      const shift = norm.mean[c] / norm.std[c];
      const base = offset + c * plane;
      for (let i = 0; i < plane; i++) out[base + i] = src[3 * i + c] * scale - shift;
    }
  }
  return out;
}

/** Stacks images into one normalised NCHW batch. All images must share one size. */
export function normalizeBatch(images: readonly RgbImage[], norm: Normalization): { data: Float32Array; dims: [number, number, number, number] } {
  if (images.length === 0) throw new RangeError('normalizeBatch: no images');
  const { width, height } = images[0];
  const data = new Float32Array(images.length * 3 * width * height);
  images.forEach((img, b) => {
    if (img.width !== width || img.height !== height) throw new RangeError('normalizeBatch: images differ in size');
    normalizeInto(img, norm, data, b * 3 * width * height);
  });
  return { data, dims: [images.length, 3, height, width] };
}
