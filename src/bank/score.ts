/**
 * Scoring new images against a bank: for every patch of a new image, its minimum
 * distance to each bank image (one GEMM block per query group × bank chunk, the row
 * maxima of the same kernels mutual scoring uses), then
 * - `unlabeled` banks: the mean of the smallest ⌊0.3·N⌋ of those N minima, exactly the
 *   rule an image gets in a batch with the bank's N images (MuSc's interval), and RsCIN
 *   against the bank's scores and embeddings;
 * - `good` banks (few-shot): the nearest bank image's minimum, i.e. the distance to the
 *   nearest known-good patch (as memory-bank methods do), no RsCIN.
 * Cost per new image: O(N·P²·C) instead of the O(N²·P²·C) of a full re-run.
 */
import { ConfigError } from '../errors.js';
import type { ImageFeatures } from '../pipeline/musc.js';
import type { Size2D } from '../tensor.js';
import { planBatch, type BatchGeometry, type Box } from '../pipeline/geometry.js';
import { fp32Operands, int8OperandsWith, int8ReferenceOperand, int8Side, type GemmOperands, type Int8Reference, type MsmPrecision } from '../pipeline/gemm-operands.js';
import { lnamdStackWithRange } from '../pipeline/lnamd.js';
import { addTilesIntoMap, imageScore, imageScoresOf, normaliseStitched, tileBlend, type TileBlend } from '../pipeline/maps.js';
import { int8ReferenceLevels, intervalBounds, toDistance } from '../pipeline/msm.js';
import { crossBestMatches } from '../pipeline/pairwise.js';
import { channelDither, int8Scale, quantizeSymmetric, queryDither } from '../pipeline/quantize.js';
import { dot, embeddingRow, minMaxNormalize, ownScoreOnly, rscinRow, usableKList } from '../pipeline/rscin.js';
import { SimilarityKernel } from '../pipeline/similarity-kernel.js';
import { LargestK } from '../pipeline/top-k.js';
import { MIN_BANK_IMAGES, bankStitching, fromHalf, typicalOf, unitsPerImage, type Bank, type BankConfig, type BankSet } from './format.js';

/** Result of scoring images against a bank. */
export interface BankScores {
  /** `[height, width]` anomaly map per image. */
  readonly maps: Float32Array[];
  /** Each map's raw image score under the bank's rule: its max, or its max excess over the bank's typical map. */
  readonly imageScores: Float64Array;
  /** The score decisions use: RsCIN against the bank (unlabeled banks) or the raw score (good banks). */
  readonly scores: Float64Array;
  /** Working size of the maps. */
  readonly width: number;
  readonly height: number;
}

/** Options of `scoreAgainstBank`. */
export interface BankScoreOptions {
  /** GEMM arithmetic (default int8 when the bank is int8-encoded, else fp32). */
  readonly precision?: MsmPrecision;
  readonly threads?: number;
  readonly signal?: AbortSignal;
  /** For scoring the bank's own images: bank index to skip for each query (leave-one-out). */
  readonly excludeBankIndex?: readonly number[];
  /** A kernel of the same precision to reuse across calls (a scorer keeps it open). */
  readonly kernel?: SimilarityKernel;
}

const floatViews = new WeakMap<BankSet, Float32Array>();
const int8Views = new WeakMap<BankSet, { codes: Int8Array; levels: number }>();
const int8References = new WeakMap<BankSet, Int8Reference>();

/** The set's vectors as float32 (decoded once and cached). */
export function bankFloats(set: BankSet): Float32Array {
  if (set.data instanceof Float32Array) return set.data;
  let v = floatViews.get(set);
  if (!v) {
    const d = set.data;
    v = new Float32Array(d.length);
    if (d instanceof Int8Array) {
      const k = set.maxAbs / 127;
      const dither = setDither(set);
      const C = set.channels;
      for (let i = 0; i < d.length; i++) v[i] = (d[i] - (dither ? dither[i % C] : 0)) * k;
    } else {
      for (let i = 0; i < d.length; i++) v[i] = fromHalf(d[i]);
    }
    floatViews.set(set, v);
  }
  return v;
}

