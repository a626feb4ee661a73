/**
 * Data tier: the dataset readers and mask rules on the real evaluation data ($MUSC_DATA or
 * ../shared/data): MVTec AD bottle and Magnetic Tile, and the reference's subset split on them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { binarizeMask, loadMaskBinary, maskValueKind, type DatasetItem } from '../../src/data/dataset.js';
import { readMvtecCategory } from '../../src/data/mvtec.js';
import { splitSubsets } from '../../src/data/subsets.js';
import { loadMaskGrey } from '../../src/image/io.js';
import { evaluationData, repoRoot, tempDirs } from '../helpers.js';

const DATA = evaluationData();
const BOTTLE = path.join(DATA, 'mvtec_ad/bottle');
const TILE = path.join(DATA, 'magnetic_tile');

const tmpDir = tempDirs('musc-data-test-');

/** Paths and subsets of the real categories as produced by the reference (scripts/gen-python-random-fixture.py). */
const fixture = JSON.parse(readFileSync(path.join(repoRoot(), 'test/fixtures/python-random.json'), 'utf8')) as {
  subsets: { name: string; seed: number; paths: string[]; subsets: Record<string, number[][]> }[];
};

function countOnes(m: Uint8Array): number {
  let n = 0;
  for (const v of m) n += v;
  return n;
}

test('bottle: 83 items (20 good, 63 anomalous), sorted types and files, masks paired by name', async () => {
  const ds = await readMvtecCategory(BOTTLE);
  assert.equal(ds.name, 'bottle');
  assert.equal(ds.items.length, 83);
  assert.equal(ds.items.filter((i) => i.label === 0).length, 20);
  assert.equal(ds.items.filter((i) => i.label === 1).length, 63);
  assert.deepEqual([...new Set(ds.items.map((i) => i.defectType))], ['broken_large', 'broken_small', 'contamination', 'good']);
  assert.deepEqual(ds.rscinKList, [1, 2, 3]);
  assert.equal(ds.maskRule, 'auto');
  for (const it of ds.items) {
    if (it.label === 0) {
      assert.equal(it.maskPath, null);
      assert.equal(it.defectType, 'good');
    } else {
      assert.ok(it.maskPath !== null);
      const stem = path.basename(it.imagePath, path.extname(it.imagePath));
      assert.equal(it.maskPath, path.join(BOTTLE, 'ground_truth', it.defectType, `${stem}_mask.png`));
    }
  }
  assert.equal(path.relative(BOTTLE, ds.items[0].imagePath), path.join('test', 'broken_large', '000.png'));
});

test('magnetic_tile: 583 items (191 good, 392 anomalous), every anomalous image has a mask', async () => {
  const ds = await readMvtecCategory(TILE);
  assert.equal(ds.items.length, 583);
  assert.equal(ds.items.filter((i) => i.label === 0).length, 191);
  assert.equal(ds.items.filter((i) => i.label === 1 && i.maskPath !== null).length, 392);
  assert.deepEqual([...new Set(ds.items.map((i) => i.defectType))], ['blowhole', 'break', 'crack', 'fray', 'good', 'uneven']);
});

test("bottle mask at 224 via 'auto' equals the exact-255 rule; 'visa' is a superset", async () => {
  const ds = await readMvtecCategory(BOTTLE);
  const item = ds.items.find((i) => i.label === 1)!;
  assert.equal(await maskValueKind(item.maskPath!), 'binary-0-255');
  const grey = await loadMaskGrey(item.maskPath!, 224);
  const auto = await loadMaskBinary(item, 224, 'auto');
  assert.deepEqual(auto, binarizeMask(grey, 'mvtec'));
  assert.deepEqual(await loadMaskBinary(item, 224, 'mvtec'), auto);
  const visa = await loadMaskBinary(item, 224, 'visa');
  assert.ok(countOnes(auto) > 0);
  assert.ok(countOnes(visa) > countOnes(auto), 'boundary pixels count for > 0 but not for == 255');
  for (let i = 0; i < auto.length; i++) if (auto[i]) assert.equal(visa[i], 1);
});

test("magnetic tile: soft masks resolve to > 127 under 'auto'; the empty exp3_num_45042 mask gives zeros", async () => {
  const ds = await readMvtecCategory(TILE);
  const soft = ds.items.find((i) => i.label === 1 && i.defectType === 'blowhole')!;
  assert.equal(await maskValueKind(soft.maskPath!), 'grey');
  const grey = await loadMaskGrey(soft.maskPath!, 224);
  const auto = await loadMaskBinary(soft, 224, 'auto');
  assert.deepEqual(auto, binarizeMask(grey, 'soft'));
  assert.ok(countOnes(auto) > 0);

  const empty = ds.items.find((i) => path.basename(i.imagePath).startsWith('exp3_num_45042.'))!;
  assert.equal(empty.label, 1);
  assert.equal(await maskValueKind(empty.maskPath!), 'empty');
  for (const rule of ['auto', 'mvtec', 'visa', 'soft'] as const) {
    const m = await loadMaskBinary(empty, 100, rule);
    assert.equal(m.length, 100 * 100);
    assert.equal(countOnes(m), 0);
  }
  const normal = ds.items.find((i) => i.label === 0)!;
  assert.equal(countOnes(await loadMaskBinary(normal, 32, 'visa')), 0);
});

test('a 0/1 mask is detected and treated like the same 0/255 mask under every rule', async () => {
  const dir = await tmpDir();
  const ds = await readMvtecCategory(BOTTLE);
  const item = ds.items.find((i) => i.label === 1)!;
  const { data, info } = await sharp(item.maskPath!).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
  const ones = Buffer.from(data.map((v) => (v === 255 ? 1 : 0)));
  const file = path.join(dir, 'mask01.png');
  await sharp(ones, { raw: { width: info.width, height: info.height, channels: 1 } }).png().toFile(file);
  assert.equal(await maskValueKind(file), 'binary-0-1');
  const item01: DatasetItem = { ...item, maskPath: file };
  for (const rule of ['auto', 'mvtec', 'visa', 'soft'] as const) {
    // Identical results also pin our raw-pixel resize to loadMaskGrey's resize.
    assert.deepEqual(await loadMaskBinary(item01, 224, rule), await loadMaskBinary(item, 224, rule), rule);
  }
});

// ---------------------------------------------------------------- the reference's subset split

test('real magnetic_tile and bottle readers give the reference order, so the subsets match too', async () => {
  const real = fixture.subsets.filter((c) => c.name === 'magnetic_tile' || c.name === 'bottle');
  assert.deepEqual(real.map((c) => c.name).sort(), ['bottle', 'magnetic_tile'], 'the fixture holds both real categories');
  for (const c of real) {
    const rel = c.name === 'bottle' ? 'mvtec_ad/bottle' : 'magnetic_tile';
    const ds = await readMvtecCategory(path.join(DATA, rel));
    assert.deepEqual(
      ds.items.map((it) => path.relative(ds.root, it.imagePath).split(path.sep).join('/')),
      c.paths,
    );
    for (const [d, expected] of Object.entries(c.subsets)) assert.deepEqual(splitSubsets(ds.items, Number(d)), expected);
  }
});
