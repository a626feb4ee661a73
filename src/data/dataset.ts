/**
 * Dataset types shared by the readers (MVTec AD layout, BTAD, VisA) and the
 * ground-truth mask loader.
 *
 * Masks are resized to S x S first and binarised afterwards, as the reference
 * does (spec §1.2), so the rule decides how partly covered boundary pixels count.
 */
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { DatasetError, errorText } from '../errors.js';
import { loadImageOriginal, loadMaskGrey, MAX_INPUT_PIXELS } from '../image/io.js';
import { size2d, type SizeLike } from '../tensor.js';

/** One test image of a category. */
export interface DatasetItem {
  /** Absolute path of the image. */
  imagePath: string;
  /** Absolute path of the ground-truth mask; null for normal images. */
  maskPath: string | null;
  /** 0 = normal, 1 = anomalous. */
  label: 0 | 1;
  /** Defect-type folder (`good`, `broken_large`, `ko`, VisA's `Normal`/`Anomaly`, ...). */
  defectType: string;
}

/**
 * How a bilinearly resized 0..255 mask becomes 0/1:
 * - `mvtec`: anomalous only where the resized value is exactly 255 (the reference's
 *   int32 truncation of value/255 for MVTec AD and BTAD; erodes boundaries by ~1 px);
 * - `visa`: anomalous where the resized value is > 0 (the reference for VisA; dilates by ~1 px);
 * - `soft`: anomalous where the resized value is > 127 (for soft-edged masks such as Magnetic Tile);
 * - `auto`: per mask file, `mvtec` if the original mask holds only 0 and 255, otherwise `soft`.
 *
 * Whatever the rule, a mask whose original values are only 0 and 1 is first
 * scaled to 0/255 (1 = anomalous); see {@link loadMaskBinary}.
 */
export type MaskRule = 'mvtec' | 'visa' | 'soft' | 'auto';

/** The rules that act on resized grey values (what `auto` resolves to per file). */
export type ResolvedMaskRule = Exclude<MaskRule, 'auto'>;

/** A category's test set in reference order (spec §8). */
export interface Dataset {
  /** Category name (folder name, or VisA class name). */
  name: string;
  /** Absolute folder the paths were resolved against. */
  root: string;
  /** Test items in the reference's order; subsets and metrics index into this list. */
  items: DatasetItem[];
  /** RsCIN window sizes the reference uses for this dataset family. */
  rscinKList: number[];
  /** Mask binarisation rule for this dataset. */
  maskRule: MaskRule;
}

/** What the values of an original (not resized) mask look like. */
export type MaskValueKind =
  /** all pixels 0 (four Magnetic Tile `uneven` masks are like this) */
  | 'empty'
  /** only 0 and 1: a label map, 1 = anomalous */
  | 'binary-0-1'
  /** only 0 and 255 (MVTec AD) */
  | 'binary-0-255'
  /** any other value present (soft edges, JPEG-like noise) */
  | 'grey';

interface GreyImage {
  data: Uint8Array;
  width: number;
  height: number;
  /** A colour mask (e.g. red on black): `data` is each pixel's brightest channel, not its luminance. */
  colour?: boolean;
}

/**
 * The brightest channel of each pixel of a 3-channel image whose channels differ somewhere (a
 * colour mask); null when every pixel is grey. Luminance would turn pure red (255, 0, 0) into 54,
 * which every binarisation rule reads as background: the mask would silently be empty.
 */
function brightestChannelOfColour(rgb: Uint8Array): Uint8Array | null {
  let colour = false;
  for (let i = 0; i < rgb.length && !colour; i += 3) colour = rgb[i] !== rgb[i + 1] || rgb[i] !== rgb[i + 2];
  if (!colour) return null;
  const out = new Uint8Array(rgb.length / 3);
  for (let p = 0; p < out.length; p++) out[p] = Math.max(rgb[3 * p], rgb[3 * p + 1], rgb[3 * p + 2]);
  return out;
}

/**
 * Decodes a mask at its original size as one 8-bit grey channel, with the same
 * conversion chain as `loadMaskGrey` (alpha dropped, then libvips `b-w`); a colour mask
 * gives its brightest channel instead (`colour: true`).
 */
async function decodeMaskOriginal(file: string): Promise<GreyImage> {
  const bytes = await readFile(file);
  if (bytes.length === 0) throw new Error('file is empty (0 bytes)');
  // libvips cannot read BMP (BTAD ships BMP masks); io.ts has the only BMP decoder, behind the RGB loader.
  // For grey masks stored as RGB the three channels are equal, and `b-w` of such pixels is the identity.
  if (bytes[0] === 0x42 && bytes[1] === 0x4d) {
    const rgb = await loadImageOriginal(file);
    const colour = brightestChannelOfColour(rgb.data);
    if (colour) return { data: colour, width: rgb.width, height: rgb.height, colour: true };
    const { data, info } = await sharp(rgb.data, { raw: { width: rgb.width, height: rgb.height, channels: 3 } })
      .toColourspace('b-w')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  }
  // Oriented like the images (io.ts): a mask drawn on the photo as displayed fits it.
  const open = () => sharp(bytes, { failOn: 'error', limitInputPixels: MAX_INPUT_PIXELS, autoOrient: true });
  if (((await open().metadata()).channels ?? 1) >= 3) {
    const rgb = await open().removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    const colour = brightestChannelOfColour(new Uint8Array(rgb.data.buffer, rgb.data.byteOffset, rgb.data.byteLength));
    if (colour) return { data: colour, width: rgb.info.width, height: rgb.info.height, colour: true };
  }
  const { data, info } = await open()
    .removeAlpha()
    .toColourspace('b-w')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 1) throw new Error(`unexpected mask channel count ${info.channels}`);
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
}

