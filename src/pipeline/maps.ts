/**
 * Segmentation maps (spec §5): patch-score grids upsampled bilinearly with
 * align_corners=True to the working size and averaged with equal weight over all
 * (layer, r) maps; no smoothing, no normalisation. Image score = max (the paper), or the max of
 * the map's excess over the batch's typical map (`typicalMap`).
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
 * is upsampled to the box's size and added, with weight `w` (times the tile's blending
 * window when given, see `tileBlend`), at the box's place.
 * @param mapWidth row length of `out`
 */
export function upsampleIntoBox(grid: Float32Array, gh: number, gw: number, box: Box, mapWidth: number, out: Float32Array, w = 1, window?: BlendWindow): void {
  const { width, height } = box;
  if (grid.length !== gh * gw) throw new RangeError(`upsample: grid has ${grid.length} elements, expected ${gh}x${gw}`);
  if (box.x < 0 || box.y < 0 || box.x + width > mapWidth || (box.y + height) * mapWidth > out.length) {
    throw new RangeError(`upsample: box ${width}x${height}+${box.x}+${box.y} does not fit a map ${mapWidth} wide with ${out.length} elements`);
  }
  if (window && (window.wx.length !== width || window.wy.length !== height)) {
    throw new RangeError(`upsample: a ${window.wx.length}x${window.wy.length} blending window for a ${width}x${height} box`);
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
    const wy = window ? w * window.wy[y] : w;
    for (let x = 0; x < width; x++) {
      const x0 = xs.i0[x];
      const x1 = Math.min(x0 + 1, gw - 1);
      const tx = xs.t[x];
      const top = grid[r0 + x0] + (grid[r0 + x1] - grid[r0 + x0]) * tx;
      const bottom = grid[r1 + x0] + (grid[r1 + x1] - grid[r1 + x0]) * tx;
      out[o + x] += (window ? wy * window.wx[x] : wy) * (top + (bottom - top) * ty);
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

/** A tile's blending weights: `wx[x] · wy[y]` at offset (x, y) in its box. */
export interface BlendWindow {
  readonly wx: Float32Array;
  readonly wy: Float32Array;
}

/** How stitched tiles are blended: each box's window, and their sum per pixel of the map (what a stitched map is divided by). */
export interface TileBlend {
  readonly windows: readonly BlendWindow[];
  readonly total: Float32Array;
}

/**
 * One axis of a box's window: 1 inside, a linear ramp down to the box's edge over the
 * width `lead` (`trail`) it shares with a neighbour before (after) it; no ramp at the
 * map's border. Weights stay positive ((k + ½) / lead at offset k), so every covered
 * pixel has a weight.
 */
function ramp(length: number, lead: number, trail: number): Float32Array {
  const w = new Float32Array(length);
  for (let k = 0; k < length; k++) {
    let v = 1;
    if (lead > 0) v = Math.min(v, (k + 0.5) / lead);
    if (trail > 0) v = Math.min(v, (length - k - 0.5) / trail);
    w[k] = v;
  }
  return w;
}

/**
 * How overlapping tiles are combined: `blend` (weights falling off across each overlap) or
 * `average` (equal weights, what musc-ts did before blending; kept for tiled banks built then).
 */
export type TileStitching = 'blend' | 'average';

/**
 * The widest overlap of box `b` with a box before it (`lead`) and after it (`trail`) along the x
 * axis (`vertical`: the y axis), among boxes that also overlap it on the other axis.
 */
function sharedSpans(b: Box, boxes: readonly Box[], vertical: boolean): { lead: number; trail: number } {
  const p = vertical ? b.y : b.x;
  const len = vertical ? b.height : b.width;
  const q = vertical ? b.x : b.y;
  const qlen = vertical ? b.width : b.height;
  let lead = 0;
  let trail = 0;
  for (const o of boxes) {
    if (o === b) continue;
    const op = vertical ? o.y : o.x;
    const olen = vertical ? o.height : o.width;
    const oq = vertical ? o.x : o.y;
    const oqlen = vertical ? o.width : o.height;
    if (oq >= q + qlen || q >= oq + oqlen) continue;
    if (op < p && op + olen > p) lead = Math.max(lead, Math.min(len, op + olen - p));
    if (op > p && op < p + len && op + olen > p + len) trail = Math.max(trail, Math.min(len, p + len - op));
  }
  return { lead, trail };
}

/**
 * Blending of overlapping tiles (stitched maps divide by `total`): each tile's weight
 * falls linearly to its edge across the overlap with each neighbour (feathering), so two
 * tiles' weights sum to one across their overlap and a stitched map has no step where a
 * tile ends. (An equal-weight average jumps there by half the tiles' disagreement, seen
 * as seams in overlays; `average` still gives it, for banks built with it.) Null when one
 * box covers the whole map once: nothing to blend, and the map is exactly the untiled one.
 * O(boxes² + covered pixels): compute it once per geometry.
 */
export function tileBlend(boxes: readonly Box[], size: SizeLike, stitching: TileStitching = 'blend'): TileBlend | null {
  const { width, height } = size2d(size);
  if (boxes.length === 1 && boxes[0].x === 0 && boxes[0].y === 0 && boxes[0].width === width && boxes[0].height === height) return null;
  const windows = boxes.map((b) => {
    if (stitching === 'average') return { wx: new Float32Array(b.width).fill(1), wy: new Float32Array(b.height).fill(1) };
    const x = sharedSpans(b, boxes, false);
    const y = sharedSpans(b, boxes, true);
    return { wx: ramp(b.width, x.lead, x.trail), wy: ramp(b.height, y.lead, y.trail) };
  });
  const total = new Float32Array(width * height);
  boxes.forEach((b, t) => {
    const { wx, wy } = windows[t];
    for (let y = 0; y < b.height; y++) for (let x = 0; x < b.width; x++) total[(b.y + y) * width + b.x + x] += wy[y] * wx[x];
  });
  return { windows, total };
}

/**
 * Adds one image's unit score grids (`[T, gh·gw]`, in the order of `boxes`) into its stitched map,
 * each upsampled into its box with weight `w` times its blending window (`blend` null: one box
 * covering the map). Divide by the total afterwards (`normaliseStitched`).
 */
export function addTilesIntoMap(units: Float32Array, gh: number, gw: number, boxes: readonly Box[], blend: TileBlend | null, mapWidth: number, out: Float32Array, w: number): void {
  const P = gh * gw;
  if (units.length !== boxes.length * P) throw new RangeError(`addTilesIntoMap: ${units.length} scores for ${boxes.length} units of ${gh}x${gw}`);
  boxes.forEach((box, t) => upsampleIntoBox(units.subarray(t * P, (t + 1) * P), gh, gw, box, mapWidth, out, w, blend?.windows[t]));
}

/** Divides stitched maps by the blend's total weight (pixels no tile covers stay 0). */
export function normaliseStitched(maps: readonly Float32Array[], blend: TileBlend | null): void {
  if (!blend) return;
  const { total } = blend;
  for (const m of maps) for (let i = 0; i < m.length; i++) if (total[i] > 0) m[i] /= total[i];
}

/** Image score `max` (the paper's): the maximum of the upsampled map (not of the grid; see spec §6.1). */
export function imageScore(map: Float32Array): number {
  let m = -Infinity;
  for (let i = 0; i < map.length; i++) if (map[i] > m) m = map[i];
  return m;
}

function checkTypical(what: string, map: Float32Array, typical: Float32Array): void {
  if (typical.length !== map.length) throw new RangeError(`${what}: the typical map has ${typical.length} pixels, the map ${map.length}`);
}

/** `map − typical`, pixel by pixel: what image score `excess` and its strongest region look at. */
export function excessMap(map: Float32Array, typical: Float32Array): Float32Array {
  checkTypical('excessMap', map, typical);
  const out = new Float32Array(map.length);
  for (let i = 0; i < map.length; i++) out[i] = map[i] - typical[i];
  return out;
}

/**
 * Image score `excess`: the maximum of the map's excess over the batch's typical map (`typicalMap`).
 * One pass in double precision (not `imageScore(excessMap(…))`, whose float32 differences round).
 */
export function excessScore(map: Float32Array, typical: Float32Array): number {
  checkTypical('excessScore', map, typical);
  let m = -Infinity;
  for (let i = 0; i < map.length; i++) if (map[i] - typical[i] > m) m = map[i] - typical[i];
  return m;
}

/** How an image score is taken from a map: `max` (the paper's) or `excess` over the batch's typical map. */
export type ImageScoreRule = 'max' | 'excess';

/** The image scores of `maps`: `excessScore` against `typical` when there is one, else `imageScore`. */
export function imageScoresOf(maps: readonly Float32Array[], typical: Float32Array | null): Float64Array {
  return Float64Array.from(maps, (m) => (typical ? excessScore(m, typical) : imageScore(m)));
}

/**
 * The batch's typical map: at each pixel, the median of the maps' values there (for an even count
 * the mean of the two middle values, taken in double precision). Mutual scoring gives some places high
 * scores in every image: the image border (the backbone's zero padding; measured on pure noise:
 * +16 % at the edge), a background that varies from image to image, an object's glare. A defect
 * is what stands out from its place's usual level, so image score `excess` takes the max of
 * `map − typical` (measured in BENCHMARKS.md). The median, not the mean: it stays at the normal
 * level of a pixel as long as fewer than half of the images are abnormal at that pixel (bottle's
 * test set is 63 of 83 images anomalous, but at different places). Maps hold no NaN (the median of
 * a column with NaN is undefined here). Hand-written: a per-pixel median over a stack of maps.
 */
export function typicalMap(maps: readonly Float32Array[]): Float32Array {
  const n = maps.length;
  if (n === 0) throw new RangeError('typicalMap: no maps');
  const L = maps[0].length;
  for (const m of maps) if (m.length !== L) throw new RangeError('typicalMap: maps of different sizes');
  const out = new Float32Array(L);
  // Pixels in blocks: each map is read in runs (cache-friendly), each pixel's column selected once.
  const B = 256;
  const block = new Float32Array(B * n);
  const lo = (n - 1) >> 1;
  const hi = n >> 1;
  for (let p0 = 0; p0 < L; p0 += B) {
    const b = Math.min(B, L - p0);
    for (let k = 0; k < n; k++) {
      const m = maps[k];
      for (let j = 0; j < b; j++) block[j * n + k] = m[p0 + j];
    }
    for (let j = 0; j < b; j++) {
      const col = block.subarray(j * n, (j + 1) * n);
      const upper = select(col, hi);
      // For an even count the lower middle is the largest value left of the upper one.
      let lower = upper;
      if (lo !== hi) {
        lower = col[0];
        for (let k = 1; k < hi; k++) if (col[k] > lower) lower = col[k];
      }
      out[p0 + j] = (lower + upper) / 2;
    }
  }
  return out;
}

/**
 * The k-th smallest value of `a` (0-based), rearranging `a` so that a[0..k) ≤ a[k] ≤ a(k..]:
 * Hoare's selection with a median-of-three pivot, O(n) on average (a sort per pixel measured 2–3× slower).
 */
function select(a: Float32Array, k: number): number {
  let left = 0;
  let right = a.length - 1;
  while (right > left) {
    const mid = (left + right) >> 1;
    // Median of three as the pivot, moved to a[k]'s side of the range.
    if (a[mid] < a[left]) swap(a, mid, left);
    if (a[right] < a[left]) swap(a, right, left);
    if (a[right] < a[mid]) swap(a, right, mid);
    const pivot = a[mid];
    let i = left;
    let j = right;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        swap(a, i, j);
        i++;
        j--;
      }
    }
    if (k <= j) right = j;
    else if (k >= i) left = i;
    else return a[k];
  }
  return a[k];
}

function swap(a: Float32Array, i: number, j: number): void {
  const t = a[i];
  a[i] = a[j];
  a[j] = t;
}
