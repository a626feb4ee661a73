/**
 * Building and updating feature banks from backbone features (the same LNAMD unit
 * patch vectors mutual scoring uses, per (layer, r)).
 */
import { basename } from 'node:path';
import { ConfigError } from '../errors.js';
import { lnamdStackWithRange } from '../pipeline/lnamd.js';
import { lnamdStackParallel, unshared, WorkerPool } from '../pipeline/parallel.js';
import { MIN_IMAGES } from '../pipeline/msm.js';
import { imageScoresOf, typicalMap } from '../pipeline/maps.js';
import { channelDither, int8Scale, quantizeSymmetric } from '../pipeline/quantize.js';
import { scoreFeatures, type ImageFeatures, type MuscConfig } from '../pipeline/musc.js';
import type { BatchGeometry } from '../pipeline/geometry.js';
import type { FeatureGrid } from '../tensor.js';
import { chooseThreshold, type ThresholdRule } from '../outputs/thresholds.js';
import { BankError, formatVersion, toHalf, unitsPerImage, type Bank, type BankBackbone, type BankConfig, type BankEncoding, type BankImage, type BankReference, type BankSet } from './format.js';
import { heatScaleOfMaps, scoreAgainstBank } from './score.js';

/** Options of `buildBank`. */
export interface BuildBankOptions {
  readonly backbone: BankBackbone;
  /** `unlabeled` (default): zero-shot MuSc against the bank; `good`: few-shot nearest-neighbour against known-good images. */
  readonly reference?: BankReference;
  /** Storage of patch vectors (default int8: one byte per value, one scale per (layer, r)). */
  readonly encoding?: BankEncoding;
  /** Decision rule applied to the bank's own scores (default: Otsu for unlabeled banks, median + 3·MAD for good ones). */
  readonly threshold?: ThresholdRule;
  readonly threads?: number;
  readonly signal?: AbortSignal;
}

function bankConfig(cfg: MuscConfig, geometry: BatchGeometry): BankConfig {
  return {
    imageSize: cfg.imageSize,
    geometry,
    ...(geometry.coarse.boxes.length > 1 ? { tileMatch: cfg.tiles?.match ?? 'position', stitching: 'blend' as const } : {}),
    layers: [...cfg.layers],
    rList: [...cfg.rList],
    interval: [cfg.interval[0], cfg.interval[1]],
    kList: [...cfg.kList],
    embeddingSimilarity: cfg.embeddingSimilarity,
    imageScore: cfg.imageScore,
  };
}

function encode(z: Float32Array, encoding: BankEncoding, range: number, channels: number, dither: boolean): Int8Array | Uint16Array | Float32Array {
  // fp32 banks keep the vectors themselves: out of shared memory (LNAMD's worker threads write there), like every other bank array.
  if (encoding === 'fp32') return unshared(z);
  if (encoding === 'fp16') {
    const out = new Uint16Array(z.length);
    for (let i = 0; i < z.length; i++) out[i] = toHalf(z[i]);
    return out;
  }
  // The batch's reference codes (127 levels at the set's range): vectors added later are clamped.
  return quantizeSymmetric(z, int8Scale(range, 127), 127, undefined, dither ? channelDither(channels) : undefined);
}

/** Each image's units' grids of layer `li`, image-major (T units per image): what a bank set stores, `[n·T, P, C]` after LNAMD. */
function layerGrids(features: readonly ImageFeatures[], li: number): FeatureGrid[] {
  return features.flatMap((f) => f.units.map((u) => u[li]));
}

/** The bank set of one (layer, r) from its LNAMD unit vectors `z` (`[n·T, P, C]`, image-major; largest |component| `range`). */
function bankSet(features: readonly ImageFeatures[], cfg: MuscConfig, li: number, r: number, z: Float32Array, range: number, encoding: BankEncoding): BankSet {
  const g0 = features[0].units[0][li];
  const C = g0.channels;
  const int8Dither = encoding === 'int8' ? { int8Dither: true } : {};
  return { layer: cfg.layers[li], r, patches: g0.height * g0.width, channels: C, gridHeight: g0.height, gridWidth: g0.width, maxAbs: range, ...int8Dither, data: encode(z, encoding, range, C, true) };
}

