/**
 * One benchmark configuration in its own process (so peak RSS is its own):
 * backbone over N real images, then mutual scoring of the default config, timed
 * per stage, then the GEMM floor on MSM's own blocks. Prints one JSON line. Used by
 * bench/bench.ts.
 *
 *   node dist/bench/bench-one.js --n 200 --precision fp32 [--baseline] [--max-query-groups k] [--no-floor]
 */
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createResNet50Backbone } from '../src/backbone/backbone.js';
import { lnamd, lnamdStack } from '../src/pipeline/lnamd.js';
import { selfOperands } from '../src/pipeline/msm.js';
import { extractFeatures, resolveConfig, scoreFeatures, type StageTimes } from '../src/pipeline/musc.js';
import { selfBlockPlan } from '../src/pipeline/pairwise.js';
import { SimilarityKernel } from '../src/pipeline/similarity-kernel.js';
import { baselineMutualScores } from './baseline.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const here = fileURLToPath(new URL('.', import.meta.url));
const DATA = resolve(here, '../../../shared/data');

/** Real test images (MVTec bottle, Magnetic Tile), cycled when N exceeds what exists. */
export function benchImages(n: number): string[] {
  const roots = [join(DATA, 'mvtec_ad/bottle/test'), join(DATA, 'magnetic_tile/test'), join(DATA, 'mvtec_ad/bottle/train'), join(DATA, 'magnetic_tile/train')];
  const all: string[] = [];
  for (const r of roots) {
    for (const t of readdirSync(r).sort()) for (const f of readdirSync(join(r, t)).sort()) all.push(join(r, t, f));
  }
  // Interleave the two products so every N mixes them.
  all.sort((a, b) => (a.split('/').pop()! < b.split('/').pop()! ? -1 : 1));
  return Array.from({ length: n }, (_, i) => all[i % all.length]);
}

const n = Number(arg('n') ?? '50');
const precision = (arg('precision') ?? 'fp32') as 'fp32' | 'int8';
const baseline = process.argv.includes('--baseline');
const maxQueryGroups = arg('max-query-groups') ? Number(arg('max-query-groups')) : undefined;
const cfg = resolveConfig({ precision });
const t0 = performance.now();
const backbone = await createResNet50Backbone({ layers: cfg.layers });
const files = benchImages(n);
const tf = performance.now();
const { features, failures } = await extractFeatures(files, backbone, cfg);
const featureSeconds = (performance.now() - tf) / 1000;
await backbone.dispose();
if (failures.length) throw new Error(`unexpected unreadable bench images: ${failures.map((f) => f.file).join(', ')}`);

// FLOPs of MSM with each unordered pair once: sum over (layer, r) of N(N-1)/2 * 2 P^2 C.
let flops = 0;
for (let l = 0; l < cfg.layers.length; l++) {
  const g = features[0].units[0][l];
  flops += cfg.rList.length * ((n * (n - 1)) / 2) * 2 * (g.height * g.width) ** 2 * g.channels;
}

const times: StageTimes = { lnamd: 0, msm: 0, maps: 0, rscin: 0 };
let baselineSeconds: number | null = null;
let baselineMaxAbsDiff: number | null = null;
if (baseline) {
  // Same features, same first (layer, r) = (layer2, r=1) ... all (layer, r): both implementations.
  let tb = 0;
  let diff = 0;
  const { mutualScores } = await import('../src/pipeline/msm.js');
  for (let l = 0; l < cfg.layers.length; l++) {
    const g0 = features[0].units[0][l];
    const P = g0.height * g0.width;
    const C = g0.channels;
    for (const r of cfg.rList) {
      const z = new Float32Array(n * P * C);
      features.forEach((f, i) => lnamd(f.units[0][l], r, z.subarray(i * P * C, (i + 1) * P * C)));
      const t = performance.now();
      const ref = await baselineMutualScores(z, n, P, C);
      tb += performance.now() - t;
      const ours = await mutualScores(z, { N: n, P, C }, { precision: 'fp32' });
      for (let k = 0; k < ref.length; k++) diff = Math.max(diff, Math.abs(ref[k] - ours[k]));
    }
  }
  baselineSeconds = tb / 1000;
  baselineMaxAbsDiff = diff;
}
const ts = performance.now();
await scoreFeatures(features, cfg, { times, maxQueryGroups });
const scoringSeconds = (performance.now() - ts) / 1000;

/**
 * The GEMM floor: the same GEMM blocks MSM runs (same operands, op, shapes, precision and
 * threads, block by block in the same plan), without reductions, top-K or bookkeeping.
 */
async function gemmFloorSeconds(): Promise<number> {
  const kernel = await SimilarityKernel.create({ precision });
  let seconds = 0;
  try {
    for (let l = 0; l < cfg.layers.length; l++) {
      const g = features[0].units[0][l];
      const P = g.height * g.width;
      const C = g.channels;
      for (const r of cfg.rList) {
        const ops = await selfOperands(lnamdStack(features.map((f) => f.units[0][l]), r), C, precision);
        const W = ops.channels;
        let blocks = selfBlockPlan(n, P);
        if (maxQueryGroups !== undefined) {
          const starts = [...new Set(blocks.map((b) => b.q0))].slice(0, maxQueryGroups);
          blocks = blocks.filter((b) => starts.includes(b.q0));
        }
        for (const b of blocks) {
          const a = ops.query.subarray(b.q0 * P * W, b.q1 * P * W);
          const ref = ops.reference.subarray(b.r0 * P * W, b.r1 * P * W);
          const t = performance.now();
          await kernel.gemmOnly(a, ref, { rows: (b.q1 - b.q0) * P, J: b.r1 - b.r0, Q: P, C: W });
          seconds += (performance.now() - t) / 1000;
        }
      }
    }
  } finally {
    await kernel.dispose();
  }
  return seconds;
}
const floorSeconds = process.argv.includes('--no-floor') ? null : await gemmFloorSeconds();
// Model load + decoding + backbone + scoring (the baseline's own run is not part of it).
const endToEnd = (tf - t0) / 1000 + featureSeconds + scoringSeconds;
process.stdout.write(
  `${JSON.stringify({
    n,
    precision,
    featureSeconds,
    backboneMsPerImage: (featureSeconds * 1000) / n,
    msmSeconds: times.msm,
    lnamdSeconds: times.lnamd,
    mapsSeconds: times.maps,
    scoringSeconds,
    endToEndSeconds: endToEnd,
    msmFlops: flops,
    msmGflops: flops / times.msm / 1e9,
    floorSeconds,
    baselineSeconds,
    baselineMaxAbsDiff,
    peakRssMB: process.resourceUsage().maxRSS / 1024,
    partial: maxQueryGroups !== undefined,
  })}\n`,
);
