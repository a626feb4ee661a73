/**
 * Segmentation maps (spec §5): patch-score grids upsampled bilinearly with
 * align_corners=True to the working resolution and averaged with equal weight
 * over all (layer, r) maps; no smoothing, no normalisation. Image score = max.
 */

/**
 * Bilinear upsampling with align_corners=True of a `[gh, gw]` grid to `[size, size]`,
 * accumulated into `out` with weight `w` (so several maps can be averaged without
 * temporaries). Output pixel (y, x) samples the grid at (y·(gh−1)/(size−1), x·(gw−1)/(size−1)).
 */
export function upsampleAccumulate(grid: Float32Array, gh: number, gw: number, size: number, out: Float32Array, w = 1): void {
  if (grid.length !== gh * gw) throw new RangeError(`upsample: grid has ${grid.length} elements, expected ${gh}x${gw}`);
  if (out.length !== size * size) throw new RangeError(`upsample: out has ${out.length} elements, expected ${size}x${size}`);
  const sy = size > 1 ? (gh - 1) / (size - 1) : 0;
  const sx = size > 1 ? (gw - 1) / (size - 1) : 0;
  const x0s = new Int32Array(size);
  const fxs = new Float64Array(size);
  for (let x = 0; x < size; x++) {
    const fx = x * sx;
    const x0 = Math.min(Math.floor(fx), gw - 1);
    x0s[x] = x0;
    fxs[x] = fx - x0;
  }
  for (let y = 0; y < size; y++) {
    const fy = y * sy;
    const y0 = Math.min(Math.floor(fy), gh - 1);
    const y1 = Math.min(y0 + 1, gh - 1);
    const ty = fy - y0;
    const r0 = y0 * gw;
    const r1 = y1 * gw;
    const o = y * size;
    for (let x = 0; x < size; x++) {
      const x0 = x0s[x];
      const x1 = Math.min(x0 + 1, gw - 1);
      const tx = fxs[x];
      const top = grid[r0 + x0] + (grid[r0 + x1] - grid[r0 + x0]) * tx;
      const bottom = grid[r1 + x0] + (grid[r1 + x1] - grid[r1 + x0]) * tx;
      out[o + x] += w * (top + (bottom - top) * ty);
    }
  }
}

/** Upsamples one grid to a new `[size, size]` map. */
export function upsampleBilinear(grid: Float32Array, gh: number, gw: number, size: number): Float32Array {
  const out = new Float32Array(size * size);
  upsampleAccumulate(grid, gh, gw, size, out, 1);
  return out;
}

/** One (layer, r) patch-score grid of one image. */
export interface ScoreGrid {
  readonly scores: Float32Array;
  readonly gridHeight: number;
  readonly gridWidth: number;
}

/** Equal-weight mean of the upsampled grids: the anomaly map of one image, `[size, size]`. */
export function anomalyMap(grids: readonly ScoreGrid[], size: number): Float32Array {
  const out = new Float32Array(size * size);
  for (const g of grids) upsampleAccumulate(g.scores, g.gridHeight, g.gridWidth, size, out, 1 / grids.length);
  return out;
}

/** Image score: the maximum of the upsampled map (not of the grid; see spec §6.1). */
export function imageScore(map: Float32Array): number {
  let m = -Infinity;
  for (let i = 0; i < map.length; i++) if (map[i] > m) m = map[i];
  return m;
}
