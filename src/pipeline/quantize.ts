/**
 * The one int8 quantiser of musc-ts (mutual scoring, banks): symmetric codes
 * round(z · scale) clamped to ±levels, with scale = levels / max |z| of the set.
 * Hand-written: a loop, but the single place where rounding and clamping are decided.
 */

/** Largest |value| of an array (0 for an empty or all-zero array). */
export function maxAbs(z: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < z.length; i++) {
    const a = Math.abs(z[i]);
    if (a > m) m = a;
  }
  return m;
}

/** The scale that maps ±`range` to ±`levels` (1 for an all-zero set). */
export function int8Scale(range: number, levels: number): number {
  return range > 0 ? levels / range : 1;
}

/**
 * The reference side's fixed dither per channel (also that of a bank's stored int8 codes),
 * d_c = frac((c + 1)·φ) − ½ (golden-ratio sequence: evenly
 * spread in [−½, ½) over any subset of channels). Codes are round(z·scale + d_c) and
 * stand for (code − d_c)/scale. Why: in a LayerNorm'd ReLU map most channels of a
 * vector share one value; without dither they all round the same way and their errors
 * add up coherently in every inner product; with it they round independently.
 */
export function channelDither(channels: number): Float64Array {
  let d = dithers.get(channels);
  if (!d) {
    const phi = (Math.sqrt(5) - 1) / 2;
    d = Float64Array.from({ length: channels }, (_, c) => (((c + 1) * phi) % 1) - 0.5);
    dithers.set(channels, d);
  }
  return d;
}
/** One shared (read-only by convention) pattern per width and side, so operands can be checked to agree by identity. */
const dithers = new Map<number, Float64Array>();
const queryDithers = new Map<number, Float64Array>();

/**
 * The query side's dither, e_c = frac((c + 1)·(√2 − 1)) − ½: a second sequence, jointly
 * equidistributed with `channelDither`'s (1, φ and √2 are rationally independent), so the
 * two sides of a GEMM round independently. Why: with one dither on both sides, two vectors
 * with nearly equal components round alike, and the squared quantisation noise of a pair
 * shrinks from its mean C/12·(1/sa² + 1/sb²) towards 0 as the pair gets closer; removing
 * the mean then over-corrects exactly the nearest neighbours mutual scoring keeps (measured
 * on bottle: maps up to 2.8 % of their range too low). With independent sides the noise of
 * every pair has that mean, whatever the distance (max error 0.2–0.9 %).
 */
export function queryDither(channels: number): Float64Array {
  let d = queryDithers.get(channels);
  if (!d) {
    const alpha = Math.SQRT2 - 1;
    d = Float64Array.from({ length: channels }, (_, c) => (((c + 1) * alpha) % 1) - 0.5);
    queryDithers.set(channels, d);
  }
  return d;
}

/**
 * round(y) clamped to ±levels. floor(y + ½) equals Math.round(y) for every finite y but
 * 0.49999999999999994 (where y + ½ rounds up to 1); in the quantiser's loop it measured 10 %
 * faster int8 mutual scoring than the Math.round builtin (N = 100: 14.1 s vs 15.8 s).
 */
function clampedRound(y: number, levels: number): number {
  const q = Math.floor(y + 0.5);
  return q > levels ? levels : q < -levels ? -levels : q;
}

/**
 * Symmetric int8 codes of rows of `channels` values: round(z · scale + d_c), clamped to
 * ±levels (values added to a set after its scale was fixed may exceed it; the error is
 * then at most their excess). Without `dither`, d = 0.
 */
export function quantizeSymmetric(z: ArrayLike<number>, scale: number, levels: number, out = new Int8Array(z.length), dither?: Float64Array): Int8Array {
  if (out.length !== z.length) throw new RangeError(`quantize: out has ${out.length} elements, need ${z.length}`);
  const C = dither?.length ?? 1;
  if (z.length % C !== 0) throw new RangeError(`quantize: ${z.length} values are not rows of ${C} channels`);
  // Row by row, so the channel index needs no modulo, and one loop per case so the hot loop has
  // no branch on the dither (this runs over every vector of a set).
  if (!dither) {
    for (let i = 0; i < z.length; i++) out[i] = clampedRound(z[i] * scale, levels);
    return out;
  }
  for (let i = 0; i < z.length; i += C) {
    for (let c = 0; c < C; c++) out[i + c] = clampedRound(z[i + c] * scale + dither[c], levels);
  }
  return out;
}

/** Codes of one GEMM side and its rows' norm terms (see `normTermsInto`). */
export interface CodesWithNorms {
  readonly codes: Int8Array;
  readonly sumSq: Float64Array;
  readonly cross: Float64Array;
}

/**
 * The norm terms the int8 GEMM's norm channels need for row `r` of codes `[rows, C]` with dither
 * d (C = d.length), against the other side's dither e: ‖q − d‖² into `sumSq[r]` and q·e into
 * `cross[r]`, summed over c in order. For codes that come without them (a bank's stored codes).
 * `quantizeWithNorms` and `quantizeBothSides` sum the same terms in the same order inside their
 * quantising loops (a second loop over the codes measured 12–24 % slower there), so codes
 * quantised here and codes read from a bank give the same bits.
 */
