/**
 * The one place that defines tensor layouts. Every stage takes and returns
 * row-major Float32Arrays with explicit shapes:
 *
 * - `FeatureMap`       a dense tensor. ViT block outputs are `[B, T, C]` (T = 1 + gh*gw when a CLS token leads).
 * - `LayerBatch`       backbone output for one layer: CNN stage maps NCHW `[B, C, gh, gw]` (layout `chw`),
 *                      ViT patch tokens `[B, gh, gw, C]` (layout `hwc`), each as the model computes it.
 * - `FeatureGrid`      one image, one layer, what LNAMD standardises: a `ChwGrid` `[C, gh, gw]`
 *                      or an `HwcGrid` `[gh*gw, C]` (token-major). gh and gw may differ.
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

/** One image's feature grid for one layer, channel-major `[C, gh, gw]` (CNN stage maps). */
export interface ChwGrid {
  readonly data: Float32Array;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  /** Channel-major; optional so plain `{ data, channels, height, width }` grids stay valid. */
  readonly layout?: 'chw';
}

/** One image's feature grid for one layer, token-major `[gh*gw, C]` (ViT patch tokens), patch p = u*gw + v. */
export interface HwcGrid {
  readonly data: Float32Array;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly layout: 'hwc';
}

/** A feature grid in either layout; LNAMD gives identical results for both. */
export type FeatureGrid = ChwGrid | HwcGrid;

/** Memory order of a grid: channel-major or token-major. */
export type GridLayout = 'chw' | 'hwc';

/** One layer of a backbone batch: NCHW `[B, C, gh, gw]` (`chw`) or `[B, gh, gw, C]` (`hwc`). */
export interface LayerBatch extends FeatureMap {
  readonly layout: GridLayout;
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

/** Image `b` of a layer batch as a grid in the batch's layout (a view, no copy). */
export function gridOfBatch(map: LayerBatch, b: number): FeatureGrid {
  if (map.dims.length !== 4) throw new RangeError(`expected a [B, C, gh, gw] or [B, gh, gw, C] layer batch, got dims [${map.dims.join(', ')}]`);
  const [, d1, d2, d3] = map.dims as [number, number, number, number];
  const size = d1 * d2 * d3;
  const data = map.data.subarray(b * size, (b + 1) * size);
  return map.layout === 'hwc' ? { data, channels: d3, height: d1, width: d2, layout: 'hwc' } : { data, channels: d1, height: d2, width: d3, layout: 'chw' };
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