/**
 * What a bank cannot be built with, checked before the model loads (`buildBankFromImages`) and
 * by `buildBank` itself:
 * - refinement: a bank stores one size;
 * - subsets, for unlabeled banks: new images are scored against all the bank's images, so the
 *   bank's own scores (its threshold, RsCIN's reference scores) must be too; scores within
 *   subsets of N/d images have another scale (a measured threshold of 0.46 became 0.69 with two
 *   subsets). Good banks score leave-one-out against the whole bank anyway.
 */
export function checkBankBuild(refines: boolean, divideNum: number, reference: BankReference): void {
  if (refines) throw new ConfigError('banks store whole images or tiles at one size; build the bank without --refine');
  if (reference === 'unlabeled' && divideNum > 1) {
    throw new ConfigError(
      'an unlabeled bank is one reference set: new images are scored against all its images, so its own scores must be too; build it without --divide-num (its cost grows with N² once, at build time)',
    );
  }
}

/**
 * Builds a bank from the features of its reference images. Unlabeled banks score their
 * images against each other (MuSc) so RsCIN and the threshold have the bank's own scores;
 * good banks score each image against the others (leave-one-out nearest neighbour).
 */
export async function buildBank(features: readonly ImageFeatures[], cfg: MuscConfig, opts: BuildBankOptions): Promise<Bank> {
  const reference = opts.reference ?? 'unlabeled';
  const encoding = opts.encoding ?? 'int8';
  const minImages = reference === 'good' ? 2 : MIN_IMAGES;
  if (features.length < minImages) {
    throw new ConfigError(`a ${reference} bank needs at least ${minImages} readable images (got ${features.length})`);
  }
  checkBankBuild(Boolean(features[0].geometry.fine), cfg.divideNum, reference);
  const key = (li: number, r: number) => `${li}:${r}`;
  const stored = new Map<string, BankSet>();
  // An unlabeled bank scores its images first, storing each (layer, r)'s vectors as mutual scoring
  // makes them (LNAMD once, not again for the bank); good banks, which score nothing first, compute
  // them below.
  const own =
    reference === 'unlabeled'
      ? await scoreFeatures(features, cfg, {
          threads: opts.threads,
          signal: opts.signal,
          onVectors: (li, r, z, range) => stored.set(key(li, r), bankSet(features, cfg, li, r, z, range, encoding)),
        })
      : null;
  const sets: BankSet[] = [];
  const workers = cfg.layers.length * cfg.rList.length > stored.size ? WorkerPool.open(opts.threads) : null;
  try {
    for (const li of cfg.layers.keys()) {
      for (const r of cfg.rList) {
        let set = stored.get(key(li, r));
        if (!set) {
          const { z, range } = await lnamdStackParallel(layerGrids(features, li), r, workers);
          set = bankSet(features, cfg, li, r, z, range, encoding);
        }
        sets.push(set);
      }
    }
  } finally {
    await workers?.close();
  }
  const D = features[0].embedding.length;
  const embeddings = new Float32Array(features.length * D);
  features.forEach((f, i) => embeddings.set(f.embedding, i * D));
  const now = new Date().toISOString();
  const config = bankConfig(cfg, features[0].geometry);
  const draft: Bank = {
    version: formatVersion(config),
    createdAt: now,
    updatedAt: now,
    backbone: opts.backbone,
    config,
    reference,
    encoding,
    threshold: { value: NaN, method: 'pending' },
    images: features.map((f) => ({ name: basename(f.file), width: f.originalWidth, height: f.originalHeight, score: 0 })),
    sets,
    embeddings,
    embeddingDim: D,
  };
  let rawScores: ArrayLike<number>;
  let decisionScores: ArrayLike<number>;
  let typical: Float32Array | null;
  let goodMaps: Float32Array[] | null = null;
  if (own) {
    rawScores = own.imageScores;
    decisionScores = own.rscinScores;
    typical = own.typical;
  } else {
    // Each good image against the others, for their maps (scored by the max: the typical map is
    // not known yet); with image score `excess` the typical map is that of these maps.
    const maxView: Bank = { ...draft, config: { ...config, imageScore: 'max' } };
    const res = await scoreAgainstBank(features, maxView, { threads: opts.threads, signal: opts.signal, excludeBankIndex: features.map((_, i) => i) });
    goodMaps = res.maps;
    typical = cfg.imageScore === 'excess' ? typicalMap(res.maps) : null;
    rawScores = imageScoresOf(res.maps, typical);
    decisionScores = rawScores;
  }
  const rule = opts.threshold ?? (reference === 'good' ? { method: 'mad' as const } : { method: 'otsu' as const });
  const t = chooseThreshold(decisionScores, rule);
  return {
    ...draft,
    threshold: { value: t.value, method: t.method },
    images: draft.images.map((im, i) => ({ ...im, score: rawScores[i] })),
    ...(typical ? { typical } : {}),
    heatScale: heatScaleOfMaps(own ? own.maps : goodMaps!),
  };
}