/**
 * Whether mask `a` is image `b` at some scale, within the rounding of a scaled copy (each side
 * ±1 px: |a.h·b.w − a.w·b.h| ≤ b.w + b.h): a mask stored at half size (50 × 33 for 100 × 67) fits,
 * a rotated or cropped one does not.
 */
function sameShape(a: { width: number; height: number }, b: { width: number; height: number }): boolean {
  return Math.abs(a.height * b.width - a.width * b.height) <= b.width + b.height;
}

function valueKind(data: Uint8Array): MaskValueKind {
  let has1 = false;
  let has255 = false;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v === 0) continue;
    if (v === 255) has255 = true;
    else if (v === 1) has1 = true;
    else return 'grey';
  }
  if (has1 && has255) return 'grey';
  if (has1) return 'binary-0-1';
  if (has255) return 'binary-0-255';
  return 'empty';
}

function maskError(file: string, err: unknown): DatasetError {
  if (err instanceof DatasetError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const reason = code === 'ENOENT' ? 'file does not exist' : errorText(err);
  return new DatasetError(`cannot read ground-truth mask ${JSON.stringify(file)}: ${reason}`, { cause: err });
}

/**
 * Classifies the values of a mask file at its original size (for `auto` and for reports).
 * @throws DatasetError naming the file when it is missing or cannot be decoded.
 */
export async function maskValueKind(file: string): Promise<MaskValueKind> {
  try {
    return valueKind((await decodeMaskOriginal(file)).data);
  } catch (err) {
    throw maskError(file, err);
  }
}

/**
 * Binarises a resized 0..255 grey mask with a concrete rule.
 * @returns a new 0/1 array of the same length
 */
export function binarizeMask(grey: Uint8Array, rule: ResolvedMaskRule): Uint8Array {
  const threshold = rule === 'mvtec' ? 254 : rule === 'visa' ? 0 : 127;
  const out = new Uint8Array(grey.length);
  for (let i = 0; i < grey.length; i++) out[i] = grey[i] > threshold ? 1 : 0;
  return out;
}

/**
 * Loads an item's ground-truth mask, resized bilinearly to the working size, exactly as
 * the images are (via `loadMaskGrey`), and binarised with `rule`.
 *
 * Normal items (`maskPath` null) give all zeros. A mask whose original pixels are
 * only 0 and 1 is treated as a binary label map (1 = anomalous): it is scaled to
 * 0/255 before the resize, so every rule sees it like a 0/255 mask. The reference
 * would silently turn such masks all-zero (value 1/255 truncates to 0).
 *
 * A colour mask (e.g. red on black) counts by its brightest channel.
 *
 * @param item dataset item
 * @param size output size (a number means a square)
 * @param rule binarisation rule; `auto` picks `mvtec` for 0/255 (and empty) masks, `soft` otherwise
 * @param imageShape the original size of the item's image, when known: a mask of another shape
 *   (rotated, cropped, or another image's) is refused rather than stretched onto it; a mask of the
 *   same aspect at another scale is resized like any other
 * @returns 0/1 values `[height, width]`, row-major
 * @throws DatasetError naming the mask file when it is missing, cannot be decoded or does not fit its image.
 */
export async function loadMaskBinary(item: DatasetItem, size: SizeLike, rule: MaskRule, imageShape?: { readonly width: number; readonly height: number }): Promise<Uint8Array> {
  const { width, height } = size2d(size);
  if (![width, height].every((v) => Number.isInteger(v) && v > 0)) throw new RangeError(`mask size must be positive integers, got ${width}x${height}`);
  const file = item.maskPath;
  if (file === null) return new Uint8Array(width * height);
  try {
    // The original is decoded even for fixed rules: it is the only way to detect 0/1 label maps.
    const original = await decodeMaskOriginal(file);
    if (imageShape && !sameShape(original, imageShape)) {
      throw new DatasetError(
        `ground-truth mask ${JSON.stringify(file)} is ${original.width}x${original.height}, but its image ${JSON.stringify(item.imagePath)} is ` +
          `${imageShape.width}x${imageShape.height}: another shape (rotated, cropped, or the mask of another image)`,
      );
    }
    const kind = valueKind(original.data);
    const resolved: ResolvedMaskRule = rule !== 'auto' ? rule : kind === 'grey' ? 'soft' : 'mvtec';
    let grey: Uint8Array;
    if (kind === 'binary-0-1' || (original.colour && kind !== 'empty')) {
      const scaled = new Uint8Array(original.data.length);
      if (kind === 'binary-0-1') for (let i = 0; i < scaled.length; i++) scaled[i] = original.data[i] * 255;
      else scaled.set(original.data);
      // Same resize chain as loadMaskGrey, applied to raw pixels (a test pins the two as identical).
      const out = await sharp(scaled, { raw: { width: original.width, height: original.height, channels: 1 } })
        .toColourspace('b-w')
        .resize(width, height, { fit: 'fill', kernel: 'linear' })
        .raw({ depth: 'uchar' })
        .toBuffer();
      grey = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    } else if (kind === 'empty') {
      // Nothing to resize: bilinear interpolation of zeros is zeros.
      return new Uint8Array(width * height);
    } else {
      grey = await loadMaskGrey(file, size);
    }
    if (grey.length !== width * height) throw new Error(`resized mask has ${grey.length} values, expected ${width * height}`);
    return binarizeMask(grey, resolved);
  } catch (err) {
    throw maskError(file, err);
  }
}
