/**
 * Image decoding and resizing, all through `sharp` (libvips). Any format sharp
 * reads works: PNG (8/16-bit, grey, RGBA, palette), JPEG, BMP-free formats via
 * libvips, TIFF, WebP. Every image becomes 8-bit sRGB RGB (alpha dropped, as
 * PIL's `convert('RGB')` does in the reference), resized to exactly the working
 * size W x H (S x S by default, as the reference does: the aspect ratio is not kept).
 */
import { readFile, readlink, stat } from 'node:fs/promises';
import { extname } from 'node:path';
import sharp, { type Metadata, type Sharp } from 'sharp';
import { ImageDecodeError, errorText } from '../errors.js';
import { size2d, type SizeLike } from '../tensor.js';

/**
 * File extensions read as images when walking folders (compared case-insensitively): the
 * formats sharp decodes, plus BMP, which this module decodes itself.
 */
export const IMAGE_EXTENSIONS: readonly string[] = ['.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.gif'];

/**
 * Whether a file name has an image extension. Hidden files are skipped: macOS AppleDouble
 * files (`._000.png`) carry image extensions but are not images.
 */
export function isImageFileName(name: string): boolean {
  return !name.startsWith('.') && IMAGE_EXTENSIONS.includes(extname(name).toLowerCase());
}

/** An 8-bit RGB image, HWC interleaved. */
export interface RgbImage {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
}

/** A decoded and resized image together with its original size. */
export interface LoadedImage extends RgbImage {
  readonly file: string;
  readonly originalWidth: number;
  readonly originalHeight: number;
}

/** Resampling kernels: `cubic` (Catmull-Rom, antialiased like PIL BICUBIC) for images, `linear` for masks. */
export type ResizeKernel = 'cubic' | 'linear' | 'nearest' | 'lanczos3';

/** Largest input we decode: 20000 x 20000 px. Bigger inputs are rejected rather than exhausting memory. */
export const MAX_INPUT_PIXELS = 20000 * 20000;

/** BMP is not decoded by libvips; we read uncompressed 24/32-bit BMP ourselves into raw pixels. */
async function openImage(file: string): Promise<Sharp> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    // A link whose target is gone reads as "no such file": say what it is.
    const link = (err as { code?: string }).code === 'ENOENT' ? await readlink(file).catch(() => null) : null;
    if (link !== null) throw new ImageDecodeError(file, `broken symbolic link (its target ${JSON.stringify(link)} does not exist)`, { cause: err });
    throw err;
  }
  return openImageBytes(file, bytes);
}

/**
 * Opens encoded bytes. Images are read as viewers show them: the EXIF orientation of phone and
 * camera photos is applied (`autoOrient`), so maps, overlays and region coordinates match the
 * photo as displayed. (The reference's PIL ignores the tag; MVTec, VisA and BTAD carry none.)
 */
function openImageBytes(file: string, bytes: Buffer): Sharp {
  if (bytes.length === 0) throw new ImageDecodeError(file, 'file is empty (0 bytes)');
  if (bytes[0] === 0x42 && bytes[1] === 0x4d) return sharpFromBmp(file, bytes);
  return sharp(bytes, { failOn: 'error', limitInputPixels: MAX_INPUT_PIXELS, sequentialRead: true, autoOrient: true });
}

/** Width and height as displayed (EXIF orientation applied), from an opened image's header. */
function displayedSize(meta: Metadata): { width: number; height: number } | null {
  const width = meta.autoOrient?.width ?? meta.width;
  const height = meta.autoOrient?.height ?? meta.height;
  return width && height ? { width, height } : null;
}