/** The channel dither of the set's int8 codes: stored int8 sets as written; float sets are quantised with it. */
function setDither(set: BankSet): Float64Array | null {
  return set.data instanceof Int8Array && !set.int8Dither ? null : channelDither(set.channels);
}

/** The set's int8 reference codes at `levels` (127, or 63 on CPUs whose u8×s8 GEMM can saturate). */
export function bankInt8(set: BankSet, levels: number): Int8Array {
  if (set.data instanceof Int8Array && levels === 127) return set.data;
  const cached = int8Views.get(set);
  if (cached && cached.levels === levels) return cached.codes;
  // Other levels are requantised from the vectors the codes stand for.
  const dither = setDither(set);
  const codes = quantizeSymmetric(bankFloats(set), int8Scale(set.maxAbs, levels), levels, undefined, dither ?? undefined);
  int8Views.set(set, { codes, levels });
  return codes;
}

/** From half the lowest to the highest of some map maxima. */
function heatScaleOfMaxima(maxima: Iterable<number>): { low: number; high: number } {
  let low = Infinity;
  let high = -Infinity;
  for (const top of maxima) {
    low = Math.min(low, top);
    high = Math.max(high, top);
  }
  return { low: 0.5 * low, high };
}

/** The heat scale a bank stores at build: from half the lowest to the highest of its images' map maxima. */
export function heatScaleOfMaps(maps: readonly Float32Array[]): { low: number; high: number } {
  return heatScaleOfMaxima(maps.map(imageScore));
}

/**
 * One colour scale for heatmaps of images scored against `bank`, so they compare across
 * images and requests: the scale the bank stored (`heatScaleOfMaps` of its images' maps), or, in
 * banks written before it (scored by the max, so their raw scores are map maxima), the same
 * range from their raw scores.
 */
export function bankHeatScale(bank: Bank): { low: number; high: number } {
  return bank.heatScale ?? heatScaleOfMaxima(bank.images.map((im) => im.score));
}

/** The interval of ranks averaged for a bank of `n` images. */
export function bankRanks(bank: Bank): { kMin: number; kMax: number } {
  const n = bank.images.length;
  if (bank.reference === 'good') return { kMin: 0, kMax: 1 };
  // A new image in a batch with the bank's n images has n others (n·T units with tiles matched
  // anywhere): the reference's bounds for one more.
  const others = bank.config.tileMatch === 'any' ? n * unitsPerImage(bank) : n;
  return intervalBounds(others + 1, bank.config.interval[0], bank.config.interval[1]);
}

/**
 * RsCIN score of one new image (spec §6.2) against the bank's frozen raw scores and
 * embeddings: only the new image's row of the similarity matrix is needed. Ties keep
 * the image itself first, as `rscin` does.
 */
export function rscinAgainstBank(raw: number, embedding: Float32Array, bank: Bank): number {
  const N = bank.images.length;
  const D = bank.embeddingDim;
  const kList = usableKList(bank.config.kList, N + 1);
  if (kList.length === 0 || kList.includes(0)) return raw;
  // The set is the bank's images followed by the new image (index N).
  const norm = minMaxNormalize([...bank.images.map((im) => im.score), raw]);
  if (ownScoreOnly(kList)) return norm[N];
  const cosine = bank.config.embeddingSimilarity === 'cosine';
  const q = embeddingRow(embedding, cosine);
  const sims = new Float64Array(N + 1);
  for (let j = 0; j < N; j++) sims[j] = dot(q, embeddingRow(bank.embeddings.subarray(j * D, (j + 1) * D), cosine));
  sims[N] = dot(q, q);
  return rscinRow(sims, norm, N, kList);
}

