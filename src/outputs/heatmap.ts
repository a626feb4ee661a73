/**
 * Heatmap rendering, the one renderer of every output that shows a map: a colour
 * overlay of the anomaly map on the original image at its original size (sharp
 * composites; 12000 x 12000 px images stay in libvips), and small JPEG thumbnails
 * for the report. Used by `musc run`, `eval --report`, `musc score` and the server.
 */
import sharp, { type Sharp } from 'sharp';
import { decodeImageOriginal, loadImageOriginal, type RgbImage } from '../image/io.js';
import { imageScore } from '../pipeline/maps.js';
import { size2d, type SizeLike } from '../tensor.js';

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

/** Raw map values shown from cold to hot; one scale for a batch (or a bank) so colours compare across images. */
export interface HeatScale {
  /** Map value drawn coldest (and most transparent). */
  readonly low: number;
  /** Map value drawn hottest. */
  readonly high: number;
}

/**
 * The scale of a batch scored together: from the lowest map value (sampled) to the highest map
 * value (the image scores are not map values under image score `excess`).
 */
export function batchHeatScale(maps: readonly Float32Array[]): HeatScale {
  let low = Infinity;
  for (const m of maps) for (let i = 0; i < m.length; i += 7) if (m[i] < low) low = m[i];
  let high = -Infinity;
  for (const m of maps) high = Math.max(high, imageScore(m));
  return { low, high };
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

function heatImage(map: Float32Array, size: SizeLike, scale: HeatScale): Sharp {
  const { width, height } = size2d(size);
  return sharp(heatLayer(map, size, scale), { raw: { width, height, channels: 4 }, limitInputPixels: false });
}

const rawImage = (img: RgbImage) => sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 }, limitInputPixels: false });

/** The image at its own size with the heat layer (stretched over it) composited on top: an opaque RGB PNG. */
export async function overlayPng(image: RgbImage, map: Float32Array, size: SizeLike, scale: HeatScale): Promise<Buffer> {
  // The layer goes through a fast PNG rather than raw pixels: a 12000² RGBA buffer would be 576 MB in JS memory.
  const heat = await heatImage(map, size, scale).resize(image.width, image.height, { fit: 'fill', kernel: 'linear' }).png({ compressionLevel: 1 }).toBuffer();
  return rawImage(image)
    .composite([{ input: heat, limitInputPixels: false }]) // pixels already decoded: the input limit was checked then
    .removeAlpha() // after the composite: an opaque RGB PNG
    .png({ compressionLevel: 6 })
    .toBuffer();
}

/** `overlayPng` of encoded image bytes (an upload); `name` names the image in errors. */
export async function overlayPngOfBytes(bytes: Uint8Array, name: string, map: Float32Array, size: SizeLike, scale: HeatScale): Promise<Buffer> {
  return overlayPng(await decodeImageOriginal(name, bytes), map, size, scale);
}

/** JPEG thumbnails (data URIs) of an image and of its overlay, at most `thumbSize` px on the long side. */
export async function thumbnails(image: RgbImage, map: Float32Array, size: SizeLike, scale: HeatScale, thumbSize = 224): Promise<{ thumb: string; heat: string }> {
  const tw = image.width >= image.height ? thumbSize : Math.max(1, Math.round((thumbSize * image.width) / image.height));
  const th = image.width >= image.height ? Math.max(1, Math.round((thumbSize * image.height) / image.width)) : thumbSize;
  const thumbRaw = await rawImage(image).resize(tw, th, { fit: 'fill' }).raw().toBuffer();
  const heatThumb = await heatImage(map, size, scale).resize(tw, th, { fit: 'fill', kernel: 'linear' }).png().toBuffer();
  const small = () => sharp(thumbRaw, { raw: { width: tw, height: th, channels: 3 } });
  const jpeg = (b: Sharp) => b.jpeg({ quality: 82 }).toBuffer();
  const thumb = await jpeg(small());
  const heat = await jpeg(small().composite([{ input: heatThumb }]));
  return {
    thumb: `data:image/jpeg;base64,${thumb.toString('base64')}`,
    heat: `data:image/jpeg;base64,${heat.toString('base64')}`,
  };
}

/** Overlay PNG and thumbnails of an image file, decoding it once. */
export async function renderImageFile(file: string, map: Float32Array, size: SizeLike, scale: HeatScale): Promise<{ png: Buffer; thumb: string; heat: string }> {
  const image = await loadImageOriginal(file);
  const png = await overlayPng(image, map, size, scale);
  return { png, ...(await thumbnails(image, map, size, scale)) };
}
