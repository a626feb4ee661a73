/**
 * `npm run bench:bank`: the cost of scoring one new image against a bank of N earlier
 * images vs a full re-run of the whole batch (N + 1 images), side by side in one run,
 * and few-shot (bank of `train/good`) vs zero-shot accuracy on ../shared/data.
 *
 *   npm run bench:bank -- [--sizes 50,100,200] [--repeats 5] [--no-fewshot] [--json]
 *
 * Images for the latency part: Magnetic Tile test images (enough for N = 200), sorted by
 * name. Full re-run = decode + backbone for N + 1 images + mutual scoring + RsCIN. Bank
 * latency = `scorer.score([image])` on an opened bank: decode + backbone for one image +
 * scoring against N images + RsCIN (median of `--repeats`). Writes bench/bank-results.json.
 */
import { readdir, rm, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openBackbone } from '../src/backbone/open.js';
import { buildBank } from '../src/bank/bank.js';
import { writeBank } from '../src/bank/format.js';
import { Musc } from '../src/api/musc.js';
import { bankBackboneOf } from '../src/bank/scorer.js';
import { scoreAgainstBank } from '../src/bank/score.js';
import { loadMaskBinary } from '../src/data/dataset.js';
import { evaluateCategory, readCategory } from '../src/eval.js';
import { imageMetrics, pixelMetrics } from '../src/metrics/index.js';
import { extractFeatures, resolveConfig, scoreFeatures } from '../src/pipeline/musc.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const DATA = resolve(here, '../../../shared/data');
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const sizes = arg('sizes', '50,100,200').split(',').map(Number);
const repeats = Number(arg('repeats', '5'));
const log = (s: string) => process.stderr.write(`${s}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

const cfg = resolveConfig();
const { backbone } = await openBackbone({ layers: cfg.layers, imageSize: cfg.imageSize });
const tmp = await mkdtemp(join(os.tmpdir(), 'musc-bench-bank-'));
const tile = join(DATA, 'magnetic_tile', 'test');
const files: string[] = [];
for (const d of (await readdir(tile)).sort()) for (const f of (await readdir(join(tile, d))).sort()) if (f.endsWith('.png') || f.endsWith('.jpg')) files.push(join(tile, d, f));
// Interleave defect types so every prefix is a realistic mix.
files.sort((a, b) => a.split('/').pop()!.localeCompare(b.split('/').pop()!));

const latency: Record<string, unknown>[] = [];
for (const N of sizes) {
  // The new image first: a batch measures each pair with the earlier image on the query side, as
  // scoring against a bank measures the new image, so its map must come out identical.
  const query = files[N];
  const batch = [query, ...files.slice(0, N)];
  let t = performance.now();
  const full = await extractFeatures(batch, backbone, cfg);
  const fullScores = await scoreFeatures(full.features, cfg);
  const fullSeconds = (performance.now() - t) / 1000;
  t = performance.now();
  const bank = await buildBank(full.features.slice(1), cfg, { backbone: bankBackboneOf(backbone, {}, null) });
  const file = join(tmp, `bank-${N}.mbank`);
  const bytes = await writeBank(file, bank);
  const buildSeconds = (performance.now() - t) / 1000;
  t = performance.now();
  const scorer = await Musc.open({ bank: file });
  const openSeconds = (performance.now() - t) / 1000;
  await scorer.score([query]); // warm-up
  const times: number[] = [];
  let result;
  for (let k = 0; k < repeats; k++) {
    t = performance.now();
    result = (await scorer.score([query])).results[0];
    times.push((performance.now() - t) / 1000);
  }
  await scorer.dispose();
  const bankSeconds = median(times);
  let mapDiff = 0;
  for (let i = 0; i < result!.map.length; i++) mapDiff = Math.max(mapDiff, Math.abs(result!.map[i] - fullScores.maps[0][i]));
  const row = {
    N,
    fullRerunSeconds: fullSeconds,
    bankScoreSeconds: bankSeconds,
    speedup: fullSeconds / bankSeconds,
    bankBuildSeconds: buildSeconds,
    bankOpenSeconds: openSeconds,
    bankMiB: bytes / 2 ** 20,
    imageScoreFull: fullScores.imageScores[0],
    imageScoreBank: result!.imageScore,
    maxMapDiff: mapDiff,
  };
  log(JSON.stringify(row));
  latency.push(row);
}

async function fewShot(category: string): Promise<Record<string, unknown>> {
  const dir = join(DATA, category);
  const trainDir = join(dir, 'train', 'good');
  const train = (await readdir(trainDir)).sort().map((f) => join(trainDir, f));
  const t0 = performance.now();
  const good = await extractFeatures(train, backbone, cfg);
  const bank = await buildBank(good.features, cfg, { backbone: bankBackboneOf(backbone, {}, null), reference: 'good' });
  const ds = await readCategory(dir);
  const test = await extractFeatures(ds.items.map((i) => i.imagePath), backbone, cfg);
  const res = await scoreAgainstBank(test.features, bank);
  const masks = await Promise.all(ds.items.map((it) => loadMaskBinary(it, cfg.imageSize, ds.maskRule)));
  const labels = Uint8Array.from(ds.items, (i) => i.label);
  const few = { image: imageMetrics(res.scores, labels), pixel: pixelMetrics(res.maps, masks, cfg.imageSize, cfg.imageSize), seconds: (performance.now() - t0) / 1000 };
  const zeroCfg = category === 'magnetic_tile' ? resolveConfig({ ...cfg, divideNum: 6 }) : cfg;
  const zero = await evaluateCategory(dir, backbone, zeroCfg);
  const out = { category, references: train.length, test: ds.items.length, fewShot: few, zeroShot: { image: zero.image, pixel: zero.pixel, seconds: zero.seconds, divideNum: zeroCfg.divideNum } };
  log(JSON.stringify(out));
  return out;
}

const fewshot = process.argv.includes('--no-fewshot') ? [] : [await fewShot('mvtec_ad/bottle'), await fewShot('magnetic_tile')];
await backbone.dispose();
await rm(tmp, { recursive: true, force: true });
const out = { machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model }, config: cfg, latency, fewshot };
await writeFile(join(here, '../../bench/bank-results.json'), `${JSON.stringify(out, null, 2)}\n`);
if (process.argv.includes('--json')) process.stdout.write(`${JSON.stringify(out)}\n`);
