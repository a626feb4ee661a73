/**
 * Where every pixel goes: the working size of a batch (the "canvas" each image is
 * resampled to; anomaly maps and pixel metrics live at it), and the units cut from
 * it for the backbone (the whole canvas, or overlapping tiles). Pure functions of
 * the configuration and the images' original sizes.
 *
 * - square (the reference): S × S, aspect not kept;
 * - `WxH`: a fixed canvas;
 * - keep-aspect: long side S, the other side from the batch's aspect ratio (the
 *   median of the images' aspect ratios: a batch with mixed sizes gets one canvas,
 *   and images of another aspect are resampled to it), rounded to the backbone's
 *   size multiple;
 * - tiles `RxC`: R × C overlapping S × S tiles; the canvas is just large enough to
 *   hold them (so tiles are cut at the resolution the backbone sees, no resampling
 *   per tile) and takes the batch's aspect only through R and C;
 * - tile size `PX`: PX × PX tiles at the images' native resolution: the canvas is the
 *   batch's median original size, tiles step by PX·(1 − overlap), the last row and
 *   column flush with the border.
 */
import { ConfigError } from '../errors.js';
import type { Size2D } from '../tensor.js';

/** A rectangle on the canvas, in pixels. */
export interface Box {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

/** How images are cut into units of mutual scoring. */
export interface TilingConfig {
  /** R × C tiles of S × S pixels (S = the configured image size). */
  readonly grid?: { readonly rows: number; readonly cols: number };
  /** Or square tiles of this many pixels at native resolution. */
  readonly size?: number;
  /** Fraction of a tile's side shared with its neighbour, in [0, 0.75]. */
  readonly overlap: number;
  /** `position`: tile t is compared with tile t of the other images (aligned parts); `any`: with every tile of the other images (surfaces). */
  readonly match: 'position' | 'any';
}

/** The geometry of one batch. */
export interface Geometry {
  /** Images are resampled to this size; maps and pixel metrics live at it. */
  readonly canvas: Size2D;
  /** Backbone input of every unit. */
  readonly input: Size2D;
  /** Units on the canvas (one box covering it when not tiled), row-major over the tile grid. */
  readonly boxes: readonly Box[];
  /** Tile grid (1 × 1 when not tiled). */
  readonly rows: number;
  readonly cols: number;
  /** How the canvas was chosen, for reports. */
  readonly rule: string;
}

/** What decides the canvas. */
export interface GeometryConfig {
  /** S: the square side, the long side with `keepAspect`, or the tile side with a tile grid. */
  readonly imageSize: number;
  /** A fixed canvas (`--image-size WxH`). */
  readonly imageShape?: Size2D | null;
  /** Long side S, the batch's aspect ratio. */
  readonly keepAspect?: boolean;
  readonly tiles?: TilingConfig | null;
}

/** Median of the images' aspect ratios (width / height); 1 for an empty list. */
export function batchAspect(sizes: readonly Size2D[]): number {
  if (sizes.length === 0) return 1;
  const a = sizes.map((s) => s.width / s.height).sort((x, y) => x - y);
  const m = a.length >> 1;
  return a.length % 2 ? a[m] : Math.sqrt(a[m - 1] * a[m]);
}

/** Median original size of the batch (by area), for native-resolution tiles. */
function medianSize(sizes: readonly Size2D[]): Size2D {
  const s = [...sizes].sort((x, y) => x.width * x.height - y.width * y.height);
  return s[s.length >> 1];
}

/** Most tiles along one side of a grid (`--tiles`), and per image (also for `--tile-size`). */
const MAX_TILE_SIDE = 16;
const MAX_TILES = MAX_TILE_SIDE * MAX_TILE_SIDE;

const roundTo = (v: number, multiple: number) => Math.max(multiple, Math.round(v / multiple) * multiple);

/** Tile starts along one axis: n tiles of `tile` px over `extent` px, first at 0, last flush with the end. */
function starts(extent: number, tile: number, n: number): number[] {
  if (n === 1) return [Math.max(0, Math.round((extent - tile) / 2))];
  return Array.from({ length: n }, (_, i) => Math.round((i * (extent - tile)) / (n - 1)));
}

/**
 * The batch's geometry.
 * @param sizes original sizes of the batch's images (only read for keep-aspect and native tiles)
 * @param sizeMultiple canvas sides are rounded to this (the backbone's stride or patch size)
 */
export function resolveGeometry(cfg: GeometryConfig, sizes: readonly Size2D[], sizeMultiple = 32): Geometry {
  const S = cfg.imageSize;
  const t = cfg.tiles;
  if (t) {
    if (!(t.overlap >= 0 && t.overlap <= 0.75)) throw new ConfigError(`tile overlap must be in [0, 0.75] (got ${t.overlap})`);
    if (t.grid) {
      const { rows, cols } = t.grid;
      if (![rows, cols].every((v) => Number.isInteger(v) && v >= 1 && v <= MAX_TILE_SIDE)) throw new ConfigError(`tile grid must be 1..${MAX_TILE_SIDE} x 1..${MAX_TILE_SIDE} (got ${rows}x${cols})`);
      const step = Math.max(1, Math.round(S * (1 - t.overlap)));
      const canvas = { width: S + (cols - 1) * step, height: S + (rows - 1) * step };
      const boxes = Array.from({ length: rows * cols }, (_, k) => ({ x: (k % cols) * step, y: Math.floor(k / cols) * step, width: S, height: S }));
      return { canvas, input: { width: S, height: S }, boxes, rows, cols, rule: `${rows}x${cols} tiles of ${S} px, overlap ${t.overlap}, matched by ${t.match}` };
    }
    const px = t.size;
    if (px === undefined || !Number.isInteger(px) || px < 32) throw new ConfigError(`tile size must be an integer ≥ 32 px (got ${px})`);
    if (sizes.length === 0) throw new ConfigError('native-resolution tiles need the images\' sizes');
    const native = medianSize(sizes);
    // A tile larger than the images would stretch them (one side at a time) instead of cutting them
    // at their native resolution.
    if (px > native.width || px > native.height) {
      throw new ConfigError(`--tile-size ${px} is larger than the batch's images (median ${native.width}x${native.height}): use a tile size of at most ${Math.min(native.width, native.height)} px, or --tiles RxC`);
    }
    const canvas = { width: native.width, height: native.height };
    const step = Math.max(1, px * (1 - t.overlap));
    const cols = Math.max(1, Math.ceil((canvas.width - px) / step - 1e-9) + 1);
    const rows = Math.max(1, Math.ceil((canvas.height - px) / step - 1e-9) + 1);
    if (rows * cols > MAX_TILES) {
      throw new ConfigError(
        `--tile-size ${px} with overlap ${t.overlap} cuts the ${canvas.width}x${canvas.height} images into ${rows}x${cols} = ${rows * cols} tiles each; ` +
          `at most ${MAX_TILES} (as --tiles ${MAX_TILE_SIDE}x${MAX_TILE_SIDE}): use larger tiles or less overlap`,
      );
    }
    const xs = starts(canvas.width, px, cols);
    const ys = starts(canvas.height, px, rows);
    const boxes = ys.flatMap((y) => xs.map((x) => ({ x, y, width: px, height: px })));
    return {
      canvas,
      input: { width: px, height: px },
      boxes,
      rows,
      cols,
      rule: `${rows}x${cols} tiles of ${px} px at the batch's median native size ${native.width}x${native.height}, overlap ≥ ${t.overlap}, matched by ${t.match}`,
    };
  }
  let canvas: Size2D;
  let rule: string;
  if (cfg.imageShape) {
    canvas = cfg.imageShape;
    rule = `fixed ${canvas.width}x${canvas.height}`;
  } else if (cfg.keepAspect) {
    const aspect = batchAspect(sizes);
    canvas = aspect >= 1 ? { width: S, height: roundTo(S / aspect, sizeMultiple) } : { width: roundTo(S * aspect, sizeMultiple), height: S };
    rule = `long side ${S}, aspect ${aspect.toFixed(3)} (median of the batch) -> ${canvas.width}x${canvas.height}`;
  } else {
    canvas = { width: S, height: S };
    rule = `square ${S}x${S} (aspect not kept, as the reference)`;
  }
  return { canvas, input: canvas, boxes: [{ x: 0, y: 0, ...canvas }], rows: 1, cols: 1, rule };
}

/** Whether the geometry needs the images' original sizes before decoding. */
export function needsOriginalSizes(cfg: GeometryConfig & { readonly auto?: boolean }): boolean {
  return !cfg.imageShape && (cfg.auto === true || cfg.keepAspect === true || (cfg.tiles?.size !== undefined && !cfg.tiles.grid));
}

/** Coarse-to-fine scoring: which share of patches is re-scored at which size. */
export interface RefineConfig {
  /** Fraction q of the patches of a mutual-scoring set (highest coarse scores first) re-scored at the fine size. */
  readonly fraction: number;
  /** S of the fine pass (the canvas scaled by imageSize / S). */
  readonly imageSize: number;
  /**
   * Which patches: the top q of the whole set's coarse scores (`set`, default: the budget goes
   * where the set's defects are) or of each image's own (`image`). Measured in BENCHMARKS.md.
   */
  readonly select?: 'image' | 'set';
}

/** The geometry of a batch: its units and, with refinement, the fine canvas. */
export interface BatchGeometry {
  /** Units scored by mutual scoring. */
  readonly coarse: Geometry;
  /** Coarse-to-fine: the whole image at the fine canvas (null without refinement). */
  readonly fine: Geometry | null;
  /** Coarse-to-fine: share of patches re-scored at the fine canvas (0 without refinement). */
  readonly refineFraction: number;
  /** Coarse-to-fine: patches chosen per image or over the set. */
  readonly refineSelect: 'image' | 'set';
  /** Maps, overlays and pixel metrics live at this size. */
  readonly map: Size2D;
  /** How the geometry was chosen, for reports. */
  readonly rule: string;
}

/**
 * The geometry of a batch (see `resolveGeometry`), plus the fine canvas of coarse-to-fine
 * scoring: the coarse canvas scaled by refine.imageSize / imageSize.
 */
export function planBatch(
  cfg: GeometryConfig & { readonly refine?: RefineConfig | null; readonly auto?: boolean; readonly autoRefine?: boolean },
  sizes: readonly Size2D[],
  sizeMultiple = 32,
): BatchGeometry {
  if (cfg.auto && !cfg.imageShape && !cfg.keepAspect && !cfg.tiles && !cfg.refine) return autoPlan(cfg.imageSize, sizes, sizeMultiple, { refine: cfg.autoRefine });
  const coarse = resolveGeometry(cfg, sizes, sizeMultiple);
  const refine = cfg.refine;
  if (!refine) return { coarse, fine: null, refineFraction: 0, refineSelect: 'set', map: coarse.canvas, rule: coarse.rule };
  if (coarse.boxes.length > 1 || cfg.tiles?.size !== undefined) throw new ConfigError('coarse-to-fine refinement (--refine) scores whole images; it does not combine with tiles');
  if (!(refine.fraction > 0 && refine.fraction <= 1)) throw new ConfigError(`refine fraction must be in (0, 1] (got ${refine.fraction})`);
  if (!Number.isInteger(refine.imageSize) || refine.imageSize <= cfg.imageSize) throw new ConfigError(`the refine size must be an integer larger than the image size ${cfg.imageSize} (got ${refine.imageSize})`);
  const k = refine.imageSize / cfg.imageSize;
  const c = coarse.canvas;
  const fineCanvas = { width: roundTo(c.width * k, sizeMultiple), height: roundTo(c.height * k, sizeMultiple) };
  const fine: Geometry = { canvas: fineCanvas, input: fineCanvas, boxes: [{ x: 0, y: 0, ...fineCanvas }], rows: 1, cols: 1, rule: `fine ${fineCanvas.width}x${fineCanvas.height}` };
  const select = refine.select ?? 'set';
  return {
    coarse,
    fine,
    refineFraction: refine.fraction,
    refineSelect: select,
    map: fineCanvas,
    rule: `${coarse.rule}; top ${refine.fraction} of ${select === 'image' ? "each image's" : "the set's"} patches re-scored at ${fineCanvas.width}x${fineCanvas.height}`,
  };
}

/** Thresholds of `--resolution auto` (chosen by measurement, see BENCHMARKS.md "Working size"). */
export const AUTO_RESOLUTION = {
  /** Keep the aspect ratio when the batch's median aspect is at least this far from square. */
  elongated: 1.5,
  /**
   * Fine size of refinement as a multiple of the coarse size: √2 doubles the patch count, so
   * re-scoring the top `fraction` of patches against all fine patches costs 2·q·(√2)⁴ = 0.8×
   * the coarse mutual scoring (a cross job has no pair symmetry to exploit).
   */
  fineScale: Math.SQRT2,
  /** Share of patches re-scored at the fine size. */
  fraction: 0.1,
} as const;

/** Median of the images' short sides (S when there are none). */
function medianShortSide(sizes: readonly Size2D[], S: number): number {
  return sizes.length ? [...sizes].map((s) => Math.min(s.width, s.height)).sort((a, b) => a - b)[sizes.length >> 1] : S;
}

/**
 * `--resolution auto`: from the images' median size and aspect.
 * - elongated batches (aspect ≥ 1.5) keep their aspect at the area of S × S (same patch
 *   count, so the same mutual-scoring cost as the square);
 * - batches whose originals hold more detail than the working size (median short side at
 *   least the fine canvas's short side) are refined: the top 10 % of the set's patches are
 *   re-scored at √2 times the size (about 0.8× the coarse pass's mutual scoring);
 * - otherwise the reference's S × S square.
 * `refine: false` (banks, which store one size) leaves refinement out.
 */
export function autoPlan(S: number, sizes: readonly Size2D[], sizeMultiple = 32, opts: { readonly refine?: boolean } = {}): BatchGeometry {
  const aspect = batchAspect(sizes);
  const short = medianShortSide(sizes, S);
  const elongated = Math.max(aspect, 1 / aspect) >= AUTO_RESOLUTION.elongated;
  // Same area as S x S: sides S·√a and S/√a.
  const long = elongated ? roundTo(S * Math.sqrt(Math.max(aspect, 1 / aspect)), sizeMultiple) : S;
  const fineLong = roundTo(long * AUTO_RESOLUTION.fineScale, sizeMultiple);
  const coarse = planBatch({ imageSize: long, keepAspect: elongated }, sizes, sizeMultiple);
  const fineShort = Math.min(coarse.coarse.canvas.width, coarse.coarse.canvas.height) * (fineLong / long);
  const detailed = opts.refine !== false && fineLong > long && short >= fineShort;
  const plan = detailed ? planBatch({ imageSize: long, keepAspect: elongated, refine: { fraction: AUTO_RESOLUTION.fraction, imageSize: fineLong } }, sizes, sizeMultiple) : coarse;
  const why = [
    `median aspect ${aspect.toFixed(2)}${elongated ? ` ≥ ${AUTO_RESOLUTION.elongated}: aspect kept at the area of ${S}x${S}` : ': square'}`,
    opts.refine === false
      ? 'no refinement (a bank stores one size)'
      : `median short side ${short} px${detailed ? ` ≥ ${Math.round(fineShort)}: top ${AUTO_RESOLUTION.fraction} of patches refined at √2x` : ` < ${Math.round(fineShort)} (the fine size): no refinement`}`,
  ];
  return { ...plan, rule: `auto (${why.join('; ')}): ${plan.rule}` };
}
