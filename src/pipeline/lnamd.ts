/**
 * LNAMD — Local Neighbourhood Aggregation with Multiple Degrees (MuSc §3.1, spec §3).
 * Hand-written: it is MuSc-specific math with no library equivalent.
 *
 * For one image and one layer grid (channel-major `[C, gh, gw]` or token-major
 * `[gh*gw, C]`, bit-identical results) and an odd degree r:
 *  1. standardise the whole tensor (one mean and population variance over all
 *     C*gh*gw entries, eps 1e-5; an affine-free LayerNorm over [C, gh, gw]);
 *  2. average every patch with its r x r neighbourhood per channel, zero padding
 *     counted in the denominator (avg_pool2d, count_include_pad);
 *  3. L2-normalise every patch vector over C.
 * Output layout `[P, C]` (patch p = u*gw + v), rows of unit length.
 */
import { ConfigError } from '../errors.js';
import type { FeatureGrid, PatchVectors } from '../tensor.js';

/** LayerNorm epsilon of the reference. */
export const LNAMD_EPS = 1e-5;

/** Channels gathered per pass (token-major input, channel-major output): 16 floats are one 64-byte cache line per token. */
const HWC_TILE = 16;

/**
 * Calls `visit` with every channel plane `[gh*gw]` of the grid, in channel order. Channel-major
 * grids hand out views; token-major grids are transposed 16 channels at a time into a small tile.
 */
function forEachChannel(grid: FeatureGrid, visit: (plane: Float32Array) => void): void {
  const { channels: C, data } = grid;
  const P = grid.height * grid.width;
  if (grid.layout !== 'hwc') {
    for (let c = 0; c < C; c++) visit(data.subarray(c * P, (c + 1) * P));
    return;
  }
  const tile = new Float32Array(HWC_TILE * P);
  for (let c0 = 0; c0 < C; c0 += HWC_TILE) {
    const k = Math.min(HWC_TILE, C - c0);
    for (let p = 0; p < P; p++) {
      const row = p * C + c0;
      for (let j = 0; j < k; j++) tile[j * P + p] = data[row + j];
    }
    for (let j = 0; j < k; j++) visit(tile.subarray(j * P, (j + 1) * P));
  }
}

/** The two numbers that standardise a grid: its mean and 1/√(variance + eps). */
export interface Standardisation {
  readonly mean: number;
  readonly inv: number;
}

/**
 * Mean and 1/std (eps added) of all entries. Float64: the mean of ~1e6 entries loses bits in
 * float32. One running sum in channel-major order whatever the layout, so both layouts give the
 * same bits (the local copies keep the hot loops off the closure).
 */
export function standardisation(grid: FeatureGrid): Standardisation {
  // Every degree r of a grid needs the same two numbers: computed once per grid object.
  const known = knownStandardisation(grid);
  if (known) return known;
  const P = grid.height * grid.width;
  const n = grid.channels * P;
  let sum = 0;
  forEachChannel(grid, (src) => {
    let s = sum;
    for (let i = 0; i < P; i++) s += src[i];
    sum = s;
  });
  const mean = sum / n;
  let sq = 0;
  forEachChannel(grid, (src) => {
    let s = sq;
    for (let i = 0; i < P; i++) {
      const d = src[i] - mean;
      s += d * d;
    }
    sq = s;
  });
  const result = { mean, inv: 1 / Math.sqrt(sq / n + LNAMD_EPS) };
  rememberStandardisation(grid, result);
  return result;
}
const standardised = new WeakMap<FeatureGrid, Standardisation & { data: Float32Array }>();

/** The standardisation of `grid` when already computed for this grid object and its data. */
export function knownStandardisation(grid: FeatureGrid): Standardisation | null {
  const known = standardised.get(grid);
  return known && known.data === grid.data ? { mean: known.mean, inv: known.inv } : null;
}

/** Records a grid's standardisation (computed elsewhere, e.g. by a worker thread) for its later degrees r. */
export function rememberStandardisation(grid: FeatureGrid, std: Standardisation): void {
  standardised.set(grid, { data: grid.data, mean: std.mean, inv: std.inv });
}

/**
 * Zero-padded r x r box mean of the standardised channel-major grid, written as `[P, C]`, and
 * each patch's sum of squares of the written (float32) values into `sumSq` (channels in order,
 * as the L2 pass of `lnamdInto` sums them, so both give the same bits). Separable: rows first,
 * then columns, one channel plane at a time. The plane is stored with a zero border of
 * (r − 1)/2 on each side, so every window sums r terms without bounds checks: a sum that
 * starts with the border's zeros has the same bits as one that skips them (0 + a = a).
 * Planes are gathered 16 at a time and written out token by token (16 floats: one cache line
 * per token), not one strided value per token and channel.
 */
