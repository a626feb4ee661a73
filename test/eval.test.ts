/**
 * `musc eval` and the pipeline on synthetic plates (`musc demo`'s generator, no ../shared needed):
 * bad images are reported and skipped, clear errors for unusable inputs, a failing category does
 * not lose the others. On the real data: test/data/eval.test.ts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { createResNet50Backbone } from '../src/backbone/backbone.js';
import { ConfigError, DatasetError } from '../src/errors.js';
import { configOf } from '../src/api/options.js';
import { evaluateCategory, evaluateDataset, readCategory } from '../src/eval.js';
import { extractFeatures, resolveConfig, scoreFeatures } from '../src/pipeline/musc.js';
import { defaultKList, minMaxNormalize } from '../src/pipeline/rscin.js';
import { MUSC_BIN, writePlates, type Plates } from './helpers.js';

const run = promisify(execFile);
let tmp = '';
let plates: Plates;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'musc-eval-test-'));
  plates = await writePlates(path.join(tmp, 'plates'), { count: 16 });
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('a bad image in the batch is reported and skipped; the others are still scored', async () => {
  const dir = path.join(tmp, 'mixed');
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  for (let i = 0; i < 6; i++) {
    const f = path.join(dir, `${i}.png`);
    await copyFile(plates.good[i], f);
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
    // The message says what is missing; the folder's name (`empty-category`) alone must not satisfy it.
    assert.match(e.stderr ?? '', /no test images in .*: expected <defect_type>\/<image>/);
    return true;
  });
  await assert.rejects(evaluateCategory(path.join(tmp, 'does-not-exist'), undefined as never, resolveConfig()), DatasetError);
});

test('invalid hyper-parameters are rejected with a clear message', async () => {
  assert.throws(() => resolveConfig({ rList: [2] }), /odd/);
  assert.throws(() => resolveConfig({ interval: [0.5, 0.3] }), /interval/);
  await assert.rejects(run(process.execPath, [MUSC_BIN, 'eval', plates.dir, '--r-list', 'a']), /comma-separated integers/);
});

test('a failing category does not throw away the others; bad decision options fail before any work', async () => {
  const empty = path.join(tmp, 'no-images');
  await mkdir(path.join(empty, 'test', 'good'), { recursive: true });
  await assert.rejects(run(process.execPath, [MUSC_BIN, 'eval', plates.dir, empty, '--json', '--max-images', '12'], { maxBuffer: 1 << 20 }), (e: { code?: number; stdout?: string; stderr?: string }) => {
    assert.equal(e.code, 2);
    const out = JSON.parse((e.stdout ?? '').trim()) as { categories: Record<string, unknown>; failed: { dir: string }[] };
    assert.ok(out.categories.plates, 'the good category is still reported');
    assert.equal(out.failed.length, 1);
    assert.match(e.stderr ?? '', /1 of 2 categories could not be evaluated/);
    return true;
  });
  // Under a file, the model cache cannot exist, so loading the model would fail with another error: this one comes first.
  const notADir = path.join(tmp, 'a-file');
  await writeFile(notADir, '');
  const noModel = { ...process.env, MUSC_CACHE_DIR: path.join(notADir, 'cache') };
  await assert.rejects(run(process.execPath, [MUSC_BIN, 'run', plates.dir, '--out', path.join(tmp, 'x'), '--defect-rate', '5'], { env: noModel }), (e: { code?: number; stderr?: string }) => {
    assert.equal(e.code, 2);
    assert.match(e.stderr ?? '', /--defect-rate <fraction>' argument '5' is invalid\. must be a number in \(0, 1\)/);
    return true;
  });
  await assert.rejects(run(process.execPath, [MUSC_BIN, 'eval', plates.dir, '--max-images', '3']), /at least 5/);
  await assert.rejects(run(process.execPath, [MUSC_BIN, 'nonsense-command']), (e: { code?: number }) => e.code === 2);
});

test("RsCIN's default windows follow the image score: each image's own score under excess, the family's under max", async () => {
  assert.deepEqual(defaultKList('excess', [1, 8, 9]), [1]);
  assert.deepEqual(defaultKList('max', [1, 8, 9]), [1, 8, 9]);
  assert.deepEqual(configOf({}).kList, [1]);
  assert.deepEqual(configOf({ imageScore: 'max' }).kList, [1, 2, 3]);
  assert.deepEqual(configOf({ kList: [1, 2] }).kList, [1, 2]);
  // End to end: with the default (excess), the RsCIN score of scores.json is exactly the min-max
  // normalised image score; with --k-list 1,2,3 the neighbours' scores are mixed in.
  const rscinColumn = async (extra: string[]): Promise<{ kList: number[]; raw: number[]; rscin: number[] }> => {
    const out = await mkdtemp(path.join(tmp, 'k-'));
    const { stdout } = await run(process.execPath, [MUSC_BIN, 'eval', plates.dir, '--json', '--report', out, ...extra], { maxBuffer: 1 << 22 });
    const kList = (JSON.parse(stdout) as { config: { kList: number[] } }).config.kList;
    const images = (JSON.parse(await readFile(path.join(out, 'scores.json'), 'utf8')) as { images: { imageScore: number; rscinScore: number }[] }).images;
    return { kList, raw: images.map((r) => r.imageScore), rscin: images.map((r) => r.rscinScore) };
  };
  const own = await rscinColumn([]);
  assert.deepEqual(own.kList, [1]);
  assert.equal(own.raw.length, plates.good.length + plates.defective.length);
  const norm = minMaxNormalize(own.raw);
  own.rscin.forEach((v, i) => assert.ok(Math.abs(v - norm[i]) < 1e-9, `row ${i}: ${v} vs ${norm[i]}`));
  const mixed = await rscinColumn(['--k-list', '1,2,3']);
  assert.deepEqual(mixed.kList, [1, 2, 3]);
  const normMixed = minMaxNormalize(mixed.raw);
  assert.ok(mixed.rscin.some((v, i) => Math.abs(v - normMixed[i]) > 1e-3), 'neighbours change some RsCIN scores');
  // The dataset family's windows (VisA 1,8,9) under the max, the image's own score under excess.
  const visaLike = { ...(await readCategory(plates.dir)), rscinKList: [1, 8, 9] };
  const backbone = await createResNet50Backbone({ layers: ['layer3'] });
  try {
    const byRule = async (imageScore: 'max' | 'excess') => (await evaluateDataset(visaLike, backbone, configOf({ imageScore, layers: ['layer3'] }))).config.kList;
    assert.deepEqual(await byRule('max'), [1, 8, 9]);
    assert.deepEqual(await byRule('excess'), [1]);
  } finally {
    await backbone.dispose();
  }
});
