/**
 * Heatmap outputs: a colour overlay of the anomaly map on the original image at
 * its original size (sharp composites; images of 12000 x 12000 px stay in
 * libvips), small JPEG thumbnails for the report, and the raw map as `.npy`.
 */
import sharp, { type Sharp } from 'sharp';
import { loadImageOriginal } from '../image/io.js';
import { size2d, type SizeLike } from '../tensor.js';
import { produceAtomic } from './atomic.js';

/**
 * Turbo colormap (Mikhailov, Google 2019), polynomial approximation: hand-written
 * because the few JS colormap packages are unmaintained; 6 lines of math.
 */
export function turbo(t: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, t));
  const r = 0.13572138 + x * (4.6153926 + x * (-42.66032258 + x * (132.13108234 + x * (-152.94239396 + x * 59.28637943))));
  const g = 0.09140261 + x * (2.19418839 + x * (4.84296658 + x * (-14.18503333 + x * (4.27729857 + x * 2.82956604))));
  const b = 0.1066733 + x * (12.64194608 + x * (-60.58204836 + x * (110.36276771 + x * (-89.90310912 + x * 27.34824973))));
  const c = (v: number) => Math.round(255 * Math.min(1, Math.max(0, v)));
  return [c(r), c(g), c(b)];
}

const LUT = Array.from({ length: 256 }, (_, i) => turbo(i / 255));

/** Map values are shown on one scale for the whole batch so colours compare across images. */
export interface HeatScale {
  readonly low: number;
  readonly high: number;
}

/** RGBA heat layer `[height, width, 4]` of a map at `size`: turbo colours, opacity rising with the score. */
export function heatLayer(map: Float32Array, size: SizeLike, scale: HeatScale): Uint8Array {
  const { width, height } = size2d(size);
  const n = width * height;
  const out = new Uint8Array(n * 4);
  const span = scale.high - scale.low || 1;
  for (let i = 0; i < n; i++) {
    const t = Math.min(1, Math.max(0, (map[i] - scale.low) / span));
    const [r, g, b] = LUT[Math.round(t * 255)];
    out[4 * i] = r;
    out[4 * i + 1] = g;
    out[4 * i + 2] = b;
    out[4 * i + 3] = Math.round(40 + 170 * t); // normal areas stay visible through a light tint
  }
  return out;
}

/** Writes the full-size overlay PNG and returns JPEG thumbnails (as data URIs) of image and overlay. */
export async function renderOverlay(
  file: string,
  map: Float32Array,
  size: SizeLike,
  scale: HeatScale,
  outPng: string,
  thumbSize = 224,
): Promise<{ thumb: string; heat: string }> {
  const img = await loadImageOriginal(file);
  const { width, height } = size2d(size);
  const heat = sharp(heatLayer(map, size, scale), { raw: { width, height, channels: 4 } });
  const heatFull = await heat.clone().resize(img.width, img.height, { fit: 'fill', kernel: 'linear' }).png({ compressionLevel: 1 }).toBuffer();
  const base = () => sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 }, limitInputPixels: false });
  await produceAtomic(outPng, (tmp) => base().composite([{ input: heatFull }]).png({ compressionLevel: 6 }).toFile(tmp));
  const tw = img.width >= img.height ? thumbSize : Math.max(1, Math.round((thumbSize * img.width) / img.height));
  const th = img.width >= img.height ? Math.max(1, Math.round((thumbSize * img.height) / img.width)) : thumbSize;
  const thumbRaw = await base().resize(tw, th, { fit: 'fill' }).raw().toBuffer();
  const heatThumb = await heat.clone().resize(tw, th, { fit: 'fill', kernel: 'linear' }).png().toBuffer();
  const jpeg = (b: Sharp) => b.jpeg({ quality: 82 }).toBuffer();
  const thumb = await jpeg(sharp(thumbRaw, { raw: { width: tw, height: th, channels: 3 } }));
  const heatJpeg = await jpeg(sharp(thumbRaw, { raw: { width: tw, height: th, channels: 3 } }).composite([{ input: heatThumb }]));
  return {
    thumb: `data:image/jpeg;base64,${thumb.toString('base64')}`,
    heat: `data:image/jpeg;base64,${heatJpeg.toString('base64')}`,
  };
}

/** Encodes a float32 `[h, w]` array as a NumPy `.npy` (v1.0) file. */
export function encodeNpy(data: Float32Array, shape: readonly number[]): Uint8Array {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const pre = 10;
  const pad = 64 - ((pre + header.length + 1) % 64);
  header = header + ' '.repeat(pad % 64) + '\n';
  const out = new Uint8Array(pre + header.length + data.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 0);
  out[8] = header.length & 0xff;
  out[9] = header.length >> 8;
  out.set(new TextEncoder().encode(header), pre);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), pre + header.length);
  return out;
}
