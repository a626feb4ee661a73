/**
 * LNAMD — Local Neighbourhood Aggregation with Multiple Degrees (MuSc §3.1, spec §3).
 * Hand-written: it is MuSc-specific math with no library equivalent.
 *
 * For one image and one layer grid `[C, gh, gw]` and an odd degree r:
 *  1. standardise the whole tensor (one mean and population variance over all
 *     C*gh*gw entries, eps 1e-5; an affine-free LayerNorm over [C, gh, gw]);
 *  2. average every patch with its r x r neighbourhood per channel, zero padding
 *     counted in the denominator (avg_pool2d, count_include_pad);
 *  3. L2-normalise every patch vector over C.
 * Output layout `[P, C]` (patch p = u*gw + v), rows of unit length.
 */
import { ConfigError } from '../errors.js';
import type { ChwGrid, PatchVectors } from '../tensor.js';

/** LayerNorm epsilon of the reference. */
export const LNAMD_EPS = 1e-5;

/**
 * Applies LNAMD of degree `r` to one image's layer grid.
 * @param grid channel-major `[C, gh, gw]` features of one image
 * @param r odd aggregation degree (1 = no aggregation)
 * @param out optional `[P, C]` destination to avoid allocation
 */
export function lnamd(grid: ChwGrid, r: number, out?: Float32Array): PatchVectors {
  if (!Number.isInteger(r) || r < 1 || r % 2 === 0) {
    throw new ConfigError(`LNAMD degree r must be a positive odd integer (got ${r}); even r shrinks the grid in the reference`);
  }
  const { channels: C, height: H, width: W, data } = grid;
  const P = H * W;
  const n = C * P;
  // Standardisation in float64: the mean of ~1e6 entries loses bits in float32.
  let sum = 0;
  for (let i = 0; i < n; i++) sum += data[i];
  const mean = sum / n;
  let sq = 0;
  for (let i = 0; i < n; i++) {
    const d = data[i] - mean;
    sq += d * d;
  }
  const inv = 1 / Math.sqrt(sq / n + LNAMD_EPS);
  const norm = 1 / (r * r);
  const half = (r - 1) >> 1;
  const result = out ?? new Float32Array(P * C);
  if (result.length !== P * C) throw new RangeError(`lnamd: out has ${result.length} elements, need ${P * C}`);

  // Separable box sum with zero padding: rows first into `rows`, then columns while writing [P, C].
  const plane = new Float64Array(P);
  const rows = new Float64Array(P);
  for (let c = 0; c < C; c++) {
    const base = c * P;
    for (let i = 0; i < P; i++) plane[i] = (data[base + i] - mean) * inv;
    if (r === 1) {
      for (let p = 0; p < P; p++) result[p * C + c] = plane[p];
      continue;
    }
    for (let u = 0; u < H; u++) {
      const row = u * W;
      for (let v = 0; v < W; v++) {
        let s = 0;
        const lo = Math.max(0, v - half);
        const hi = Math.min(W - 1, v + half);
        for (let x = lo; x <= hi; x++) s += plane[row + x];
        rows[row + v] = s;
      }
    }
    for (let u = 0; u < H; u++) {
      const lo = Math.max(0, u - half);
      const hi = Math.min(H - 1, u + half);
      for (let v = 0; v < W; v++) {
        let s = 0;
        for (let y = lo; y <= hi; y++) s += rows[y * W + v];
        result[(u * W + v) * C + c] = s * norm;
      }
    }
  }
  // L2 normalisation per patch; a zero vector (constant input) stays zero rather than NaN.
  for (let p = 0; p < P; p++) {
    const o = p * C;
    let ss = 0;
    for (let c = 0; c < C; c++) ss += result[o + c] * result[o + c];
    if (ss > 0) {
      const k = 1 / Math.sqrt(ss);
      for (let c = 0; c < C; c++) result[o + c] *= k;
    }
  }
  return { data: result, patches: P, channels: C, gridHeight: H, gridWidth: W };
}

/**
 * LNAMD of degree `r` for several images' grids of one layer, packed as `[N, P, C]`
 * (the layout mutual scoring takes). All grids must share one shape.
 * @param out optional destination of N·P·C values, reused across r
 */
export function lnamdStack(grids: readonly ChwGrid[], r: number, out?: Float32Array): Float32Array {
  const g0 = grids[0];
  const size = g0.height * g0.width * g0.channels;
  const z = out ?? new Float32Array(grids.length * size);
  grids.forEach((g, n) => {
    if (g.channels !== g0.channels || g.height * g.width !== g0.height * g0.width) throw new RangeError('feature grids differ between images of one batch');
    lnamd(g, r, z.subarray(n * size, (n + 1) * size));
  });
  return z;
}