/** Checks that images featurised with `cfg` can be scored against `bank`. */
export function assertCompatible(bank: Bank, cfg: Pick<MuscConfig, 'imageSize' | 'layers' | 'rList'>, backboneId: string): void {
  const diffs: string[] = [];
  if (bank.backbone.id !== backboneId) diffs.push(`backbone ${bank.backbone.id} vs ${backboneId}`);
  if (bank.config.imageSize !== cfg.imageSize) diffs.push(`image size ${bank.config.imageSize} vs ${cfg.imageSize}`);
  if (bank.config.layers.join(',') !== cfg.layers.join(',')) diffs.push(`layers ${bank.config.layers.join(',')} vs ${cfg.layers.join(',')}`);
  if (bank.config.rList.join(',') !== cfg.rList.join(',')) diffs.push(`r list ${bank.config.rList.join(',')} vs ${cfg.rList.join(',')}`);
  if (diffs.length) throw new BankError(`the bank was built with another configuration (${diffs.join('; ')}); score with the bank's settings or rebuild the bank`);
}

/**
 * Adds scored images to the bank (a rolling window: the oldest images leave once
 * there are more than `maxImages`). Returns a new bank; the threshold is kept.
 */
export function appendToBank(bank: Bank, features: readonly ImageFeatures[], rawScores: ArrayLike<number>, maxImages = Infinity): Bank {
  if (features.length === 0) return bank;
  const N = bank.images.length;
  const total = N + features.length;
  const drop = Math.max(0, total - maxImages);
  const keepN = total - drop;
  const sets = bank.sets.map((set) => {
    const li = bank.config.layers.indexOf(set.layer);
    // A few images at a time: this thread.
    const { z } = lnamdStackWithRange(layerGrids(features, li), set.r);
    const added = encode(z, bank.encoding, set.maxAbs, set.channels, set.int8Dither === true);
    const per = unitsPerImage(bank) * set.patches * set.channels;
    const Ctor = set.data.constructor as new (n: number) => Int8Array | Uint16Array | Float32Array;
    const all = new Ctor(keepN * per);
    const old = set.data.subarray(Math.min(N, drop) * per);
    all.set(old as never, 0);
    all.set(added.subarray(Math.max(0, drop - N) * per) as never, old.length);
    return { ...set, data: all };
  });
  const D = bank.embeddingDim;
  const emb = new Float32Array(total * D);
  emb.set(bank.embeddings, 0);
  features.forEach((f, i) => emb.set(f.embedding, (N + i) * D));
  const images: BankImage[] = [
    ...bank.images,
    ...features.map((f, i) => ({ name: basename(f.file), width: f.originalWidth, height: f.originalHeight, score: rawScores[i] })),
  ];
  return { ...bank, updatedAt: new Date().toISOString(), sets, embeddings: emb.slice(drop * D), images: images.slice(drop) };
}