function boxMeanChw(data: Float32Array, C: number, H: number, W: number, mean: number, inv: number, r: number, result: Float32Array, sumSq: Float64Array): void {
  const P = H * W;
  const norm = 1 / (r * r);
  const half = (r - 1) >> 1;
  const Wp = W + 2 * half;
  // float64 like the sums, so each value is rounded to float32 once, on the final store.
  const plane = new Float64Array(H * Wp); // rows padded left and right
  const rows = new Float64Array((H + 2 * half) * W); // row sums, padded above and below
  const tile = new Float64Array(HWC_TILE * P);
  sumSq.fill(0);
  for (let c0 = 0; c0 < C; c0 += HWC_TILE) {
    const k = Math.min(HWC_TILE, C - c0);
    for (let j = 0; j < k; j++) {
      const base = (c0 + j) * P;
      const out = j * P;
      if (r === 1) {
        for (let i = 0; i < P; i++) tile[out + i] = (data[base + i] - mean) * inv;
        continue;
      }
      for (let u = 0; u < H; u++) {
        const src = base + u * W;
        const dst = u * Wp + half;
        for (let v = 0; v < W; v++) plane[dst + v] = (data[src + v] - mean) * inv;
      }
      windowSums(plane, Wp, 1, rows, half * W, W, H, W, r);
      windowSums(rows, W, W, tile, out, W, H, W, r);
      for (let i = out; i < out + P; i++) tile[i] *= norm;
    }
    for (let p = 0; p < P; p++) {
      const o = p * C + c0;
      let ss = sumSq[p];
      for (let j = 0; j < k; j++) {
        const f = Math.fround(tile[j * P + p]);
        result[o + j] = f;
        ss += f * f;
      }
      sumSq[p] = ss;
    }
  }
}

/**
 * `dst[d0 + u·dstRow + v] = Σ_{x<r} src[u·srcRow + v + x·step]` for u < H, v < W: the r-term
 * window sums of the box mean (step 1 along a row, step = row length down a column), each
 * summed from 0 in order. r = 3 and 5 (the default degrees) are written out: about 1.6× faster
 * than the general loop, with the same terms in the same order, so the same bits.
 */
function windowSums(src: Float64Array, srcRow: number, step: number, dst: Float64Array, d0: number, dstRow: number, H: number, W: number, r: number): void {
  const s1 = step;
  const s2 = 2 * step;
  const s3 = 3 * step;
  const s4 = 4 * step;
  for (let u = 0; u < H; u++) {
    const a = u * srcRow;
    const o = d0 + u * dstRow;
    if (r === 3 || r === 5) {
      const five = r === 5;
      for (let v = 0; v < W; v++) {
        const i = a + v;
        let s = 0;
        s += src[i];
        s += src[i + s1];
        s += src[i + s2];
        if (five) {
          s += src[i + s3];
          s += src[i + s4];
        }
        dst[o + v] = s;
      }
    } else {
      for (let v = 0; v < W; v++) {
        let s = 0;
        for (let x = 0; x < r; x++) s += src[a + v + x * step];
        dst[o + v] = s;
      }
    }
  }
}

/**
 * The same box mean over a token-major grid: every output is the same float64 sum, over the
 * same terms in the same order, as in {@link boxMeanChw}, so both layouts give identical bits.
 * Here the sums run across neighbouring tokens for each channel, reading and writing whole
 * token rows of C values.
 */
function boxMeanHwc(data: Float32Array, C: number, H: number, W: number, mean: number, inv: number, r: number, result: Float32Array): void {
  const P = H * W;
  if (r === 1) {
    for (let i = 0; i < P * C; i++) result[i] = (data[i] - mean) * inv;
    return;
  }
  const norm = 1 / (r * r);
  const half = (r - 1) >> 1;
  const rows = new Float64Array(P * C);
  for (let u = 0; u < H; u++) {
    for (let v = 0; v < W; v++) {
      const lo = Math.max(0, v - half);
      const hi = Math.min(W - 1, v + half);
      const o = (u * W + v) * C;
      for (let c = 0; c < C; c++) {
        let s = 0;
        for (let x = lo; x <= hi; x++) s += (data[(u * W + x) * C + c] - mean) * inv;
        rows[o + c] = s;
      }
    }
  }
  for (let u = 0; u < H; u++) {
    const lo = Math.max(0, u - half);
    const hi = Math.min(H - 1, u + half);
    for (let v = 0; v < W; v++) {
      const o = (u * W + v) * C;
      for (let c = 0; c < C; c++) {
        let s = 0;
        for (let y = lo; y <= hi; y++) s += rows[(y * W + v) * C + c];
        result[o + c] = s * norm;
      }
    }
  }
}

