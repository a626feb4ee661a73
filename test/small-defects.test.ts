/**
 * The small-defect benchmark generator (issue #13): deterministic for a seed, the promised
 * geometry, defects of 0.1-0.5 % of the image with masks that are exactly the changed
 * pixels, and a layout the dataset reader accepts. Needs no ../shared data.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { SMALL_DEFECT_KINDS } from '../src/demo/defect-shapes.js';
import {
  DEFECT_AREA_FRACTION,
  SMALL_DEFECT_CATEGORIES,
  SMALL_DEFECT_GEOMETRY,
  renderSmallDefectImage,
  writeSmallDefectSet,
  type WrittenCategory,
} from '../src/demo/small-defects.js';
import { readCategory } from '../src/eval.js';

const OPTS = { seed: 5, count: 10, defectRate: 0.5, trainGood: 1 } as const;
let tmp = '';
let written: WrittenCategory[] = [];

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'musc-small-defects-'));
  written = await writeSmallDefectSet(path.join(tmp, 'a'), OPTS);
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

async function hashes(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const f of await filesUnder(dir)) {
    if (f === 'small-defects.json') continue; // holds absolute paths, which differ between the two folders
    out.set(f, createHash('sha256').update(await readFile(path.join(dir, f))).digest('hex'));
  }
  return out;
}

/** Size and channel count as stored in the file (sharp's raw output would expand grey to RGB), and the first channel. */
async function decode(file: string): Promise<{ data: Uint8Array; width: number; height: number; channels: number }> {
  const meta = await sharp(file).metadata();
  const { data, info } = await sharp(file).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: info.width, height: info.height, channels: meta.channels ?? 0 };
}

test('the same seed writes byte-identical files; another seed writes other images', async () => {
  await writeSmallDefectSet(path.join(tmp, 'b'), OPTS);
  const a = await hashes(path.join(tmp, 'a'));
  const b = await hashes(path.join(tmp, 'b'));
  assert.equal(a.size, 2 * (OPTS.count + OPTS.trainGood + OPTS.count * OPTS.defectRate));
  assert.deepEqual([...b.entries()], [...a.entries()]);
  const other = renderSmallDefectImage('shaft', 0, null, OPTS.seed + 1);
  const same = renderSmallDefectImage('shaft', 0, null, OPTS.seed);
  assert.notDeepEqual(other.pixels, same.pixels);
});

test('layout: MVTec folders, the promised sizes, one defect kind per folder, masks only for defective images', async () => {
  assert.deepEqual(written.map((c) => c.category).sort(), ['flange', 'shaft'], 'both categories were written');
  for (const c of written) {
    const { width, height, channels } = SMALL_DEFECT_GEOMETRY[c.category];
    const files = await filesUnder(c.dir);
    const tests = files.filter((f) => f.startsWith(`test${path.sep}`));
    const masks = files.filter((f) => f.startsWith(`ground_truth${path.sep}`));
    const train = files.filter((f) => f.startsWith(`train${path.sep}good${path.sep}`));
    assert.equal(tests.length, OPTS.count);
    assert.equal(train.length, OPTS.trainGood);
    assert.equal(masks.length, OPTS.count * OPTS.defectRate);
    assert.equal(tests.filter((f) => f.includes(`${path.sep}good${path.sep}`)).length, OPTS.count * (1 - OPTS.defectRate));
    // Kinds take turns: with five defective images, each kind once.
    assert.deepEqual(new Set(c.defects.map((d) => d.kind)), new Set(SMALL_DEFECT_KINDS));
    for (const f of [...tests, ...train]) {
      const img = await decode(path.join(c.dir, f));
      assert.deepEqual([img.width, img.height, img.channels], [width, height, channels], f);
    }
    for (const d of c.defects) {
      assert.ok(d.mask.endsWith(`_mask.png`) && path.basename(d.mask, '_mask.png') === path.basename(d.image, '.png'));
      assert.equal(path.basename(path.dirname(d.image)), d.kind);
    }
  }
});

test('every mask is 0/255, non-empty, and covers 0.1-0.5 % of the image, as recorded in small-defects.json', async () => {
  const manifest = JSON.parse(await readFile(path.join(tmp, 'a', 'small-defects.json'), 'utf8')) as { categories: WrittenCategory[] };
  assert.equal(manifest.categories.length, 2, 'both categories are in the manifest');
  for (const c of manifest.categories) {
    assert.ok(c.defects.length > 0, `${c.category} has defects`);
    for (const d of c.defects) {
      const m = await decode(d.mask);
      assert.equal(m.channels, 1, d.mask);
      let on = 0;
      for (const v of m.data) {
        assert.ok(v === 0 || v === 255, `${d.mask}: value ${v}`);
        if (v === 255) on++;
      }
      const fraction = on / (m.width * m.height);
      assert.ok(fraction >= DEFECT_AREA_FRACTION.min && fraction <= DEFECT_AREA_FRACTION.max, `${d.mask}: ${(100 * fraction).toFixed(3)} %`);
      assert.equal(fraction, d.areaFraction);
    }
  }
});

test('a defect changes exactly the masked pixels of the same image without it', () => {
  for (const category of SMALL_DEFECT_CATEGORIES)
    SMALL_DEFECT_KINDS.forEach((kind, i) => {
      const clean = renderSmallDefectImage(category, i, null, OPTS.seed);
      const bad = renderSmallDefectImage(category, i, kind, OPTS.seed);
      const ch = bad.channels;
      let masked = 0;
      for (let p = 0; p < bad.mask.length; p++) {
        let changed = false;
        for (let c = 0; c < ch; c++) if (bad.pixels[p * ch + c] !== clean.pixels[p * ch + c]) changed = true;
        assert.equal(changed, bad.mask[p] === 255, `${category} ${kind}: pixel ${p % bad.width},${Math.floor(p / bad.width)}`);
        if (changed) masked++;
      }
      assert.ok(masked > 0);
      assert.equal(clean.mask.every((v) => v === 0), true);
      assert.equal(clean.areaFraction, 0);
    });
});

test('the dataset reader reads both categories: labels, defect types and masks as written', async () => {
  assert.equal(written.length, 2, 'both categories were written');
  for (const c of written) {
    const ds = await readCategory(c.dir);
    assert.equal(ds.name, c.category);
    assert.equal(ds.items.length, OPTS.count, 'train/good is not part of the test set');
    const anomalous = ds.items.filter((it) => it.label === 1);
    assert.deepEqual(anomalous.map((it) => it.imagePath).sort(), c.defects.map((d) => d.image).sort());
    for (const it of ds.items) {
      if (it.label === 1) assert.equal(it.maskPath, c.defects.find((d) => d.image === it.imagePath)?.mask);
      else assert.equal(it.maskPath, null);
    }
  }
});
