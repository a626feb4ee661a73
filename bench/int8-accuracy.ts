/**
 * int8 vs fp32 mutual scoring on identical real features, stage by stage: for every
 * (layer, r) of the default config, the per-(layer, r) anomaly maps of all images in
 * fp32, in int8 (distances from the quantised vectors' own norms, each GEMM side with its own
 * dither: the default), with one dither shared by both sides, without dither, and in
 * the former int8 arithmetic (√(2 − 2·qa·qb/s²), emulated here for comparison).
 * Reports max and mean |int8 − fp32| as a fraction of the fp32 map range.
 *
 *   node dist/bench/int8-accuracy.js [category-dir]   (default ../shared/data/mvtec_ad/bottle)
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createResNet50Backbone } from '../src/backbone/backbone.js';
import { readCategory } from '../src/eval.js';
import { int8Operands, int8Side, type GemmOperands } from '../src/pipeline/gemm-operands.js';
import { channelDither, int8Scale, maxAbs } from '../src/pipeline/quantize.js';
import { lnamdStack } from '../src/pipeline/lnamd.js';
import { upsampleBilinear } from '../src/pipeline/maps.js';
import { intervalBounds, mutualScores, selfOperands, toDistance } from '../src/pipeline/msm.js';
import { extractFeatures, resolveConfig } from '../src/pipeline/musc.js';
import { selfBestMatches } from '../src/pipeline/pairwise.js';
import { SimilarityKernel } from '../src/pipeline/similarity-kernel.js';
import { LargestK } from '../src/pipeline/top-k.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const dir = process.argv[2] ?? resolve(here, '../../../shared/data/mvtec_ad/bottle');
const cfg = resolveConfig({ precision: 'fp32' });
const backbone = await createResNet50Backbone({ layers: cfg.layers });
const ds = await readCategory(dir);
const { features, geometry } = await extractFeatures(ds.items.map((i) => i.imagePath), backbone, cfg);
await backbone.dispose();
const N = features.length;
const size = geometry.map;
const kernel = await SimilarityKernel.create({ precision: 'int8' });

/** The former int8 arithmetic: similarity = qa·qb / s², no norm channels. */
async function formerInt8(z: Float32Array, P: number, C: number): Promise<Float32Array> {
  const ops = await selfOperands(z, C, 'int8', 127, false);
  // Strip the norm channels: codes only, similarity = v · factor.
  const W = ops.channels;
  const rows = z.length / C;
  const query = new Uint8Array(rows * C);
  const reference = new Int8Array(rows * C);
  for (let r = 0; r < rows; r++) {
    query.set((ops.query as Uint8Array).subarray(r * W, r * W + C), r * C);
    reference.set((ops.reference as Int8Array).subarray(r * W, r * W + C), r * C);
  }
  const former: GemmOperands = { precision: 'int8', channels: C, query, reference, center: 1 / ops.factor, factor: ops.factor, ditherNorm: 0, noiseBias: 0 };
  const { kMin, kMax } = intervalBounds(N);
  const best = new LargestK(N * P, kMax);
  await selfBestMatches(kernel, former, { units: N, patches: P }, best);
  return best.meanOfRanks(kMin, kMax, toDistance);
}

/** The previous default: both sides rounded with the same channel dither (its mean noise removed). */
async function sharedDither(z: Float32Array, P: number, C: number): Promise<Float32Array> {
  const scale = int8Scale(maxAbs(z), 127);
  const ops = int8Operands(int8Side(z, scale, 127, channelDither(C)), int8Side(z, scale, 127, channelDither(C)), C);
  const { kMin, kMax } = intervalBounds(N);
  const best = new LargestK(N * P, kMax);
  await selfBestMatches(kernel, ops, { units: N, patches: P }, best);
  return best.meanOfRanks(kMin, kMax, toDistance);
}

const rows: Record<string, unknown>[] = [];
for (let l = 0; l < cfg.layers.length; l++) {
  const g = features[0].units[0][l];
  const P = g.height * g.width;
  const C = g.channels;
  for (const r of cfg.rList) {
    const z = lnamdStack(features.map((f) => f.units[0][l]), r);
    const fp32 = await mutualScores(z, { N, P, C }, { precision: 'fp32' });
    const int8 = await mutualScores(z, { N, P, C }, { precision: 'int8', kernel });
    const plain = await mutualScores(z, { N, P, C }, { precision: 'int8', kernel, int8Dither: false });
    const shared = await sharedDither(z, P, C);
    const old = await formerInt8(z, P, C);
    // "The map range": max − min of the fp32 maps of this (layer, r) over the whole category.
    const stat = (s: Float32Array) => {
      let max = 0;
      let sum = 0;
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = 0; i < N; i++) {
        const a = upsampleBilinear(fp32.subarray(i * P, (i + 1) * P), g.height, g.width, size);
        const b = upsampleBilinear(s.subarray(i * P, (i + 1) * P), g.height, g.width, size);
        for (let k = 0; k < a.length; k++) {
          lo = Math.min(lo, a[k]);
          hi = Math.max(hi, a[k]);
          const d = Math.abs(a[k] - b[k]);
          max = Math.max(max, d);
          sum += d;
        }
      }
      return { maxOfRange: max / (hi - lo), meanOfRange: sum / (N * size.width * size.height) / (hi - lo) };
    };
    const now = stat(int8);
    const noDither = stat(plain);
    const oneDither = stat(shared);
    const before = stat(old);
    rows.push({ layer: cfg.layers[l], r, int8: now, int8SharedDither: oneDither, int8WithoutDither: noDither, formerInt8: before });
    const pc = (x: { maxOfRange: number; meanOfRange: number }) => `max ${(100 * x.maxOfRange).toFixed(3)} % / mean ${(100 * x.meanOfRange).toFixed(4)} %`;
    process.stderr.write(`${cfg.layers[l]} r=${r} (of the map range): int8 ${pc(now)}; one shared dither ${pc(oneDither)}; without dither ${pc(noDither)}; former int8 ${pc(before)}\n`);
  }
}
await kernel.dispose();
process.stdout.write(`${JSON.stringify({ category: dir, n: N, rows })}\n`);