/**
 * GEMM operands of query unit vectors `zq` (largest component `qMax`) against one bank set, in the batch's
 * arithmetic: int8 uses one scale from the largest component of bank and queries.
 * When a query exceeds the bank's range, float banks are requantised at that scale
 * (the batch's codes exactly); int8 banks keep their codes (requantising codes adds error).
 */
function bankOperands(zq: Float32Array, qMax: number, set: BankSet, precision: MsmPrecision): GemmOperands {
  const C = set.channels;
  if (precision === 'fp32') return fp32Operands(zq, bankFloats(set), C);
  const levels = int8ReferenceLevels();
  const range = Math.max(set.maxAbs, qMax);
  const dither = setDither(set);
  // Queries get the query side's own dither (as a batch's), unless the bank's codes have none (old banks).
  const query = int8Side(zq, int8Scale(range, 127), 127, dither ? queryDither(C) : null, dither);
  const requantise = qMax > set.maxAbs && !(set.data instanceof Int8Array);
  const reference = requantise
    ? int8Side(bankFloats(set), int8Scale(range, levels), levels, dither)
    : { codes: bankInt8(set, levels), scale: int8Scale(set.maxAbs, levels), levels, dither };
  // The reference operand (codes + norm channels) is kept per set while queries keep its scale.
  let prepared = requantise ? undefined : int8References.get(set);
  if (prepared && (prepared.queryScale !== query.scale || prepared.levels !== levels)) prepared = undefined;
  for (let queryDigits = prepared?.queryDigits ?? 1; ; queryDigits *= 2) {
    prepared ??= int8ReferenceOperand(reference, C, query.scale, queryDigits, query.dither);
    const ops = int8OperandsWith(query, prepared);
    if (ops) {
      if (!requantise) int8References.set(set, prepared);
      return ops;
    }
    prepared = undefined;
  }
}

/** The geometry new images are cut with for `bank` (banks written before geometries: a square). */
export function bankGeometry(bank: Pick<Bank, 'config'>): BatchGeometry {
  return bank.config.geometry ?? planBatch({ imageSize: bank.config.imageSize }, []);
}

// A bank's config (and so its geometry) never changes: its tiles' blend is computed once, not per request.
const blends = new WeakMap<BankConfig, TileBlend | null>();

function blendOf(bank: Pick<Bank, 'config'>, boxes: readonly Box[], size: Size2D): TileBlend | null {
  if (!blends.has(bank.config)) blends.set(bank.config, tileBlend(boxes, size, bankStitching(bank.config)));
  return blends.get(bank.config)!;
}

const positionSets = new WeakMap<BankSet, BankSet[]>();

/** The bank units of tile position t of every image, as a set of its own (cached, so its operand caches hold). */
function positionSet(set: BankSet, t: number, T: number, N: number): BankSet {
  let all = positionSets.get(set);
  if (!all) {
    const per = set.patches * set.channels;
    all = Array.from({ length: T }, (_, k) => {
      const Ctor = set.data.constructor as new (n: number) => Int8Array | Uint16Array | Float32Array;
      const data = new Ctor(N * per);
      for (let n = 0; n < N; n++) data.set(set.data.subarray((n * T + k) * per, (n * T + k + 1) * per) as never, n * per);
      return { ...set, data };
    });
    positionSets.set(set, all);
  }
  return all[t];
}

/**
 * Scores `queries` against `bank`. The queries' features must come from the bank's
 * backbone, config and geometry (`Musc.open` and `musc score` guarantee it). Tiled banks
 * compare tile t with bank tiles t (`position`) or with every bank tile (`any`).
 */
