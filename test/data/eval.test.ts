/**
 * Data tier, end to end: `musc eval` on small stratified subsets of the real data ($MUSC_DATA or
 * ../shared/data) and the JSON contract of `--json`. Clear errors for unusable inputs and the
 * pipeline on synthetic plates: test/eval.test.ts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { createResNet50Backbone } from '../../src/backbone/backbone.js';
import { evaluateCategory } from '../../src/eval.js';
import { resolveConfig } from '../../src/pipeline/musc.js';
import { evaluationData, MUSC_BIN } from '../helpers.js';

const run = promisify(execFile);
const BOTTLE = path.join(evaluationData(), 'mvtec_ad', 'bottle');
const TILE = path.join(evaluationData(), 'magnetic_tile');

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
