/**
 * End-to-end: `musc eval` on small stratified subsets of the real data in ../shared/data,
 * the JSON contract of `--json`, and clear errors for unusable inputs.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { createResNet50Backbone } from '../src/backbone/backbone.js';
import { ConfigError, DatasetError } from '../src/errors.js';
import { evaluateCategory } from '../src/eval.js';
import { extractFeatures, resolveConfig, scoreFeatures } from '../src/pipeline/musc.js';
import { MUSC_BIN, SHARED_DATA } from './helpers.js';

const run = promisify(execFile);
const BOTTLE = path.join(SHARED_DATA, 'mvtec_ad', 'bottle');
const TILE = path.join(SHARED_DATA, 'magnetic_tile');
let tmp = '';

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'musc-eval-test-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const inUnit = (x: number) => Number.isFinite(x) && x >= 0 && x <= 1;

test('musc eval --json on a bottle subset prints exactly one JSON object with the documented keys', async () => {
  const { stdout } = await run(process.execPath, [MUSC_BIN, 'eval', BOTTLE, '--json', '--max-images', '24'], { maxBuffer: 1 << 20 });
  const lines = stdout.trim().split('\n');
  assert.equal(lines.length, 1, 'stdout holds one line of JSON');
  const out = JSON.parse(lines[0]) as {
    categories: Record<string, { image: Record<string, number>; pixel: Record<string, number>; n: number; seconds: number }>;
    mean: { image: Record<string, number>; pixel: Record<string, number> };
  };
  const bottle = out.categories.bottle;
  assert.ok(bottle, 'category keyed by folder name');
  assert.deepEqual(Object.keys(bottle.image).sort(), ['ap', 'auroc', 'f1max']);
  assert.deepEqual(Object.keys(bottle.pixel).sort(), ['ap', 'aupro_mvtec', 'auroc', 'f1max', 'pro']);
  for (const v of [...Object.values(bottle.image), ...Object.values(bottle.pixel), ...Object.values(out.mean.image), ...Object.values(out.mean.pixel)]) {
    assert.ok(inUnit(v), `metric ${v} in [0, 1]`);
  }
  assert.ok(bottle.n >= 17 && bottle.n <= 24, `stratified subset size ${bottle.n}`);
  assert.ok(bottle.seconds > 0);
  // Even on ~20 images the method separates bottle defects well.
  assert.ok(bottle.image.auroc >= 0.9, `image AUROC ${bottle.image.auroc}`);
  assert.ok(bottle.pixel.auroc >= 0.95, `pixel AUROC ${bottle.pixel.auroc}`);
  assert.ok(bottle.pixel.pro >= 0.85, `PRO ${bottle.pixel.pro}`);
});

test('magnetic tile subset with soft and empty masks, split into 2 reference subsets', async () => {
  const backbone = await createResNet50Backbone({ layers: ['layer2', 'layer3'] });
  try {
    const res = await evaluateCategory(TILE, backbone, resolveConfig({ divideNum: 2 }), { maxImages: 30 });
    assert.ok(res.n >= 20 && res.n <= 30);
    for (const v of [...Object.values(res.image), ...Object.values(res.pixel)]) assert.ok(inUnit(v), `metric ${v}`);
    assert.ok(res.image.auroc > 0.5, `better than chance: ${res.image.auroc}`);
    assert.equal(res.scores.maps.length, res.n);
    assert.equal(res.scores.maps[0].length, 224 * 224);
  } finally {
    await backbone.dispose();
  }
});

test('a bad image in the batch is reported and skipped; the others are still scored', async () => {
  const dir = path.join(tmp, 'mixed');
  await mkdir(dir, { recursive: true });
  const good = path.join(BOTTLE, 'test', 'good');
  const files: string[] = [];
  for (let i = 0; i < 6; i++) {
    const f = path.join(dir, `${i}.png`);
    await copyFile(path.join(good, `${String(i).padStart(3, '0')}.png`), f);
    files.push(f);
  }
  const broken = path.join(dir, 'broken.png');
  await writeFile(broken, 'not an image');
  files.splice(2, 0, broken);
  const cfg = resolveConfig({ batchSize: 4 });
  const backbone = await createResNet50Backbone({ layers: cfg.layers });
  try {
    const { features, failures } = await extractFeatures(files, backbone, cfg);
    assert.equal(features.length, 6);
    assert.equal(failures.length, 1);
    assert.equal(failures[0].file, broken);
    assert.match(failures[0].error, /broken\.png/);
    const scores = await scoreFeatures(features, cfg);
    assert.equal(scores.imageScores.length, 6);
    assert.ok(scores.imageScores.every(Number.isFinite));
    // Fewer than 5 readable images: a clear error, not NaN.
    await assert.rejects(scoreFeatures(features.slice(0, 4), cfg), (e: unknown) => e instanceof ConfigError && /at least 5/.test(e.message));
  } finally {
    await backbone.dispose();
  }
});

test('musc eval on a folder without images exits with code 2 and a clear message', async () => {
  const empty = path.join(tmp, 'empty-category');
  await mkdir(path.join(empty, 'test', 'good'), { recursive: true });
  await assert.rejects(run(process.execPath, [MUSC_BIN, 'eval', empty, '--json']), (e: { code?: number; stderr?: string }) => {
    assert.equal(e.code, 2);
    assert.match(e.stderr ?? '', /no images|no test images|empty/i);
    return true;
  });
  await assert.rejects(evaluateCategory(path.join(tmp, 'does-not-exist'), undefined as never, resolveConfig()), DatasetError);
});

test('invalid hyper-parameters are rejected with a clear message', async () => {
  assert.throws(() => resolveConfig({ rList: [2] }), /odd/);
  assert.throws(() => resolveConfig({ interval: [0.5, 0.3] }), /interval/);
  await assert.rejects(run(process.execPath, [MUSC_BIN, 'eval', BOTTLE, '--r-list', 'a']), /comma-separated integers/);
});

test('a failing category does not throw away the others; bad decision options fail before any work', async () => {
  const empty = path.join(tmp, 'no-images');
  await mkdir(path.join(empty, 'test', 'good'), { recursive: true });
  await assert.rejects(run(process.execPath, [MUSC_BIN, 'eval', BOTTLE, empty, '--json', '--max-images', '12'], { maxBuffer: 1 << 20 }), (e: { code?: number; stdout?: string; stderr?: string }) => {
    assert.equal(e.code, 2);
    const out = JSON.parse((e.stdout ?? '').trim()) as { categories: Record<string, unknown>; failed: { dir: string }[] };
    assert.ok(out.categories.bottle, 'the good category is still reported');
    assert.equal(out.failed.length, 1);
    assert.match(e.stderr ?? '', /1 of 2 categories could not be evaluated/);
    return true;
  });
  const t = performance.now();
  await assert.rejects(run(process.execPath, [MUSC_BIN, 'run', BOTTLE, '--out', path.join(tmp, 'x'), '--defect-rate', '5']), (e: { code?: number; stderr?: string }) => {
    assert.equal(e.code, 2);
    assert.match(e.stderr ?? '', /--defect-rate <fraction>' argument '5' is invalid\. must be a number in \(0, 1\)/);
    return true;
  });
  assert.ok(performance.now() - t < 10_000, 'rejected before loading the model or scoring');
  await assert.rejects(run(process.execPath, [MUSC_BIN, 'eval', BOTTLE, '--max-images', '3']), /at least 5/);
  await assert.rejects(run(process.execPath, [MUSC_BIN, 'nonsense-command']), (e: { code?: number }) => e.code === 2);
});
