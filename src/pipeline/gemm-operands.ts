/**
 * The two sides of mutual scoring's GEMM, in the arithmetic the kernel runs, and
 * how a kernel value becomes a similarity s = 1 − ‖a − b‖²/2 (for unit vectors the
 * inner product; √(2 − 2s) is then the Euclidean distance the reference uses).
 *
 * - fp32: the unit vectors themselves; s is the kernel's value.
 * - int8: symmetric codes qa = round(a·sa) (query, uint8 = code + 128) and
 *   qb = round(b·sb) (reference). Quantised vectors are not unit vectors: with one
 *   scale per set, channels that share one value (half of a LayerNorm'd ReLU map)
 *   round alike and ‖qa‖²/sa² drifts to 0.95–1.04, so √(2 − 2·qa·qb/(sa·sb)) is off
 *   by up to several % of the map range. The distance is therefore taken from the
 *   quantised vectors' own norms:
 *       (sa·sb/2)·‖qa/sa − qb/sb‖² = ha + hb − qa·qb,  ha = ‖qa‖²·sb/(2sa), hb = ‖qb‖²·sa/(2sb).
 *   Max-reductions need the per-vector terms inside the GEMM, so they ride along as
 *   a few extra channels: the query side carries integer digits of −(ha − Ha) against
 *   constant reference channels, the reference side digits of −(hb − Hb) against
 *   constant query channels (Ha, Hb: centres, so 1–2 digit channels per side cover
 *   the spread). The kernel's exact int32 value is then v = qa·qb − (ha − Ha) − (hb − Hb),
 *   its row/column maxima are the nearest neighbours by quantised distance, and
 *   s = 1 − (Ha + Hb − v)/(sa·sb). ha and hb are rounded to integers (error ≤ 1/(sa·sb)
 *   in s, ~1e-5). The result depends only on the two vectors' codes and the scales,
 *   so a bank and a batch with the same codes give bit-identical scores.
 * - Dither: each side rounds with its own per-channel dither (query e, reference d;
 *   quantize.ts), codes standing for (qa − e)/sa and (qb − d)/sb; expanding their
 *   distance adds qa·d to ha, qb·e to hb and the constant −e·d (`ditherNorm`). Independent
 *   rounding on the two sides makes the squared noise of every pair C/12·(1/sa² + 1/sb²)
 *   on average (`noiseBias` removes it); with one dither shared by both sides close
 *   pairs round alike and that correction overshoots exactly the nearest neighbours.
 */
import { unshared } from './parallel.js';
import { normTermsInto, quantizeSymmetric, quantizeWithNorms, type CodesWithNorms, type SideSpec } from './quantize.js';

/** Arithmetic of the pairwise similarity GEMMs. */
export type MsmPrecision = 'fp32' | 'int8';

/** Query and reference rows ready for `SimilarityKernel`, with the map back to similarities. */
export interface GemmOperands {
  readonly precision: MsmPrecision;
  /** Columns of both sides (C, plus the int8 norm channels). */
  readonly channels: number;
  /** Query rows `[queryRows, channels]`: float32, or uint8 = int8 code + 128. */
  readonly query: Float32Array | Uint8Array;
  /** Reference rows `[referenceRows, channels]`: float32 or int8. */
  readonly reference: Float32Array | Int8Array;
  /** int8: Ha + Hb (integer; 0 for fp32). */
  readonly center: number;
  /** int8: e·d of the two sides' dithers (0 without dither or for fp32). */
  readonly ditherNorm: number;
  /**
   * int8 with dither: half the expected squared quantisation noise of a pair, C/24·(1/sa² + 1/sb²),
   * added back to similarities (0 otherwise). With a subtractive dither the rounding error
   * of each component is uniform on ±½ step and independent of the signal, and with each side
   * its own dither independent between the sides, so it inflates every squared distance by
   * C/12·(1/sa² + 1/sb²) on average: a bias, removed here.
   */
  readonly noiseBias: number;
  /** int8: 1/(sa·sb) (0 for fp32). */
  readonly factor: number;
}

/** Similarity 1 − d²/2 of one kernel value (see the module comment). */
export function similarityOf(ops: Pick<GemmOperands, 'precision' | 'center' | 'factor' | 'ditherNorm' | 'noiseBias'>, v: number): number {
  // (center − v) is an exact integer, so the result depends on the pair's codes and scales alone.
  return ops.precision === 'fp32' ? v : 1 - (ops.center - v - ops.ditherNorm) * ops.factor + ops.noiseBias;
}

/**
 * fp32 operands: the unit vectors as they are (no copy), except vectors in shared memory (LNAMD's
 * worker threads write there), which ONNX Runtime refuses ("Invalid argument"): copied once.
 */
export function fp32Operands(query: Float32Array, reference: Float32Array, channels: number): GemmOperands {
  const ref = unshared(reference);
  return { precision: 'fp32', channels, query: query === reference ? ref : unshared(query), reference: ref, center: 0, factor: 0, ditherNorm: 0, noiseBias: 0 };
}