export async function scoreAgainstBank(queries: readonly ImageFeatures[], bank: Bank, opts: BankScoreOptions = {}): Promise<BankScores> {
  const N = bank.images.length;
  const geometry = bankGeometry(bank);
  const { boxes } = geometry.coarse;
  const T = boxes.length;
  const matchAny = T > 1 && bank.config.tileMatch === 'any';
  const size = geometry.map;
  const precision = opts.precision ?? (bank.encoding === 'int8' ? 'int8' : 'fp32');
  if (queries.length === 0) return { maps: [], imageScores: new Float64Array(0), scores: new Float64Array(0), width: size.width, height: size.height };
  const minBank = MIN_BANK_IMAGES[bank.reference];
  const exclude = opts.excludeBankIndex;
  const usable = N - (exclude ? 1 : 0);
  if (usable < minBank) throw new ConfigError(`the bank has ${N} images; scoring against it needs at least ${minBank + (exclude ? 1 : 0)}`);
  const { kMin, kMax } = exclude && bank.reference !== 'good' ? intervalBounds((N - 1) * (matchAny ? T : 1) + 1, bank.config.interval[0], bank.config.interval[1]) : bankRanks(bank);
  if (opts.kernel && opts.kernel.precision !== precision) throw new RangeError(`scoreAgainstBank: the kernel runs ${opts.kernel.precision}, not ${precision}`);
  const kernel = opts.kernel ?? (await SimilarityKernel.create({ precision, threads: opts.threads }));
  const n = queries.length;
  const maps = queries.map(() => new Float32Array(size.width * size.height));
  const blend = blendOf(bank, boxes, size);
  const nMaps = bank.sets.length;
  try {
    for (const set of bank.sets) {
      const { patches: P, channels: C } = set;
      const li = bank.config.layers.indexOf(set.layer);
      for (const q of queries) {
        const g = q.units[0]?.[li];
        if (q.units.length !== T || !g || g.channels !== C || g.height * g.width !== P) {
          throw new ConfigError(`image ${q.file} has ${q.units.length} units of ${g?.channels}x${g ? g.height * g.width : 0} features for layer ${set.layer}; the bank holds ${T} of ${C}x${P}: was it built with another backbone, image size or tiling?`);
        }
      }
      // Unit scores `[n, T, P]`, image-major like the query units.
      const unitScores = new Float32Array(n * T * P);
      const jobs = matchAny || T === 1 ? [{ tiles: Array.from({ length: T }, (_, t) => t), ref: set, units: N * T }] : Array.from({ length: T }, (_, t) => ({ tiles: [t], ref: positionSet(set, t, T, N), units: N }));
      for (const job of jobs) {
        const k = job.tiles.length;
        const { z: zq, range: qMax } = lnamdStackWithRange(queries.flatMap((q) => job.tiles.map((t) => q.units[t][li])), set.r);
        const rows = n * k * P;
        const best = new LargestK(rows, kMax);
        // Leave-one-out: the rows of query i skip bank image exclude[i].
        const owner = exclude ? Int32Array.from({ length: rows }, (_, row) => exclude[Math.floor(row / (k * P))]) : undefined;
        const refOwner = Int32Array.from({ length: job.units }, (_, u) => Math.floor(u / k));
        await crossBestMatches(kernel, bankOperands(zq, qMax, job.ref, precision), { rows, owner }, { units: job.units, patches: P, owner: refOwner }, best, { signal: opts.signal });
        const scores = best.meanOfRanks(kMin, kMax, toDistance);
        for (let i = 0; i < n; i++) job.tiles.forEach((t, j) => unitScores.set(scores.subarray((i * k + j) * P, (i * k + j + 1) * P), (i * T + t) * P));
      }
      for (let i = 0; i < n; i++) addTilesIntoMap(unitScores.subarray(i * T * P, (i + 1) * T * P), set.gridHeight, set.gridWidth, boxes, blend, size.width, maps[i], 1 / nMaps);
    }
  } finally {
    if (!opts.kernel) await kernel.dispose();
  }
  normaliseStitched(maps, blend);
  const imageScores = imageScoresOf(maps, typicalOf(bank));
  const scores = bank.reference === 'good' ? Float64Array.from(imageScores) : Float64Array.from(queries, (q, i) => rscinAgainstBank(imageScores[i], q.embedding, bank));
  return { maps, imageScores, scores, width: size.width, height: size.height };
}
