/**
 * The strongest region of an anomaly map: the 8-connected blob around the
 * hottest pixel, of pixels above half-way between the map's median and its max.
 * Reported as a box in original-image pixels so users can crop or mark it.
 */
import { label8 } from '../metrics/regions.js';
import { excessMap } from '../pipeline/maps.js';
import { size2d, type SizeLike } from '../tensor.js';

/** A box in original-image pixels. */
export interface Region {
  /** Left edge, pixels from the left of the original image. */
  readonly x: number;
  /** Top edge, pixels from the top. */
  readonly y: number;
  /** Width in original pixels (≥ 1). */
  readonly width: number;
  /** Height in original pixels (≥ 1). */
  readonly height: number;
}

/**
 * Finds the strongest region of a map at `size` (`[height, width]`) and scales it to `origW x origH`.
 * With a `typical` map (image score `excess`) the region is found in `map − typical`: the place
 * that set the image score, not a border or glare that is high in every image.
 */
export function strongestRegion(rawMap: Float32Array, size: SizeLike, origW: number, origH: number, typical: Float32Array | null = null): Region {
  const { width: W, height: H } = size2d(size);
  const map = typical ? excessMap(rawMap, typical) : rawMap;
  let argmax = 0;
  for (let i = 1; i < map.length; i++) if (map[i] > map[argmax]) argmax = i;
  const sorted = Float32Array.from(map).sort();
  const median = sorted[sorted.length >> 1];
  const level = median + 0.5 * (map[argmax] - median);
  const mask = new Uint8Array(map.length);
  for (let i = 0; i < map.length; i++) mask[i] = map[i] >= level ? 1 : 0;
  const { labels } = label8(mask, H, W);
  const target = labels[argmax];
  let x0 = W;
  let y0 = H;
  let x1 = -1;
  let y1 = -1;
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] !== target) continue;
    const y = Math.floor(i / W);
    const x = i - y * W;
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  const sx = origW / W;
  const sy = origH / H;
  const x = Math.floor(x0 * sx);
  const y = Math.floor(y0 * sy);
  return {
    x,
    y,
    width: Math.max(1, Math.min(origW, Math.ceil((x1 + 1) * sx)) - x),
    height: Math.max(1, Math.min(origH, Math.ceil((y1 + 1) * sy)) - y),
  };
}