/**
 * One side of an int8 GEMM: codes `[rows, C]` = round(z · scale + d_c), |code| ≤ levels,
 * standing for (code − d_c)/scale; `dither` null means d = 0 (see quantize.ts).
 */
export interface Int8Side {
  readonly codes: Int8Array;
  readonly scale: number;
  readonly levels: number;
  readonly dither: Float64Array | null;
  /** Per row ‖q − d‖² and q·e, computed with the codes for the other side's dither e (else on demand). */
  readonly norms?: { readonly otherDither: Float64Array; readonly sumSq: Float64Array; readonly cross: Float64Array };
}

/**
 * Quantises unit vectors `[rows, C]` for one side of the int8 GEMM.
 * @param otherDither the other side's dither, when known: the norm terms are then summed in the quantising pass
 */
export function int8Side(z: Float32Array, scale: number, levels: number, dither: Float64Array | null, otherDither?: Float64Array | null): Int8Side {
  if (dither && otherDither) {
    const { codes, sumSq, cross } = quantizeWithNorms(z, scale, levels, dither, otherDither);
    return { codes, scale, levels, dither, norms: { otherDither, sumSq, cross } };
  }
  return { codes: quantizeSymmetric(z, scale, levels, undefined, dither ?? undefined), scale, levels, dither };
}

/** The GEMM side of codes quantised with their norm terms as `side` says (`quantizeWithNorms`, parallel.ts). */
export function int8SideOf(q: CodesWithNorms, side: SideSpec): Int8Side {
  return { codes: q.codes, scale: side.scale, levels: side.levels, dither: side.dither, norms: { otherDither: side.otherDither, sumSq: q.sumSq, cross: q.cross } };
}

/**
 * Per row of codes `[rows, C]` with own dither d and the other side's dither e:
 * round(‖q − d‖² · k/2 + q·e), the row's share of (sa·sb/2)·distance² (the q·e part comes
 * from expanding (qa − e_a)·(qb − d_b)).
 */
function halfNorms(side: Int8Side, C: number, k: number, otherDither: Float64Array | null): Float64Array {
  const { codes, dither, norms } = side;
  const rows = codes.length / C;
  let terms: { sumSq: Float64Array; cross: Float64Array } | undefined = norms && norms.otherDither === otherDither ? norms : undefined;
  if (!terms) {
    // Codes without their terms (a bank's stored codes, undithered sides): the same sums, a missing dither as zeros.
    const zeros = new Float64Array(C);
    terms = { sumSq: new Float64Array(rows), cross: new Float64Array(rows) };
    for (let r = 0; r < rows; r++) normTermsInto(codes, r, dither ?? zeros, otherDither ?? zeros, terms);
  }
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) out[r] = Math.round((terms.sumSq[r] * k) / 2 + terms.cross[r]);
  return out;
}

/** The bytes of `codes` as uint8 = code + 128 (in place: the same buffer, viewed as uint8). */
function flipTopBits(codes: Int8Array): Uint8Array {
  const bytes = new Uint8Array(codes.buffer, codes.byteOffset, codes.length);
  const aligned = codes.byteOffset % 4 === 0;
  const words = aligned ? Math.floor(codes.length / 4) : 0;
  if (words > 0) {
    const w = new Uint32Array(codes.buffer, codes.byteOffset, words);
    for (let i = 0; i < words; i++) w[i] ^= 0x80808080;
  }
  for (let i = words * 4; i < bytes.length; i++) bytes[i] ^= 0x80;
  return bytes;
}

/** Centre of a set of values, and the deviations from it. */
function centred(h: Float64Array): { center: number; dev: Float64Array } {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of h) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const center = h.length ? Math.round((lo + hi) / 2) : 0;
  return { center, dev: Float64Array.from(h, (v) => v - center) };
}

/**
 * Splits each −dev into `fine + unit·Σ coarse`, |fine| ≤ ⌊unit/2⌋, every coarse digit
 * within ±digitMax. Returns the digits `[rows, 1 + m]` and m.
 */
function digits(dev: Float64Array, unit: number, digitMax: number): { d: Int32Array; m: number } {
  let tMax = 0;
  const t = new Float64Array(dev.length);
  for (let r = 0; r < dev.length; r++) {
    t[r] = Math.round(-dev[r] / unit);
    tMax = Math.max(tMax, Math.abs(t[r]));
  }
  const m = Math.ceil(tMax / digitMax);
  const d = new Int32Array(dev.length * (1 + m));
  for (let r = 0; r < dev.length; r++) {
    const o = r * (1 + m);
    d[o] = -dev[r] - unit * t[r];
    let rest = t[r];
    for (let k = 1; k <= m; k++) {
      const q = Math.max(-digitMax, Math.min(digitMax, rest));
      d[o + k] = q;
      rest -= q;
    }
  }
  return { d, m };
}

/**
 * The reference side of an int8 GEMM with its norm channels, for queries quantised at
 * `queryScale`. Reusable for every query batch at that scale whose norm digits fit
 * `queryDigits` (a bank keeps it between calls).
 */
