/**
 * PyTorch's `F.interpolate(x, size, mode='bicubic', align_corners=False)` for a
 * channel-major grid: cubic convolution with a = −0.75, source coordinate
 * (dst + 0.5)·in/out − 0.5, taps clamped at the border, no antialiasing.
 * Hand-written because it is what the MuSc reference (open_clip, DINOv2) uses to
 * resize ViT positional embeddings, and no JS image library exposes exactly this
 * kernel on float data (sharp works on 8/16-bit images and antialiases).
 */

const A = -0.75;

function cubic1(x: number): number {
  return ((A + 2) * x - (A + 3)) * x * x + 1;
}
function cubic2(x: number): number {
  return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
}

/** The four taps (first index, clamped) and weights of every output position along one axis. */
function axisTaps(inSize: number, outSize: number): { index: Int32Array; weight: Float64Array } {
  const index = new Int32Array(outSize * 4);
  const weight = new Float64Array(outSize * 4);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    const real = scale * (o + 0.5) - 0.5;
    const base = Math.floor(real);
    const t = real - base;
    const w = [cubic2(t + 1), cubic1(t), cubic1(1 - t), cubic2(2 - t)];
    for (let k = 0; k < 4; k++) {
      index[o * 4 + k] = Math.min(inSize - 1, Math.max(0, base - 1 + k));
      weight[o * 4 + k] = w[k];
    }
  }
  return { index, weight };
}

/**
 * Resizes `[C, h, w]` (row-major) to `[C, h1, w1]`.
 * @returns a new Float32Array of length C·h1·w1
 */
export function bicubicResize(src: Float32Array, c: number, h: number, w: number, h1: number, w1: number): Float32Array {
  if (src.length !== c * h * w) throw new RangeError(`bicubicResize: expected ${c * h * w} values, got ${src.length}`);
  const out = new Float32Array(c * h1 * w1);
  const ys = axisTaps(h, h1);
  const xs = axisTaps(w, w1);
  const row = new Float64Array(w1);
  for (let ch = 0; ch < c; ch++) {
    const plane = src.subarray(ch * h * w, (ch + 1) * h * w);
    for (let oy = 0; oy < h1; oy++) {
      row.fill(0);
      for (let ky = 0; ky < 4; ky++) {
        const wy = ys.weight[oy * 4 + ky];
        const srcRow = ys.index[oy * 4 + ky] * w;
        for (let ox = 0; ox < w1; ox++) {
          let acc = 0;
          for (let kx = 0; kx < 4; kx++) acc += xs.weight[ox * 4 + kx] * plane[srcRow + xs.index[ox * 4 + kx]];
          row[ox] += wy * acc;
        }
      }
      out.set(row, ch * h1 * w1 + oy * w1);
    }
  }
  return out;
}