/**
 * Applies LNAMD of degree `r` to one image's layer grid.
 * @param grid features of one image, channel-major `[C, gh, gw]` or token-major `[gh*gw, C]`
 * @param r odd aggregation degree (1 = no aggregation)
 * @param out optional `[P, C]` destination to avoid allocation
 */
export function lnamd(grid: FeatureGrid, r: number, out?: Float32Array): PatchVectors {
  const { channels: C, height: H, width: W } = grid;
  const result = out ?? new Float32Array(H * W * C);
  lnamdInto(grid, r, result);
  return { data: result, patches: H * W, channels: C, gridHeight: H, gridWidth: W };
}

/**
 * LNAMD into `result` (`[P, C]`); returns the largest |component| written (the int8 range of the
 * vectors). `std`: the grid's standardisation when known (a worker thread is handed it).
 */
export function lnamdInto(grid: FeatureGrid, r: number, result: Float32Array, std?: Standardisation): number {
  if (!Number.isInteger(r) || r < 1 || r % 2 === 0) {
    throw new ConfigError(`LNAMD degree r must be a positive odd integer (got ${r}); even r shrinks the grid in the reference`);
  }
  const { channels: C, height: H, width: W } = grid;
  const P = H * W;
  if (result.length !== P * C) throw new RangeError(`lnamd: out has ${result.length} elements, need ${P * C}`);
  const { mean, inv } = std ?? standardisation(grid);
  const sumSq = new Float64Array(P);
  if (grid.layout === 'hwc') {
    boxMeanHwc(grid.data, C, H, W, mean, inv, r, result);
    for (let p = 0; p < P; p++) {
      const o = p * C;
      let ss = 0;
      for (let c = 0; c < C; c++) ss += result[o + c] * result[o + c];
      sumSq[p] = ss;
    }
  } else boxMeanChw(grid.data, C, H, W, mean, inv, r, result, sumSq);
  // L2 normalisation per patch; a zero vector (constant input) stays zero rather than NaN. The
  // largest |value| is taken from the stored float32 values, as maxAbs over the result would.
  let range = 0;
  for (let p = 0; p < P; p++) {
    const ss = sumSq[p];
    if (ss > 0) {
      const o = p * C;
      const k = 1 / Math.sqrt(ss);
      for (let c = 0; c < C; c++) {
        const v = Math.fround(result[o + c] * k);
        result[o + c] = v;
        const a = Math.abs(v);
        if (a > range) range = a;
      }
    }
  }
  return range;
}

/**
 * LNAMD of degree `r` for several images' grids of one layer, packed as `[N, P, C]`
 * (the layout mutual scoring takes). All grids must share one shape.
 * @param out optional destination of N·P·C values, reused across r
 */
export function lnamdStack(grids: readonly FeatureGrid[], r: number, out?: Float32Array): Float32Array {
  return lnamdStackWithRange(grids, r, out).z;
}

/**
 * Values per image of a stack of grids (P·C), checking that every grid has the first one's shape.
 * @throws RangeError when the images of one batch have different grids
 */
export function stackSize(grids: readonly FeatureGrid[]): number {
  const g0 = grids[0];
  for (const g of grids) {
    if (g.channels !== g0.channels || g.height * g.width !== g0.height * g0.width) throw new RangeError('feature grids differ between images of one batch');
  }
  return g0.height * g0.width * g0.channels;
}

/**
 * `lnamdStack`, also returning the largest |component| of the result (what int8 mutual scoring
 * quantises with), found in the normalising pass instead of another pass over N·P·C values.
 * @param known each grid's standardisation when already known (a worker thread is handed them)
 */
export function lnamdStackWithRange(grids: readonly FeatureGrid[], r: number, out?: Float32Array, known?: readonly (Standardisation | null)[]): { z: Float32Array; range: number } {
  const size = stackSize(grids);
  const z = out ?? new Float32Array(grids.length * size);
  let range = 0;
  grids.forEach((g, n) => {
    range = Math.max(range, lnamdInto(g, r, z.subarray(n * size, (n + 1) * size), known?.[n] ?? undefined));
  });
  return { z, range };
}