export interface Int8Reference {
  /** `[rows, width]` int8: codes, constants for the query's digit channels, own digits. */
  readonly data: Int8Array;
  readonly rows: number;
  readonly channels: number;
  readonly width: number;
  readonly scale: number;
  readonly levels: number;
  readonly queryScale: number;
  /** Coarse query-digit channels this layout has room for. */
  readonly queryDigits: number;
  /** Hb. */
  readonly center: number;
  readonly dither: Float64Array | null;
  /** The dither of the queries this layout was prepared for (it enters the reference's norm terms). */
  readonly queryDither: Float64Array | null;
}

/**
 * Builds the reference operand (see the module comment).
 * @param queryDigits coarse digit channels to reserve for the query side (at least what it needs)
 */
export function int8ReferenceOperand(reference: Int8Side, channels: number, queryScale: number, queryDigits: number, queryDither: Float64Array | null): Int8Reference {
  const C = channels;
  const { scale: sb, levels: L, codes } = reference;
  const rows = codes.length / C;
  if (!Number.isInteger(rows)) throw new RangeError(`int8 operands: reference codes are not a multiple of ${C} channels`);
  const b = centred(halfNorms(reference, C, queryScale / sb, queryDither));
  // Reference digits of −(hb − Hb) against query constants (1, 127, 127, ...).
  const db = digits(b.dev, 127, L);
  const extraA = 1 + queryDigits;
  const extraB = 1 + db.m;
  const width = C + extraA + extraB;
  const data = new Int8Array(rows * width);
  for (let r = 0; r < rows; r++) {
    const o = r * width;
    data.set(codes.subarray(r * C, (r + 1) * C), o);
    data[o + C] = 1;
    for (let k = 1; k < extraA; k++) data[o + C + k] = L;
    for (let k = 0; k < extraB; k++) data[o + C + extraA + k] = db.d[r * extraB + k];
  }
  return { data, rows, channels: C, width, scale: sb, levels: L, queryScale, queryDigits, center: b.center, dither: reference.dither, queryDither };
}

/** Coarse digit channels the query side needs against a reference of `levels`. */
function queryDigitsOf(query: Int8Side, channels: number, referenceScale: number, levels: number, referenceDither: Float64Array | null): { a: ReturnType<typeof centred>; d: ReturnType<typeof digits> } {
  const a = centred(halfNorms(query, channels, referenceScale / query.scale, referenceDither));
  // Query digits of −(ha − Ha) against reference constants (1, L, L, ...).
  return { a, d: digits(a.dev, levels, 127) };
}

/**
 * int8 operands with norm channels against a prepared reference.
 * @returns null when the query's norm spread needs more digit channels than the reference reserved
 */
export function int8OperandsWith(query: Int8Side, reference: Int8Reference, digitsOfQuery = queryDigitsOf(query, reference.channels, reference.scale, reference.levels, reference.dither)): GemmOperands | null {
  const { channels: C, width: W } = reference;
  if (query.scale !== reference.queryScale) throw new RangeError('int8 operands: the reference was prepared for another query scale');
  if (query.dither !== reference.queryDither) throw new RangeError('int8 operands: the reference was prepared for another query dither');
  const rows = query.codes.length / C;
  if (!Number.isInteger(rows)) throw new RangeError(`int8 operands: query codes are not a multiple of ${C} channels`);
  const { a, d } = digitsOfQuery;
  if (d.m > reference.queryDigits) return null;
  const extraA = 1 + reference.queryDigits;
  // Built as int8 codes (unused digit channels hold 0), then sent as uint8 = code + 128, which is
  // the code's byte with its top bit flipped: one XOR per 4 bytes instead of an add per value.
  const A8 = new Int8Array(rows * W);
  for (let r = 0; r < rows; r++) {
    const o = r * W;
    A8.set(query.codes.subarray(r * C, (r + 1) * C), o);
    for (let k = 0; k <= d.m; k++) A8[o + C + k] = d.d[r * (1 + d.m) + k];
    A8[o + C + extraA] = 1;
    for (let k = C + extraA + 1; k < W; k++) A8[o + k] = 127;
  }
  const A = flipTopBits(A8);
  const qd = query.dither;
  const rd = reference.dither;
  const ditherNorm = qd && rd ? qd.reduce((t, d, c) => t + d * rd[c], 0) : 0;
  const noiseBias = qd && rd ? (C / 24) * (1 / query.scale ** 2 + 1 / reference.scale ** 2) : 0;
  return { precision: 'int8', channels: W, query: A, reference: reference.data, center: a.center + reference.center, factor: 1 / (query.scale * reference.scale), ditherNorm, noiseBias };
}

/**
 * int8 operands with norm channels (see the module comment).
 * @param query query codes (any levels ≤ 127; sent as uint8 = code + 128)
 * @param reference reference codes; their `levels` bound every reference-side value
 *   (63 where the CPU's u8×s8 GEMM could saturate, see util/cpu.ts)
 * @param channels C of both code arrays
 */
export function int8Operands(query: Int8Side, reference: Int8Side, channels: number): GemmOperands {
  const q = queryDigitsOf(query, channels, reference.scale, reference.levels, reference.dither);
  return int8OperandsWith(query, int8ReferenceOperand(reference, channels, query.scale, q.d.m, query.dither), q)!;
}
