/**
 * The one place that defines tensor layouts. Every stage takes and returns
 * row-major Float32Arrays with explicit shapes:
 *
 * - `FeatureMap`       backbone output. CNN stage maps are NCHW `[B, C, H, W]`;
 *                      ViT token maps are `[B, T, C]` (T = 1 + gh*gw when a CLS token leads).
 * - `ChwGrid`          one image, one layer: `[C, gh, gw]` (what LNAMD standardises).
 * - `PatchVectors`     one image, one (layer, r): `[P, C]`, P = gh*gw, patch p = u*gw + v
 *                      (u row, v column), each row a unit vector after LNAMD.
 * - `PatchScores`      one image, one (layer, r) or combined: `[P]` in the same patch order.
 * - `AnomalyMap`       one image: `[H, W]` pixel scores at the working size (`Size2D`; square by default).
 */

/** A dense float tensor with explicit dimensions (row-major). */
export interface FeatureMap {
  readonly data: Float32Array;
  readonly dims: readonly number[];
}

/** One image's feature grid for one layer, channel-major `[C, gh, gw]`. */
export interface ChwGrid {
  readonly data: Float32Array;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
}

/** Unit patch vectors of one image for one (layer, r): `[patches, channels]`. */
export interface PatchVectors {
  readonly data: Float32Array;
  readonly patches: number;
  readonly channels: number;
  readonly gridHeight: number;
  readonly gridWidth: number;
}

/** Number of elements of a shape. */
export function numel(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** Checks that `data.length` matches `dims`; throws with the given label otherwise. */
export function assertShape(label: string, data: ArrayLike<number>, dims: readonly number[]): void {
  const n = numel(dims);
  if (data.length !== n) {
    throw new RangeError(`${label}: expected ${n} elements for shape [${dims.join(', ')}], got ${data.length}`);
  }
}

/** Slices image `b` of an NCHW batch into a `[C, H, W]` grid (a view, no copy). */
export function chwOfBatch(map: FeatureMap, b: number): ChwGrid {
  if (map.dims.length !== 4) throw new RangeError(`expected NCHW feature map, got dims [${map.dims.join(', ')}]`);
  const [, c, h, w] = map.dims as [number, number, number, number];
  const size = c * h * w;
  return { data: map.data.subarray(b * size, (b + 1) * size), channels: c, height: h, width: w };
}

/**
 * A 2-D size in pixels. Anomaly maps of one image are `[height, width]` row-major
 * at the working size; feature grids are `gh x gw` and need not be square.
 */
export interface Size2D {
  readonly width: number;
  readonly height: number;
}

/** A size given as one number (a square) or as width and height. */
export type SizeLike = number | Size2D;

/** Normalises a `SizeLike` to width and height (a number means a square). */
export function size2d(s: SizeLike): Size2D {
  return typeof s === 'number' ? { width: s, height: s } : s;
}
