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
import { workingSize, type ImageFeatures } from '../pipeline/musc.js';
import { lnamdStack } from '../pipeline/lnamd.js';
import { imageScore, upsampleAccumulate } from '../pipeline/maps.js';
import { intervalBounds, toDistance, type MsmPrecision } from '../pipeline/msm.js';
import { Int8SimilarityKernel, SimilarityKernel } from '../pipeline/similarity-kernel.js';
import { LargestK } from '../pipeline/top-k.js';
import { int8FullRangeIsExact } from '../util/cpu.js';
import { fromHalf, type Bank, type BankSet } from './format.js';

/** Result of scoring images against a bank. */
export interface BankScores {
  /** `[height, width]` anomaly map per image. */
  readonly maps: Float32Array[];
  /** Max of each map. */
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
  /** Kernels to reuse across calls (a scorer keeps them open). */
  readonly kernel?: SimilarityKernel;
  readonly int8Kernel?: Int8SimilarityKernel;
}

const floatViews = new WeakMap<BankSet, Float32Array>();
const int8Views = new WeakMap<BankSet, { codes: Int8Array; levels: number }>();

/** The set's vectors as float32 (decoded once and cached). */
export function bankFloats(set: BankSet): Float32Array {
  if (set.data instanceof Float32Array) return set.data;
  let v = floatViews.get(set);
  if (!v) {
    const d = set.data;
    v = new Float32Array(d.length);
    if (d instanceof Int8Array) {
      const k = set.maxAbs / 127;
      for (let i = 0; i < d.length; i++) v[i] = d[i] * k;
    } else {
      for (let i = 0; i < d.length; i++) v[i] = fromHalf(d[i]);
    }
    floatViews.set(set, v);
  }
  return v;
}

/** The set's int8 reference codes at `levels` (127, or 63 on CPUs whose u8×s8 GEMM can saturate). */
export function bankInt8(set: BankSet, levels: number): Int8Array {
  if (set.data instanceof Int8Array && levels === 127) return set.data;
  const cached = int8Views.get(set);
  if (cached && cached.levels === levels) return cached.codes;
  const src = set.data instanceof Int8Array ? null : bankFloats(set);
  const codes = new Int8Array(set.data.length);
  const scale = set.maxAbs > 0 ? levels / set.maxAbs : 1;
  if (src) for (let i = 0; i < codes.length; i++) codes[i] = Math.round(src[i] * scale);
  else for (let i = 0; i < codes.length; i++) codes[i] = Math.round((set.data[i] * levels) / 127);
  int8Views.set(set, { codes, levels });
  return codes;
}

/**
 * One colour scale for heatmaps of images scored against `bank`, so they compare across
 * images and requests: from half the lowest to the highest raw score of the bank's images.
 */
export function bankHeatScale(bank: Bank): { low: number; high: number } {
  let low = Infinity;
  let high = -Infinity;
  for (const im of bank.images) {
    low = Math.min(low, im.score);
    high = Math.max(high, im.score);
  }
  return { low: 0.5 * low, high };
}

/** The interval of ranks averaged for a bank of `n` images. */
export function bankRanks(bank: Bank): { kMin: number; kMax: number } {
  const n = bank.images.length;
  if (bank.reference === 'good') return { kMin: 0, kMax: 1 };
  // A new image in a batch with the bank's n images has n others: the reference's bounds for n + 1 images.
  return intervalBounds(n + 1, bank.config.interval[0], bank.config.interval[1]);
}

/**
 * RsCIN score of one new image (spec §6.2) against the bank's frozen raw scores and
 * embeddings: only the new image's row of the similarity matrix is needed. Ties keep
 * the image itself first, as `rscin` does.
 */
export function rscinAgainstBank(raw: number, embedding: Float32Array, bank: Bank): number {
  const N = bank.images.length;
  const D = bank.embeddingDim;
  const kList = bank.config.kList.filter((k) => k <= N + 1);
  if (kList.length === 0 || kList.includes(0)) return raw;
  let lo = raw;
  let hi = raw;
  for (const im of bank.images) {
    lo = Math.min(lo, im.score);
    hi = Math.max(hi, im.score);
  }
  const span = hi - lo;
  const norm = (s: number) => (span > 0 ? (s - lo) / span : 0);
  const cosine = bank.config.embeddingSimilarity === 'cosine';
  const unit = (v: Float32Array): Float64Array => {
    let ss = 0;
    for (const x of v) ss += x * x;
    const k = !cosine || ss === 0 ? 1 : 1 / Math.sqrt(ss);
    return Float64Array.from(v, (x) => x * k);
  };
  const q = unit(embedding);
  const sims: { j: number; s: number; n: number }[] = [];
  let self = 0;
  for (let d = 0; d < D; d++) self += q[d] * q[d];
  sims.push({ j: -1, s: self, n: norm(raw) });
  for (let j = 0; j < N; j++) {
    const e = unit(bank.embeddings.subarray(j * D, (j + 1) * D));
    let s = 0;
    for (let d = 0; d < D; d++) s += q[d] * e[d];
    sims.push({ j, s, n: norm(bank.images[j].score) });
  }
  sims.sort((a, b) => b.s - a.s || (a.j === -1 ? -1 : b.j === -1 ? 1 : a.j - b.j));
  let acc = 0;
  for (const k of kList) {
    let num = 0;
    let den = 0;
    for (let t = 0; t < k; t++) {
      num += sims[t].s * sims[t].n;
      den += sims[t].s;
    }
    acc += den !== 0 ? num / den : norm(raw);
  }
  return acc / kList.length;
}