/** Decodes an uncompressed BMP (BI_RGB 24/32-bit, or 8-bit paletted) — BTAD ships BMPs and libvips cannot read them. */
function sharpFromBmp(file: string, b: Buffer): Sharp {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b.length < 54) throw new ImageDecodeError(file, 'truncated BMP header');
  const dataOffset = dv.getUint32(10, true);
  const headerSize = dv.getUint32(14, true);
  const width = dv.getInt32(18, true);
  const rawHeight = dv.getInt32(22, true);
  const bpp = dv.getUint16(28, true);
  const compression = headerSize >= 40 ? dv.getUint32(30, true) : 0;
  if (width <= 0 || rawHeight === 0 || width * Math.abs(rawHeight) > MAX_INPUT_PIXELS) throw new ImageDecodeError(file, `invalid BMP size ${width}x${rawHeight}`);
  if (compression !== 0 && compression !== 3) throw new ImageDecodeError(file, `compressed BMP (mode ${compression}) is not supported`);
  if (bpp !== 24 && bpp !== 32 && bpp !== 8) throw new ImageDecodeError(file, `${bpp}-bit BMP is not supported`);
  const height = Math.abs(rawHeight);
  const stride = Math.ceil((width * bpp) / 32) * 4;
  if (dataOffset + stride * height > b.length) throw new ImageDecodeError(file, 'BMP pixel data is truncated');
  const palette = bpp === 8 ? b.subarray(14 + headerSize, dataOffset) : null;
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const srcRow = rawHeight > 0 ? height - 1 - y : y; // positive height = bottom-up rows
    const row = dataOffset + srcRow * stride;
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      if (palette) {
        const idx = b[row + x] * 4;
        rgb[o] = palette[idx + 2];
        rgb[o + 1] = palette[idx + 1];
        rgb[o + 2] = palette[idx];
      } else {
        const s = row + x * (bpp / 8);
        rgb[o] = b[s + 2];
        rgb[o + 1] = b[s + 1];
        rgb[o + 2] = b[s];
      }
    }
  }
  return sharp(rgb, { raw: { width, height, channels: 3 } });
}

function decodeError(file: string, err: unknown): ImageDecodeError {
  if (err instanceof ImageDecodeError) return err;
  const msg = errorText(err);
  const reason = /unsupported image format/i.test(msg)
    ? 'not a supported image format (PNG, JPEG, TIFF, WebP, BMP, GIF)'
    : /premature end|truncated|corrupt|invalid|read error|not a png|decode/i.test(msg)
      ? `corrupt or truncated image (${msg.split('\n')[0]})`
      : /pixel limit/i.test(msg)
        ? `image larger than ${MAX_INPUT_PIXELS} pixels`
        : msg.split('\n')[0];
  return new ImageDecodeError(file, reason, { cause: err });
}

/**
 * Width × height of encoded bytes from their header, without decoding pixels; null when the
 * header cannot be read (decoding then reports why). BMP is read from its own header.
 */
export async function pixelCountOfBytes(bytes: Uint8Array): Promise<number | null> {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length >= 26 && b[0] === 0x42 && b[1] === 0x4d) return Math.abs(b.readInt32LE(18)) * Math.abs(b.readInt32LE(22));
  try {
    const meta = await sharp(b, { limitInputPixels: false }).metadata();
    return meta.width && meta.height ? meta.width * meta.height : null;
  } catch {
    return null;
  }
}

/** Reads an image's original size without decoding pixels. */
export async function imageSize(file: string): Promise<{ width: number; height: number }> {
  try {
    await stat(file);
    const size = displayedSize(await (await openImage(file)).metadata());
    if (!size) throw new Error('no dimensions');
    return size;
  } catch (err) {
    throw decodeError(file, err);
  }
}

/**
 * Decodes `file` to 8-bit RGB and resizes it to the working size (a number means a square).
 * @throws ImageDecodeError naming the file for unreadable, empty, truncated or non-image files.
 */
export async function loadImageRgb(file: string, size: SizeLike, kernel: ResizeKernel = 'cubic'): Promise<LoadedImage> {
  return decodeImageRgb(file, null, size, kernel);
}

/**
 * `loadImageRgb` for bytes already in memory (uploads); `label` names the image in errors.
 * @throws ImageDecodeError for empty, truncated or non-image bytes.
 */
export async function decodeImageRgb(label: string, bytes: Uint8Array | null, size: SizeLike, kernel: ResizeKernel = 'cubic'): Promise<LoadedImage> {
  return (await decodeImageRgbSizes(label, bytes, [size], kernel))[0];
}

/**
 * Decodes once and resizes to each of `sizes` (e.g. a coarse and a fine working size).
 * @throws ImageDecodeError for unreadable, empty, truncated or non-image files.
 */
