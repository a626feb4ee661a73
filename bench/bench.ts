/**
 * `npm run bench`: mutual-scoring speed against the machine's GEMM floor, measured
 * side by side in one run.
 *
 * For each N it runs the default config (ResNet50 layer2+layer3 at 224 px, r = 1,3,5)
 * in a fresh process and reports backbone ms/image, MSM seconds and GFLOP/s, the
 * GEMM floor (the time of MSM's own GEMM blocks alone: same operands, op, shapes,
 * precision and threads, no reductions/top-K/bookkeeping, measured in the same
 * process), the ratio MSM / floor (≥ 1; what is above 1 is the cost of everything but
 * the GEMM), peak RSS and end-to-end seconds, for fp32 and int8; the straightforward
 * baseline (one GEMM per ordered image pair) at the small N; ONNX Runtime's best
 * large-square MatMul rate; and the CPU's arithmetic peak with the fraction of it MSM
 * reaches.
 *
 * JSON keys (stable): `msm.floor_ratio` (fp32 MSM / floor at N = 200, the headline),
 * `msm.int8_floor_ratio`, `gemm_peak` (large square GEMM rates), `arithmetic_peak`
 * ({fp32_gflops, int8_gops, amx_int8_gops, how}), and per N in `sizes[]`: `floor_seconds`
 * (fp32 floor), `fp32` {msm_seconds, msm_gflops, floor_seconds, floor_ratio,
 * peak_fraction, peak_rss_mb, end_to_end_seconds}, `int8` {msm_seconds, msm_gops,
 * floor_seconds, floor_ratio, peak_fraction, speedup_vs_fp32, peak_rss_mb,
 * end_to_end_seconds}, `baseline` {msm_seconds, speedup, max_abs_diff_vs_ours}.
 *
 *   npm run bench -- [--json] [--sizes 50,100,200,500] [--fp32-sizes 50,100,200]
 *                    [--int8-sizes 50,100,200,500] [--baseline-sizes 50,100] [--memory-probe 1000]
 *
 * Writes bench/results.json. `--json` prints the same object on stdout (progress on stderr).
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as ort from 'onnxruntime-node';
import { arithmeticPeak } from './cpu-peak.js';
import { gemmPeak } from './gemm-peak.js';

const run = promisify(execFile);
const here = fileURLToPath(new URL('.', import.meta.url));
const json = process.argv.includes('--json');
const log = (s: string) => process.stderr.write(`${s}\n`);

function list(name: string, fallback: string): number[] {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : fallback;
  return v ? v.split(',').map(Number).filter((x) => x > 0) : [];
}
const fp32Sizes = list('fp32-sizes', '50,100,200');
const int8Sizes = list('int8-sizes', '50,100,200,500');
const baselineSizes = list('baseline-sizes', '50,100');
const memoryProbe = list('memory-probe', '1000');

interface One {
  n: number;
  precision: string;
  backboneMsPerImage: number;
  msmSeconds: number;
  msmFlops: number;
  msmGflops: number;
  scoringSeconds: number;
  endToEndSeconds: number;
  baselineSeconds: number | null;
  baselineMaxAbsDiff: number | null;
  floorSeconds: number | null;
  peakRssMB: number;
  partial: boolean;
}

async function one(n: number, precision: string, extra: string[] = []): Promise<One> {
  const t = performance.now();
  const { stdout } = await run(process.execPath, [join(here, 'bench-one.js'), '--n', String(n), '--precision', precision, ...extra], {
    maxBuffer: 1 << 20,
    env: process.env,
  });
  const r = JSON.parse(stdout.trim().split('\n').pop()!) as One;
  log(`  N=${n} ${precision}${extra.length ? ` ${extra.join(' ')}` : ''}: MSM ${r.msmSeconds.toFixed(1)} s (${r.msmGflops.toFixed(0)} G/s), wall ${((performance.now() - t) / 1000).toFixed(0)} s`);
  return r;
}

const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
log(`machine: ${cpu}, ${os.cpus().length} logical cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; Node ${process.version}; onnxruntime-node ${ort.env.versions.common}`);
log('GEMM peak (ONNX Runtime, large square):');
const peakFp32 = await gemmPeak('fp32');
const peakInt8 = await gemmPeak('int8');
log(`  fp32 MatMul ${peakFp32.size}^3: ${peakFp32.rate.toFixed(1)} GFLOP/s; u8s8 MatMulInteger ${peakInt8.size}^3: ${peakInt8.rate.toFixed(1)} GOP/s`);
const peak = arithmeticPeak();
log(`arithmetic peak: fp32 ${peak.fp32Gflops.toFixed(0)} GFLOP/s, int8 ${peak.int8Gops.toFixed(0)} GOP/s${peak.amxInt8Gops ? `, AMX int8 ${peak.amxInt8Gops.toFixed(0)} GOP/s` : ''} (${peak.how})`);
const int8Peak = Math.max(peak.int8Gops, peak.amxInt8Gops ?? 0);

const sizes = [...new Set([...fp32Sizes, ...int8Sizes])].sort((a, b) => a - b);
const rows: Record<string, unknown>[] = [];
for (const n of sizes) {
  const fp32 = fp32Sizes.includes(n) ? await one(n, 'fp32', baselineSizes.includes(n) ? ['--baseline'] : []) : null;
  const int8 = int8Sizes.includes(n) ? await one(n, 'int8') : null;
  const ratio = (r: One) => (r.floorSeconds ? r.msmSeconds / r.floorSeconds : null);
  rows.push({
    n,
    backbone_ms_per_image: (fp32 ?? int8)!.backboneMsPerImage,
    msm_tflop: (fp32 ?? int8)!.msmFlops / 1e12,
    floor_seconds: fp32?.floorSeconds ?? null,
    fp32: fp32 && {
      msm_seconds: fp32.msmSeconds,
      msm_gflops: fp32.msmGflops,
      floor_seconds: fp32.floorSeconds,
      floor_ratio: ratio(fp32),
      peak_fraction: fp32.msmGflops / peak.fp32Gflops,
      peak_rss_mb: fp32.peakRssMB,
      end_to_end_seconds: fp32.endToEndSeconds,
    },
    int8: int8 && {
      msm_seconds: int8.msmSeconds,
      msm_gops: int8.msmGflops,
      floor_seconds: int8.floorSeconds,
      floor_ratio: ratio(int8),
      peak_fraction: int8.msmGflops / int8Peak,
      speedup_vs_fp32: fp32 ? fp32.msmSeconds / int8.msmSeconds : null,
      peak_rss_mb: int8.peakRssMB,
      end_to_end_seconds: int8.endToEndSeconds,
    },
    baseline: fp32?.baselineSeconds != null && {
      msm_seconds: fp32.baselineSeconds,
      speedup: fp32.baselineSeconds / fp32.msmSeconds,
      max_abs_diff_vs_ours: fp32.baselineMaxAbsDiff,
    },
  });
}

const probes: Record<string, unknown>[] = [];
for (const n of memoryProbe) {
  // Allocates everything a full run holds (features, unit vectors, the N·P·N minima) but stops each
  // (layer, r) pass after 2 query groups: peak memory of a full run, in minutes instead of an hour.
  const r = await one(n, 'int8', ['--max-query-groups', '2', '--no-floor']);
  probes.push({ n, precision: 'int8', peak_rss_mb: r.peakRssMB, backbone_ms_per_image: r.backboneMsPerImage, note: 'MSM stopped after 2 query groups per (layer, r); memory is allocated in full' });
}

const headline = rows.find((r) => r.n === 200) as { fp32?: { floor_ratio: number | null } | null; int8?: { floor_ratio: number | null } | null } | undefined;
const result = {
  machine: { cpu, cores: os.cpus().length, memory_gib: os.totalmem() / 2 ** 30, node: process.version, onnxruntime: ort.env.versions.common },
  date: new Date().toISOString(),
  config: { backbone: 'resnet50 (keras imagenet)', image_size: 224, layers: ['layer2', 'layer3'], r_list: [1, 3, 5], interval: [0, 0.3] },
  gemm_peak: { fp32_gflops: peakFp32.rate, fp32_size: peakFp32.size, int8_gops: peakInt8.rate, int8_size: peakInt8.size },
  arithmetic_peak: { fp32_gflops: peak.fp32Gflops, int8_gops: peak.int8Gops, amx_int8_gops: peak.amxInt8Gops, how: peak.how },
  msm: { floor_ratio: headline?.fp32?.floor_ratio ?? null, int8_floor_ratio: headline?.int8?.floor_ratio ?? null, n_for_floor_ratio: 200, floor: "MSM's own GEMM blocks, GEMM only (same operands, op, shapes, precision, threads)" },
  sizes: rows,
  memory_probes: probes,
};
await writeFile(join(here, '../../bench/results.json'), `${JSON.stringify(result, null, 1)}\n`);

const f = (x: number | null | undefined, d = 1) => (x == null ? '—' : x.toFixed(d));
const table = [
  '| N | backbone ms/img | MSM TFLOP | fp32 MSM s | fp32 floor s | fp32 MSM / floor | fp32 % of peak | int8 MSM s | int8 floor s | int8 MSM / floor | int8 % of peak | int8 speed-up | baseline s | ours vs baseline | peak RSS MB (fp32/int8) | end-to-end s (fp32/int8) |',
  '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...rows.map((r) => {
    type Side = { msm_seconds: number; floor_seconds: number | null; floor_ratio: number | null; peak_fraction: number; peak_rss_mb: number; end_to_end_seconds: number };
    const x = r as {
      n: number;
      backbone_ms_per_image: number;
      msm_tflop: number;
      fp32: Side | null;
      int8: (Side & { speedup_vs_fp32: number | null }) | null;
      baseline: { msm_seconds: number; speedup: number } | false;
    };
    const pc = (v: number | undefined) => (v == null ? '—' : (100 * v).toFixed(0));
    return `| ${x.n} | ${f(x.backbone_ms_per_image)} | ${f(x.msm_tflop, 2)} | ${f(x.fp32?.msm_seconds)} | ${f(x.fp32?.floor_seconds)} | ${f(x.fp32?.floor_ratio, 2)} | ${pc(x.fp32?.peak_fraction)} | ${f(x.int8?.msm_seconds)} | ${f(x.int8?.floor_seconds)} | ${f(x.int8?.floor_ratio, 2)} | ${pc(x.int8?.peak_fraction)} | ${x.int8?.speedup_vs_fp32 ? `${x.int8.speedup_vs_fp32.toFixed(2)}x` : '—'} | ${x.baseline ? f(x.baseline.msm_seconds) : '—'} | ${x.baseline ? `${x.baseline.speedup.toFixed(2)}x` : '—'} | ${f(x.fp32?.peak_rss_mb, 0)}/${f(x.int8?.peak_rss_mb, 0)} | ${f(x.fp32?.end_to_end_seconds)}/${f(x.int8?.end_to_end_seconds)} |`;
  }),
].join('\n');
if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
else {
  process.stdout.write(`\nGEMM peak: fp32 ${peakFp32.rate.toFixed(1)} GFLOP/s (${peakFp32.size}^3), int8 ${peakInt8.rate.toFixed(1)} GOP/s (${peakInt8.size}^3)\n\n${table}\n`);
  for (const p of probes) process.stdout.write(`\nmemory probe: ${JSON.stringify(p)}\n`);
  process.stdout.write(`\narithmetic peak: ${peak.how}\nheadline msm.floor_ratio (N = 200, fp32): ${f(result.msm.floor_ratio, 3)}; int8: ${f(result.msm.int8_floor_ratio, 3)}\n`);
}