export function normTermsInto(codes: Int8Array, r: number, dither: Float64Array, otherDither: Float64Array, out: { sumSq: Float64Array; cross: Float64Array }): void {
  const C = dither.length;
  const o = r * C;
  let ss = 0;
  let qe = 0;
  for (let c = 0; c < C; c++) {
    const q = codes[o + c];
    const e = q - dither[c];
    ss += e * e;
    qe += q * otherDither[c];
  }
  out.sumSq[r] = ss;
  out.cross[r] = qe;
}

/** How one GEMM side is quantised: codes round(z · scale + dither_c) within ±levels, norm terms against `otherDither`. */
export interface SideSpec {
  readonly scale: number;
  readonly levels: number;
  readonly dither: Float64Array;
  readonly otherDither: Float64Array;
}

/** Codes and norm terms of `rows` rows of `C` channels (zeros), in memory `shared` between threads or not. */
export function allocateCodesWithNorms(rows: number, C: number, shared = false): CodesWithNorms {
  const bytes = (n: number) => (shared ? new SharedArrayBuffer(n) : new ArrayBuffer(n));
  return { codes: new Int8Array(bytes(rows * C)), sumSq: new Float64Array(bytes(rows * 8)), cross: new Float64Array(bytes(rows * 8)) };
}

/**
 * The quantising loop of one side for rows [r0, r1) of `z` into `out` (rows at the same
 * indices): codes and, per row, ‖q − d‖² and q·e summed over c in order. Rows are independent,
 * so any split of the rows (e.g. over worker threads) gives the same bits.
 */
export function quantizeRowsWithNorms(z: ArrayLike<number>, r0: number, r1: number, side: SideSpec, out: CodesWithNorms): void {
  const { scale, levels, dither, otherDither } = side;
  const C = dither.length;
  const { codes, sumSq, cross } = out;
  for (let r = r0, i = r0 * C; r < r1; r++, i += C) {
    let ss = 0;
    let qe = 0;
    for (let c = 0; c < C; c++) {
      const q = clampedRound(z[i + c] * scale + dither[c], levels);
      codes[i + c] = q;
      const e = q - dither[c];
      ss += e * e;
      qe += q * otherDither[c];
    }
    sumSq[r] = ss;
    cross[r] = qe;
  }
}

/**
 * Both sides of a self job (each side's `otherDither` the other's dither) for rows [r0, r1)
 * from one read of `z`: value for value what {@link quantizeRowsWithNorms} gives each side.
 */
export function quantizeRowsBothSides(z: ArrayLike<number>, r0: number, r1: number, sideA: SideSpec, sideB: SideSpec, a: CodesWithNorms, b: CodesWithNorms): void {
  const { scale: sa, levels: la, dither: da } = sideA;
  const { scale: sb, levels: lb, dither: db } = sideB;
  const C = da.length;
  for (let r = r0, i = r0 * C; r < r1; r++, i += C) {
    let ssa = 0;
    let qea = 0;
    let ssb = 0;
    let qeb = 0;
    for (let c = 0; c < C; c++) {
      const v = z[i + c];
      const qa = clampedRound(v * sa + da[c], la);
      const qb = clampedRound(v * sb + db[c], lb);
      a.codes[i + c] = qa;
      b.codes[i + c] = qb;
      const ea = qa - da[c];
      const eb = qb - db[c];
      ssa += ea * ea;
      qea += qa * db[c];
      ssb += eb * eb;
      qeb += qb * da[c];
    }
    a.sumSq[r] = ssa;
    a.cross[r] = qea;
    b.sumSq[r] = ssb;
    b.cross[r] = qeb;
  }
}

/** Rows of `C` channels in `z`, checking that each side's dithers have C entries. */
export function rowsOfSides(z: ArrayLike<number>, sides: readonly SideSpec[]): number {
  const C = sides[0].dither.length;
  if (z.length % C !== 0 || sides.some((s) => s.dither.length !== C || s.otherDither.length !== C)) throw new RangeError(`quantize: ${z.length} values are not rows of ${C} channels`);
  return z.length / C;
}

/**
 * Both sides of a self job's int8 GEMM from one read of `z`: `quantizeWithNorms(z, sa, la, da, db)`
 * and `quantizeWithNorms(z, sb, lb, db, da)`, value for value, in one pass over the set.
 */
export function quantizeBothSides(z: ArrayLike<number>, sa: number, la: number, da: Float64Array, sb: number, lb: number, db: Float64Array): [CodesWithNorms, CodesWithNorms] {
  const sides = [{ scale: sa, levels: la, dither: da, otherDither: db }, { scale: sb, levels: lb, dither: db, otherDither: da }] as const;
  const rows = rowsOfSides(z, sides);
  const [a, b] = [allocateCodesWithNorms(rows, da.length), allocateCodesWithNorms(rows, da.length)];
  quantizeRowsBothSides(z, 0, rows, sides[0], sides[1], a, b);
  return [a, b];
}

/**
 * `quantizeSymmetric` with a dither, plus what the int8 GEMM's norm channels need, in the same
 * pass over the codes (gemm-operands.ts): per row, ‖q − d‖² and q·e for the other side's dither e.
 * The codes are those of `quantizeSymmetric`; the sums run over c in order, as a separate pass would.
 */
export function quantizeWithNorms(z: ArrayLike<number>, scale: number, levels: number, dither: Float64Array, otherDither: Float64Array): CodesWithNorms {
  const side = { scale, levels, dither, otherDither };
  const out = allocateCodesWithNorms(rowsOfSides(z, [side]), dither.length);
  quantizeRowsWithNorms(z, 0, out.sumSq.length, side, out);
  return out;
}