export async function decodeImageRgbSizes(label: string, bytes: Uint8Array | null, sizes: readonly SizeLike[], kernel: ResizeKernel = 'cubic'): Promise<LoadedImage[]> {
  const file = label;
  try {
    const img = bytes ? openImageBytes(file, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)) : await openImage(file);
    const original = displayedSize(await img.metadata());
    if (!original) throw new Error('image has no dimensions');
    // Alpha is dropped before resizing: sharp premultiplies alpha while resampling, which would
    // darken transparent pixels, whereas the reference (PIL convert('RGB')) keeps their RGB.
    const flat = await img.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    const out: LoadedImage[] = [];
    for (const size of sizes) {
      const { width, height } = size2d(size);
      // The pixels are decoded already (within MAX_INPUT_PIXELS): sharp's own default limit must not apply again.
      const { data, info } = await sharp(flat.data, { raw: { width: flat.info.width, height: flat.info.height, channels: flat.info.channels }, limitInputPixels: false })
        .resize(width, height, { fit: 'fill', kernel })
        .raw({ depth: 'uchar' })
        .toBuffer({ resolveWithObject: true });
      if (info.channels !== 3 || info.width !== width || info.height !== height) {
        throw new Error(`unexpected decoded layout ${info.width}x${info.height}x${info.channels}`);
      }
      out.push({ file, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width, height, originalWidth: original.width, originalHeight: original.height });
    }
    return out;
  } catch (err) {
    throw decodeError(file, err);
  }
}

/** A copy of the pixels of `box` (a tile) of an RGB image, as an image of the box's size. */
export function cropRgb(img: LoadedImage, box: { x: number; y: number; width: number; height: number }): LoadedImage {
  if (box.x < 0 || box.y < 0 || box.x + box.width > img.width || box.y + box.height > img.height) {
    throw new RangeError(`crop ${box.width}x${box.height}+${box.x}+${box.y} outside a ${img.width}x${img.height} image`);
  }
  if (box.x === 0 && box.y === 0 && box.width === img.width && box.height === img.height) return img;
  const data = new Uint8Array(box.width * box.height * 3);
  for (let y = 0; y < box.height; y++) {
    const src = ((box.y + y) * img.width + box.x) * 3;
    data.set(img.data.subarray(src, src + box.width * 3), y * box.width * 3);
  }
  return { ...img, data, width: box.width, height: box.height };
}

/** Decodes `file` at its original size as 8-bit RGB (for overlays). */
export async function loadImageOriginal(file: string): Promise<LoadedImage> {
  return decodeImageOriginal(file, null);
}

/** `loadImageOriginal` for bytes already in memory (uploads); `label` names the image in errors. */
export async function decodeImageOriginal(label: string, bytes: Uint8Array | null): Promise<LoadedImage> {
  const file = label;
  try {
    const img = bytes ? openImageBytes(file, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)) : await openImage(file);
    const { data, info } = await img.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`unexpected channel count ${info.channels}`);
    return {
      file,
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      width: info.width,
      height: info.height,
      originalWidth: info.width,
      originalHeight: info.height,
    };
  } catch (err) {
    throw decodeError(file, err);
  }
}

/**
 * Decodes a ground-truth mask as one 8-bit grey channel and resizes it bilinearly
 * (antialiased, as PIL BILINEAR) to the working size (a number means a square). Returns
 * the resized 0..255 values `[height, width]`; binarisation is the dataset reader's choice.
 */
export async function loadMaskGrey(file: string, size: SizeLike): Promise<Uint8Array> {
  const { width, height } = size2d(size);
  try {
    const img = await openImage(file);
    const flat = await img.removeAlpha().toColourspace('b-w').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    const { data, info } = await sharp(flat.data, { raw: { width: flat.info.width, height: flat.info.height, channels: flat.info.channels }, limitInputPixels: false })
      .resize(width, height, { fit: 'fill', kernel: 'linear' })
      .extractChannel(0)
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 1) throw new Error(`unexpected mask channel count ${info.channels}`);
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  } catch (err) {
    throw decodeError(file, err);
  }
}
