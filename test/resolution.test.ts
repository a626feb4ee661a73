/**
 * Working sizes, tiles and coarse-to-fine scoring (issue #13), against the plain path
 * where they must agree: keep-aspect on square images, 1x1 position tiles and refine
 * q = 1 are today's paths exactly; tiled banks score a new image as the tiled batch
 * does. Synthetic plates (no ../shared needed), the bundled ResNet50 at small sizes.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import type { Backbone } from '../src/backbone/backbone.js';
import { openBackbone } from '../src/backbone/open.js';
import { buildBank } from '../src/bank/bank.js';
import { bankBackboneOf } from '../src/bank/scorer.js';
import { scoreAgainstBank } from '../src/bank/score.js';
import { writeSyntheticBatch } from '../src/demo/synthetic.js';
import { autoPlan, planBatch, resolveGeometry } from '../src/pipeline/geometry.js';
import { normaliseStitched, tileBlend, upsampleBilinear, upsampleIntoBox } from '../src/pipeline/maps.js';
import { extractFeatures, resolveConfig, scoreFeatures, type MuscConfig } from '../src/pipeline/musc.js';
import { calibrate, refineScores, selectPatches } from '../src/pipeline/refine.js';
import { lnamdStack } from '../src/pipeline/lnamd.js';
import { mutualScores, type MutualScoring } from '../src/pipeline/msm.js';

let backbone: Backbone;
let tmp = '';
let square: string[] = [];
let wide: string[] = [];

before(async () => {
  tmp = await mkdtemp(join(os.tmpdir(), 'musc-resolution-'));
  backbone = (await openBackbone()).backbone;
  await writeSyntheticBatch(join(tmp, 'plates'), { count: 9, seed: 3, defectRate: 0.34, size: 128 });
  const list = async (d: string) => (await readdir(d, { recursive: true })).filter((f) => f.endsWith('.png') && !f.includes('mask')).map((f) => join(d, f)).sort();
  square = await list(join(tmp, 'plates', 'test'));
  // The same plates stretched to 2:1, as an elongated part would be.
  await mkdir(join(tmp, 'wide'));
  for (const f of square) await sharp(f).resize(192, 96, { fit: 'fill' }).toFile(join(tmp, 'wide', f.split('/').slice(-2).join('_')));
  wide = await list(join(tmp, 'wide'));
  assert.equal(square.length, 9);
});
after(async () => {
  await backbone?.dispose();
  await rm(tmp, { recursive: true, force: true });
});

const cfgOf = (p: Partial<MuscConfig>) => resolveConfig({ imageSize: 64, ...p });
async function run(files: string[], p: Partial<MuscConfig>) {
  const cfg = cfgOf(p);
  const { features } = await extractFeatures(files, backbone, cfg);
  return { cfg, features, scores: await scoreFeatures(features, cfg) };
}

test('geometry: keep-aspect rounds the short side, tile grids cover the canvas, native tiles are flush with the border', () => {
  const g = resolveGeometry({ imageSize: 224, keepAspect: true }, [{ width: 1600, height: 500 }, { width: 1590, height: 510 }, { width: 800, height: 800 }]);
  // Median aspect 1590/510 = 3.118: 224 / 3.118 = 71.8, rounded to a multiple of 32.
  assert.deepEqual(g.canvas, { width: 224, height: 64 });
  const t = resolveGeometry({ imageSize: 64, tiles: { grid: { rows: 2, cols: 3 }, overlap: 0.25, match: 'position' } }, []);
  assert.deepEqual(t.canvas, { width: 64 + 2 * 48, height: 64 + 48 });
  assert.equal(t.boxes.length, 6);
  assert.ok(tileBlend(t.boxes, t.canvas)!.total.every((w) => w > 0), 'every canvas pixel is covered');
  const n = resolveGeometry({ imageSize: 224, tiles: { size: 200, overlap: 0.1, match: 'any' } }, [{ width: 1000, height: 450 }]);
  assert.deepEqual([n.rows, n.cols], [3, 6]);
  assert.equal(Math.max(...n.boxes.map((b) => b.x + b.width)), 1000);
  assert.equal(Math.max(...n.boxes.map((b) => b.y + b.height)), 450);
  assert.throws(() => planBatch({ imageSize: 64, tiles: { grid: { rows: 2, cols: 2 }, overlap: 0, match: 'any' }, refine: { fraction: 0.1, imageSize: 128 } }, []), /does not combine with tiles/);
});

test('native tiles: never larger than the images (no stretching), at most 256 per image, never with refinement', () => {
  const tiles = (size: number, overlap = 0.25) => ({ imageSize: 224, tiles: { size, overlap, match: 'position' as const } });
  // A tile as large as the short side is one row of tiles at native resolution.
  const flush = resolveGeometry(tiles(100), [{ width: 1000, height: 100 }]);
  assert.deepEqual([flush.canvas, flush.rows], [{ width: 1000, height: 100 }, 1]);
  assert.throws(() => resolveGeometry(tiles(256), [{ width: 1000, height: 100 }]), /--tile-size 256 is larger than the batch's images \(median 1000x100\): use a tile size of at most 100 px/);
  assert.throws(() => resolveGeometry(tiles(33, 0.75), [{ width: 4000, height: 3000 }]), /cuts the 4000x3000 images into \d+x\d+ = \d+ tiles each; at most 256/);
  assert.equal(resolveGeometry(tiles(250, 0), [{ width: 4000, height: 4000 }]).boxes.length, 256, '16 x 16 is allowed');
  assert.throws(() => planBatch({ ...tiles(64), refine: { fraction: 0.1, imageSize: 448 } }, [{ width: 64, height: 64 }]), /does not combine with tiles/);
});

test('--resolution auto: elongated batches keep their aspect at the area of S², detailed ones are refined, small ones stay square', () => {
  const long = autoPlan(224, Array.from({ length: 3 }, () => ({ width: 1600, height: 500 })));
  assert.deepEqual(long.coarse.canvas, { width: 416, height: 128 });
  // √2 × 416 = 588 → 576 (multiple of 32); the short side scales by the same 576/416.
  assert.deepEqual(long.fine?.canvas, { width: 576, height: 192 });
  assert.match(long.rule, /aspect kept/);
  const big = autoPlan(224, [{ width: 900, height: 900 }]);
  assert.deepEqual([big.coarse.canvas, big.fine?.canvas], [{ width: 224, height: 224 }, { width: 320, height: 320 }]);
  assert.equal(big.refineFraction, 0.1);
  // Originals smaller than the fine size (Magnetic Tile's crops: median short side ~250 px) stay plain.
  const tile = autoPlan(224, [{ width: 300, height: 251 }, { width: 250, height: 320 }, { width: 410, height: 260 }]);
  assert.deepEqual([tile.coarse.canvas, tile.fine], [{ width: 224, height: 224 }, null]);
  // Banks store one size: auto keeps the aspect but never refines.
  assert.equal(autoPlan(224, [{ width: 900, height: 900 }], 32, { refine: false }).fine, null);
  const small = autoPlan(224, [{ width: 300, height: 250 }, { width: 200, height: 180 }, { width: 410, height: 400 }]);
  assert.deepEqual([small.coarse.canvas, small.fine], [{ width: 224, height: 224 }, null]);
  assert.match(small.rule, /no refinement/);
});

test('stitching: overlapping tiles are blended without a step where a tile ends', () => {
  const boxes = [
    { x: 0, y: 0, width: 4, height: 2 },
    { x: 2, y: 0, width: 4, height: 2 },
  ];
  const blend = tileBlend(boxes, { width: 6, height: 2 })!;
  // Each window ramps down over the 2 px it shares with its neighbour, none at the map's border.
  assert.deepEqual(Array.from(blend.windows[0].wx), [1, 1, 0.75, 0.25]);
  assert.deepEqual(Array.from(blend.windows[1].wx), [0.25, 0.75, 1, 1]);
  assert.deepEqual(Array.from(blend.windows[0].wy), [1, 1]);
  const out = new Float32Array(6 * 2);
  upsampleIntoBox(Float32Array.from([1]), 1, 1, boxes[0], 6, out, 1, blend.windows[0]);
  upsampleIntoBox(Float32Array.from([3]), 1, 1, boxes[1], 6, out, 1, blend.windows[1]);
  normaliseStitched([out], blend);
  // A ramp from one tile's value to the other's (an equal-weight average jumped 1 -> 2 -> 3).
  assert.deepEqual(Array.from(out), [1, 1, 1.5, 2.5, 3, 3, 1, 1, 1.5, 2.5, 3, 3]);
  // One box covering the map: nothing to blend (the untiled path).
  assert.equal(tileBlend([{ x: 0, y: 0, width: 6, height: 2 }], { width: 6, height: 2 }), null);
  // `average` (tiled banks built before blending): equal weights, a step at each tile's end.
  const avg = tileBlend(boxes, { width: 6, height: 2 }, 'average')!;
  const flat = new Float32Array(6 * 2);
  upsampleIntoBox(Float32Array.from([1]), 1, 1, boxes[0], 6, flat, 1, avg.windows[0]);
  upsampleIntoBox(Float32Array.from([3]), 1, 1, boxes[1], 6, flat, 1, avg.windows[1]);
  normaliseStitched([flat], avg);
  assert.deepEqual(Array.from(flat), [1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3]);
});

test('stitching: the weights of regular grids sum to one; dividing by the total keeps tiles of one value at it where three tiles overlap (uneven native tilings)', () => {
  const grid = resolveGeometry({ imageSize: 64, tiles: { grid: { rows: 2, cols: 3 }, overlap: 0.25, match: 'position' } }, []);
  const g = tileBlend(grid.boxes, grid.canvas)!;
  assert.ok(g.total.every((w) => Math.abs(w - 1) < 1e-6), 'a partition of unity');
  // Native tiles with uneven steps, and overlaps above one half (three tiles over a pixel).
  for (const [size, overlap] of [[200, 0.1], [128, 0.7]] as const) {
    const n = resolveGeometry({ imageSize: 224, tiles: { size, overlap, match: 'position' } }, [{ width: 1000, height: 450 }]);
    const blend = tileBlend(n.boxes, n.canvas)!;
    const out = new Float32Array(n.canvas.width * n.canvas.height);
    n.boxes.forEach((b, t) => upsampleIntoBox(Float32Array.from([0.7]), 1, 1, b, n.canvas.width, out, 1, blend.windows[t]));
    normaliseStitched([out], blend);
    assert.ok(out.every((v) => Math.abs(v - 0.7) < 1e-6), `tiles of ${size} px, overlap ${overlap}`);
  }
});

test('stitching end to end: a tiled batch blends its tiles\' scores across each overlap', async () => {
  // Position tiles 1x2 of 64 px, overlap 0.25: the canvas is 112 px wide, the tiles share x = 48..63.
  const cfg = cfgOf({ tiles: { grid: { rows: 1, cols: 2 }, overlap: 0.25, match: 'position' } });
  const { features } = await extractFeatures(wide, backbone, cfg);
  // Every patch of tile t scores t + 1, in every (layer, r) set.
  const constant: MutualScoring = async (_z, dims, _opts, set) => new Float32Array(dims.N * dims.P).fill((set.tile ?? 0) + 1);
  const { maps, width, geometry } = await scoreFeatures(features, cfg, { mutualScoring: constant });
  assert.equal(width, 112);
  const blend = tileBlend(geometry.coarse.boxes, geometry.map)!;
  const row = Array.from(maps[0].subarray(0, width));
  for (let x = 0; x < width; x++) {
    const w0 = x < 64 ? blend.windows[0].wx[x] : 0;
    const w1 = x >= 48 ? blend.windows[1].wx[x - 48] : 0;
    assert.ok(Math.abs(row[x] - (w0 * 1 + w1 * 2) / (w0 + w1)) < 1e-6, `x = ${x}: ${row[x]}`);
  }
  // A ramp from 1 to 2 without a step (averaging jumped 1 -> 1.5 -> 2).
  assert.ok(row.every((v, x) => x === 0 || (v >= row[x - 1] - 1e-6 && v - row[x - 1] <= 1 / 16 + 1e-6)), row.join(' '));
});

test('native tiles larger than S, and small tiles with a large overlap, pass the config check and run on the images', async () => {
  // The config is checked before any image is read: native tiles must not be judged against an S x S probe.
  assert.doesNotThrow(() => resolveConfig({ imageSize: 224, tiles: { size: 512, overlap: 0.25, match: 'position' } }));
  assert.doesNotThrow(() => resolveConfig({ imageSize: 2048, tiles: { size: 32, overlap: 0.75, match: 'any' } }));
  // 96 px tiles (above S = 64) on the 192 x 96 images: one row of tiles at native resolution.
  const r = await run(wide, { tiles: { size: 96, overlap: 0.25, match: 'position' } });
  assert.deepEqual([r.scores.width, r.scores.height], [192, 96]);
  assert.equal(r.features[0].units.length, 3);
  assert.ok(r.scores.maps.length === wide.length && r.scores.maps.every((m) => m.length === 192 * 96 && m.every(Number.isFinite)));
});

test('keep-aspect on square images and 1x1 position tiles are exactly the plain path', async () => {
  const plain = await run(square, {});
  const aspect = await run(square, { keepAspect: true });
  const tile1 = await run(square, { tiles: { grid: { rows: 1, cols: 1 }, overlap: 0, match: 'position' } });
  for (const other of [aspect, tile1]) {
    assert.equal(other.scores.width, plain.scores.width);
    assert.deepEqual(Array.from(other.scores.rscinScores), Array.from(plain.scores.rscinScores));
    other.scores.maps.forEach((m, i) => assert.deepEqual(m, plain.scores.maps[i], `map ${i}`));
  }
});

test('keep-aspect on elongated images: a rectangular canvas, grids, maps and masks of the same shape', async () => {
  const { scores, features } = await run(wide, { keepAspect: true });
  assert.deepEqual([scores.width, scores.height], [64, 32]);
  const g = features[0].units[0][0];
  assert.equal(g.width, 2 * g.height, 'feature grid keeps the 2:1 aspect');
  assert.ok(scores.maps.every((m) => m.length === 64 * 32));
});

test('tiles: position and any both score every tile and stitch a map at the canvas size; any compares more references', async () => {
  const tiles = { grid: { rows: 1, cols: 2 }, overlap: 0.25 };
  const pos = await run(wide, { tiles: { ...tiles, match: 'position' } });
  const any = await run(wide, { tiles: { ...tiles, match: 'any' } });
  assert.deepEqual([pos.scores.width, pos.scores.height], [64 + 48, 64]);
  assert.equal(pos.features[0].units.length, 2);
  for (const s of [pos.scores, any.scores]) assert.ok(s.maps.every((m) => m.every(Number.isFinite)) && s.imageScores.every(Number.isFinite));
  assert.notDeepEqual(Array.from(pos.scores.imageScores), Array.from(any.scores.imageScores));
  // Tiles of one image are never compared with each other: identical tiles would score 0 otherwise.
  assert.ok(any.scores.imageScores.every((v) => v > 0));
});

test('--resolution auto end to end: a detailed batch is refined exactly like the explicit --refine it chose', async () => {
  // 128 px plates at S = 64: the fine size √2 x 64 → 96 fits in the median short side 128, so auto refines the top 10 % at 96.
  const auto = await run(square, { imageSize: 64, auto: true });
  const explicit = await run(square, { imageSize: 64, refine: { fraction: 0.1, imageSize: 96 } });
  assert.match(auto.scores.geometry.rule, /^auto .*refined/);
  assert.deepEqual([auto.scores.width, auto.scores.height], [96, 96]);
  assert.ok(auto.scores.maps.length > 0 && auto.scores.maps.length === explicit.scores.maps.length, 'one map per image in both runs');
  auto.scores.maps.forEach((m, i) => assert.deepEqual(m, explicit.scores.maps[i], `map ${i}`));
  assert.deepEqual(Array.from(auto.scores.imageScores), Array.from(explicit.scores.imageScores));
});

test('calibration maps the coarse scores of the other patches onto the fine scale by the line fitted on the re-scored ones', () => {
  const scores = Float32Array.from([0.1, 0.2, 0.3, 0.4, 0.5]); // upsampled coarse
  const rows = Int32Array.from([3, 4]);
  const { a, b } = calibrate(scores, rows, Float32Array.from([0.9, 1.1])); // fine = 2·coarse + 0.1
  assert.ok(Math.abs(a - 2) < 1e-6 && Math.abs(b - 0.1) < 1e-6, `${a} ${b}`);
  assert.deepEqual(Array.from(scores, (v) => Math.round(v * 1e6) / 1e6), [0.3, 0.5, 0.7, 0.9, 1.1]);
  // One re-scored patch: a shift only.
  const one = Float32Array.from([0.1, 0.5]);
  calibrate(one, Int32Array.from([1]), Float32Array.from([0.7]));
  assert.deepEqual(Array.from(one, (v) => Math.round(v * 1e6) / 1e6), [0.3, 0.7]);
});

test('calibration never turns the rest of a map upside down, nor makes a distance negative', () => {
  // The re-scored patches' fine scores fall as their coarse ones rise (slope −2): the line would lift
  // the background (0.1, 0.2) to 3.1 and 2.9, above the re-scored patches. A shift keeps its order.
  const falling = Float32Array.from([0.1, 0.2, 0.9, 0.8]);
  const { a, b } = calibrate(falling, Int32Array.from([2, 3]), Float32Array.from([1.5, 1.7]));
  assert.equal(a, 1, 'falls back to a shift');
  assert.ok(Math.abs(b - 0.75) < 1e-6, `b = mean fine − mean coarse: ${b}`);
  assert.deepEqual(Array.from(falling, (v) => Math.round(v * 1e6) / 1e6), [0.85, 0.95, 1.5, 1.7]);
  // A steep rising line extrapolated below the re-scored range would give negative distances: clamped at 0.
  const steep = Float32Array.from([0.05, 0.3, 0.4, 0.5]);
  calibrate(steep, Int32Array.from([2, 3]), Float32Array.from([0.2, 0.6])); // fine = 4·coarse − 1.4
  assert.deepEqual(Array.from(steep, (v) => Math.round(v * 1e6) / 1e6), [0, 0, 0.2, 0.6]);
});

test('refine q = 1 is full fine scoring; q < ½ re-scores the top coarse patches exactly and keeps the rest', async () => {
  const fine = await run(square, { imageSize: 128 });
  const full = await run(square, { refine: { fraction: 1, imageSize: 128 } });
  assert.deepEqual([full.scores.width, full.scores.height], [128, 128]);
  full.scores.maps.forEach((m, i) => assert.deepEqual(m, fine.scores.maps[i], `map ${i}`));
  assert.deepEqual(Array.from(full.scores.rscinScores), Array.from(fine.scores.rscinScores));

  // One (layer, r) set directly: refined rows are the full fine pass's values (int8).
  const { features } = await run(square, { refine: { fraction: 0.2, imageSize: 128 } });
  const N = features.length;
  const l = 1;
  const gc = features[0].units[0][l];
  const gf = features[0].fine![l];
  const Pc = gc.height * gc.width;
  const Pf = gf.height * gf.width;
  const zc = lnamdStack(features.map((f) => f.units[0][l]), 3);
  const zf = lnamdStack(features.map((f) => f.fine![l]), 3);
  const coarse = await mutualScores(zc, { N, P: Pc, C: gc.channels }, { precision: 'int8' });
  const fullFine = await mutualScores(zf, { N, P: Pf, C: gf.channels }, { precision: 'int8' });
  const { scores, refined } = await refineScores(zf, { N, P: Pf, C: gf.channels }, { scores: coarse, gridHeight: gc.height, gridWidth: gc.width }, { gridHeight: gf.height, gridWidth: gf.width }, 0.2, { precision: 'int8' });
  assert.equal(refined, Math.ceil(0.2 * N * Pf));
  // The refined rows are query rows against every other image; the full pass uses each pair once
  // with the lower image on the query side (int8 sides have their own dithers): image 0's rows are
  // the same products, bit for bit; the others' differ by int8 rounding only.
  const up = new Float32Array(N * Pf);
  for (let i = 0; i < N; i++) up.set(upsampleBilinear(coarse.subarray(i * Pc, (i + 1) * Pc), gc.height, gc.width, { width: gf.width, height: gf.height }), i * Pf);
  const rows = selectPatches(up, N, Pf, 0.2, 'set');
  const range = Math.max(...fullFine) - Math.min(...fullFine);
  const ofFirst = rows.filter((k) => k < Pf);
  assert.ok(ofFirst.length > 0, 'image 0 has refined patches');
  for (const k of ofFirst) assert.equal(scores[k], fullFine[k], `image 0, patch ${k}: the full fine pass's value`);
  const worst = rows.reduce((m, k) => Math.max(m, Math.abs(scores[k] - fullFine[k])), 0);
  assert.ok(worst < 0.01 * range, `refined patches vs the full fine pass: ${worst} (map range ${range})`);
  assert.ok(Array.from(scores).some((v, k) => v !== fullFine[k]), 'the other patches keep the coarse scores');
});

for (const match of ['position', 'any'] as const) {
  test(`a tiled bank (${match}) scores one of its images, left out, exactly as the tiled batch does (int8)`, async () => {
    const cfg = cfgOf({ tiles: { grid: { rows: 1, cols: 2 }, overlap: 0.25, match } });
    const { features } = await extractFeatures(wide, backbone, cfg);
    const batch = await scoreFeatures(features, cfg);
    // The bank holds the whole batch (so its int8 scale is the batch's); image q is scored without itself.
    const bank = await buildBank(features, cfg, { backbone: bankBackboneOf(backbone, {}, null) });
    for (const q of [0, features.length - 1]) {
      const res = await scoreAgainstBank([features[q]], bank, { excludeBankIndex: [q] });
      // A new image is measured as the first image of a batch is (see pairwise.ts).
      const first = q === 0 ? batch : await scoreFeatures([features[q], ...features.filter((_, i) => i !== q)], cfg);
      assert.deepEqual([res.width, res.height], [first.width, first.height]);
      assert.deepEqual(res.maps[0], first.maps[0], `image ${q}`);
      assert.equal(res.imageScores[0], first.imageScores[0]);
    }
    // A tiled bank records how it stitched; one written before blending (no field) keeps averaging,
    // so new images are measured as its stored scores were: the same map outside the overlap (x = 48..63).
    assert.equal(bank.config.stitching, 'blend');
    const { stitching: _, ...before } = bank.config;
    const blended = await scoreAgainstBank([features[0]], bank, { excludeBankIndex: [0] });
    const averaged = await scoreAgainstBank([features[0]], { ...bank, config: before }, { excludeBankIndex: [0] });
    const { width } = blended;
    let differ = 0;
    blended.maps[0].forEach((v, i) => {
      const x = i % width;
      if (x < 48 || x > 63) assert.equal(averaged.maps[0][i], v, `pixel ${i} outside the overlap`);
      else if (averaged.maps[0][i] !== v) differ++;
    });
    assert.ok(differ > 0, 'the overlap is averaged, not blended');
  });
}