/**
 * Scores `queries` against `bank`. The queries' features must come from the bank's
 * backbone and config (`Musc.open` and `musc score` guarantee it).
 */
export async function scoreAgainstBank(queries: readonly ImageFeatures[], bank: Bank, opts: BankScoreOptions = {}): Promise<BankScores> {
  const N = bank.images.length;
  const size = workingSize(bank.config);
  const precision = opts.precision ?? (bank.encoding === 'int8' ? 'int8' : 'fp32');
  if (queries.length === 0) return { maps: [], imageScores: new Float64Array(0), scores: new Float64Array(0), ...size };
  const minBank = bank.reference === 'good' ? 1 : 4;
  const usable = N - (opts.excludeBankIndex ? 1 : 0);
  if (usable < minBank) throw new ConfigError(`the bank has ${N} images; scoring against it needs at least ${minBank + (opts.excludeBankIndex ? 1 : 0)}`);
  const { kMin, kMax } = opts.excludeBankIndex && bank.reference !== 'good' ? intervalBounds(N, bank.config.interval[0], bank.config.interval[1]) : bankRanks(bank);
  const kernel = precision === 'fp32' ? (opts.kernel ?? (await SimilarityKernel.create({ threads: opts.threads }))) : undefined;
  const int8Kernel = precision === 'int8' ? (opts.int8Kernel ?? (await Int8SimilarityKernel.create({ threads: opts.threads }))) : undefined;
  const levels = int8FullRangeIsExact() ? 127 : 63;
  const maps = queries.map(() => new Float32Array(size.width * size.height));
  const nMaps = bank.sets.length;
  try {
    for (const set of bank.sets) {
      const { patches: P, channels: C } = set;
      const li = bank.config.layers.indexOf(set.layer);
      for (const q of queries) {
        const g = q.layers[li];
        if (!g || g.channels !== C || g.height * g.width !== P) {
          throw new ConfigError(`image ${q.file} has ${g?.channels}x${g ? g.height * g.width : 0} features for layer ${set.layer}; the bank holds ${C}x${P}: was it built with another backbone or image size?`);
        }
      }
      const zq = lnamdStack(queries.map((q) => q.layers[li]), set.r);
      const best = new LargestK(queries.length * P, kMax);
      const group = Math.max(1, Math.min(queries.length, Math.floor(1568 / P)));
      const refChunk = Math.max(1, Math.floor(Math.max(P, 1568) / P));
      let ref: Float32Array | Int8Array;
      let qCodes: Uint8Array | null = null;
      let factor = 1;
      if (int8Kernel) {
        // The batch's quantisation: one scale from the largest component of bank and queries.
        // When a query exceeds the bank's range, float banks are requantised at that scale (the
        // batch's codes exactly); int8 banks keep their codes (requantising codes adds error).
        let qMax = 0;
        for (const v of zq) qMax = Math.max(qMax, Math.abs(v));
        const m = Math.max(set.maxAbs, qMax);
        const scaleA = m > 0 ? 127 / m : 1;
        let scaleB = set.maxAbs > 0 ? levels / set.maxAbs : 1;
        if (qMax > set.maxAbs && !(set.data instanceof Int8Array)) {
          scaleB = levels / m;
          const f = bankFloats(set);
          const codes = new Int8Array(f.length);
          for (let i = 0; i < f.length; i++) codes[i] = Math.round(f[i] * scaleB);
          ref = codes;
        } else {
          ref = bankInt8(set, levels);
        }
        qCodes = new Uint8Array(zq.length);
        for (let i = 0; i < zq.length; i++) qCodes[i] = Math.round(zq[i] * scaleA) + 128;
        factor = 1 / (scaleA * scaleB);
      } else {
        ref = bankFloats(set);
      }
      for (let i0 = 0; i0 < queries.length; i0 += group) {
        const i1 = Math.min(queries.length, i0 + group);
        const I = i1 - i0;
        for (let j0 = 0; j0 < N; j0 += refChunk) {
          opts.signal?.throwIfAborted();
          const j1 = Math.min(N, j0 + refChunk);
          const J = j1 - j0;
          const dims = { I, P, J, Q: P, C };
          const { rowMax } = int8Kernel
            ? await int8Kernel.blockMax(qCodes!.subarray(i0 * P * C, i1 * P * C), (ref as Int8Array).subarray(j0 * P * C, j1 * P * C), dims)
            : await kernel!.blockMax(zq.subarray(i0 * P * C, i1 * P * C), (ref as Float32Array).subarray(j0 * P * C, j1 * P * C), dims);
          for (let ii = 0; ii < I; ii++) {
            const skip = opts.excludeBankIndex?.[i0 + ii] ?? -1;
            for (let p = 0; p < P; p++) {
              const row = (i0 + ii) * P + p;
              const src = (ii * P + p) * J;
              for (let jj = 0; jj < J; jj++) if (j0 + jj !== skip) best.push(row, rowMax[src + jj] * factor);
            }
          }
        }
      }
      const scores = best.meanOfRanks(kMin, kMax, toDistance);
      queries.forEach((_, n) => upsampleAccumulate(scores.subarray(n * P, (n + 1) * P), set.gridHeight, set.gridWidth, size, maps[n], 1 / nMaps));
    }
  } finally {
    if (!opts.kernel) await kernel?.dispose();
    if (!opts.int8Kernel) await int8Kernel?.dispose();
  }
  const imageScores = Float64Array.from(maps, imageScore);
  const scores = bank.reference === 'good' ? Float64Array.from(imageScores) : Float64Array.from(queries, (q, i) => rscinAgainstBank(imageScores[i], q.embedding, bank));
  return { maps, imageScores, scores, ...size };
}
