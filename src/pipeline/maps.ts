/**
 * Segmentation maps (spec §5): patch-score grids upsampled bilinearly with
 * align_corners=True to the working size and averaged with equal weight over all
 * (layer, r) maps; no smoothing, no normalisation. Image score = max.
 * Grids and maps may be rectangular: a map is `[height, width]` row-major.
 */
import { size2d, type SizeLike } from '../tensor.js';
import type { Box } from './geometry.js';

/** Source coordinates of align_corners=True sampling along one axis: floor index and fraction. */
function axisSamples(n: number, grid: number): { i0: Int32Array; t: Float64Array } {
  const scale = n > 1 ? (grid - 1) / (n - 1) : 0;
  const i0 = new Int32Array(n);
  const t = new Float64Array(n);
  for (let x = 0; x < n; x++) {
    const f = x * scale;
    const k = Math.min(Math.floor(f), grid - 1);
    i0[x] = k;
    t[x] = f - k;
  }
  return { i0, t };
}

/**
 * Bilinear upsampling with align_corners=True of a `[gh, gw]` grid to `[height, width]`,
 * accumulated into `out` with weight `w` (so several maps can be averaged without
 * temporaries). Output pixel (y, x) samples the grid at (y·(gh−1)/(height−1), x·(gw−1)/(width−1)).
 * @param size output size (a number means a square)
 */
export function upsampleAccumulate(grid: Float32Array, gh: number, gw: number, size: SizeLike, out: Float32Array, w = 1): void {
  const { width, height } = size2d(size);
  if (out.length !== width * height) throw new RangeError(`upsample: out has ${out.length} elements, expected ${height}x${width}`);
  upsampleIntoBox(grid, gh, gw, { x: 0, y: 0, width, height }, width, out, w);
}

/**
 * `upsampleAccumulate` into a box of a larger map (a tile of a stitched map): the grid
 * is upsampled to the box's size and added, with weight `w`, at the box's place.
 * @param mapWidth row length of `out`
 */
export function upsampleIntoBox(grid: Float32Array, gh: number, gw: number, box: Box, mapWidth: number, out: Float32Array, w = 1): void {
  const { width, height } = box;
  if (grid.length !== gh * gw) throw new RangeError(`upsample: grid has ${grid.length} elements, expected ${gh}x${gw}`);
  if (box.x < 0 || box.y < 0 || box.x + width > mapWidth || (box.y + height) * mapWidth > out.length) {
    throw new RangeError(`upsample: box ${width}x${height}+${box.x}+${box.y} does not fit a map ${mapWidth} wide with ${out.length} elements`);
  }
  const xs = axisSamples(width, gw);
  const ys = axisSamples(height, gh);
  for (let y = 0; y < height; y++) {
    const y0 = ys.i0[y];
    const y1 = Math.min(y0 + 1, gh - 1);
    const ty = ys.t[y];
    const r0 = y0 * gw;
    const r1 = y1 * gw;
    const o = (box.y + y) * mapWidth + box.x;
    for (let x = 0; x < width; x++) {
      const x0 = xs.i0[x];
      const x1 = Math.min(x0 + 1, gw - 1);
      const tx = xs.t[x];
      const top = grid[r0 + x0] + (grid[r0 + x1] - grid[r0 + x0]) * tx;
      const bottom = grid[r1 + x0] + (grid[r1 + x1] - grid[r1 + x0]) * tx;
      out[o + x] += w * (top + (bottom - top) * ty);
    }
  }
}

/** Upsamples one grid to a new `[height, width]` map (a number `size` means a square). */
export function upsampleBilinear(grid: Float32Array, gh: number, gw: number, size: SizeLike): Float32Array {
  const { width, height } = size2d(size);
  const out = new Float32Array(width * height);
  upsampleAccumulate(grid, gh, gw, size, out, 1);
  return out;
}

/** One (layer, r) patch-score grid of one image. */
export interface ScoreGrid {
  readonly scores: Float32Array;
  readonly gridHeight: number;
  readonly gridWidth: number;
}

/** Equal-weight mean of the upsampled grids: the anomaly map of one image, `[height, width]`. */
export function anomalyMap(grids: readonly ScoreGrid[], size: SizeLike): Float32Array {
  const { width, height } = size2d(size);
  const out = new Float32Array(width * height);
  for (const g of grids) upsampleAccumulate(g.scores, g.gridHeight, g.gridWidth, size, out, 1 / grids.length);
  return out;
}

/**
 * How many boxes cover each pixel of a `[height, width]` map (stitched maps divide by it,
 * so overlapping tiles are averaged); null when one box covers the whole map once.
 */
export function coverage(boxes: readonly Box[], size: SizeLike): Float32Array | null {
  const { width, height } = size2d(size);
  if (boxes.length === 1 && boxes[0].x === 0 && boxes[0].y === 0 && boxes[0].width === width && boxes[0].height === height) return null;
  const c = new Float32Array(width * height);
  for (const b of boxes) for (let y = b.y; y < b.y + b.height; y++) for (let x = b.x; x < b.x + b.width; x++) c[y * width + x] += 1;
  return c;
}

/** Image score: the maximum of the upsampled map (not of the grid; see spec §6.1). */
export function imageScore(map: Float32Array): number {
  let m = -Infinity;
  for (let i = 0; i < map.length; i++) if (map[i] > m) m = map[i];
  return m;
}
