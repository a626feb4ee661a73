import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../src/errors.js';
import { decide, decisionQuality } from '../src/outputs/decisions.js';
import { batchHeatScale, heatLayer, turbo } from '../src/outputs/heatmap.js';
import { displayNames, outputStems } from '../src/outputs/names.js';
import { encodeNpy } from '../src/outputs/npy.js';
import { strongestRegion } from '../src/outputs/region.js';
import { scoresCsv } from '../src/outputs/tables.js';
import { chooseThreshold, madThreshold, otsuThreshold } from '../src/outputs/thresholds.js';

test('otsu splits two groups between them, whatever their sizes', () => {
  const scores = [0.1, 0.12, 0.08, 0.11, 0.7, 0.72, 0.69, 0.71, 0.73, 0.68, 0.74, 0.7];
  const t = otsuThreshold(scores);
  assert.ok(t > 0.12 && t < 0.68, `threshold ${t}`);
  assert.equal(otsuThreshold([0.3, 0.3, 0.3]), 0.3);
});

test('mad flags outliers of a majority-normal batch; rate flags the top share; fixed is used as is', () => {
  const scores = [0.2, 0.21, 0.19, 0.22, 0.18, 0.2, 0.21, 0.9];
  const mad = madThreshold(scores, 3);
  assert.ok(mad > 0.22 && mad < 0.9, `mad threshold ${mad}`);
  const rate = chooseThreshold(scores, { method: 'rate', defectRate: 0.25 });
  assert.equal(scores.filter((s) => s > rate.value).length, 2);
  assert.match(rate.assumption, /25\.0 %/);
  assert.equal(chooseThreshold(scores, { method: 'fixed', value: 0.5 }).value, 0.5);
  assert.throws(() => chooseThreshold(scores, { method: 'rate', defectRate: 1.5 }), ConfigError);
  for (const m of ['otsu', 'mad'] as const) assert.ok(chooseThreshold(scores, { method: m }).assumption.length > 20);
});

test('defect rate with tied scores says how many images its threshold flags', () => {
  const t = chooseThreshold([0.3, 0.3, 0.3, 0.3, 0.3, 0.3], { method: 'rate', defectRate: 0.2 });
  assert.equal([0.3, 0.3, 0.3, 0.3, 0.3, 0.3].filter((s) => s > t.value).length, 0);
  assert.match(t.assumption, /the 1 highest-scoring images are flagged \(0, not 1: scores tie at the cut\)\./);
  assert.doesNotMatch(chooseThreshold([0.1, 0.2, 0.3, 0.4, 0.5], { method: 'rate', defectRate: 0.4 }).assumption, /tie/);
});

test('mad with more than half the scores equal (MAD = 0) falls back to the mean absolute deviation, not the median itself', () => {
  // Five identical good images and one other: the MAD is 0, so the threshold would be 0 and every
  // new image a hair above it would be flagged.
  const scores = [0, 0, 0, 0, 0, 0.6];
  const t = madThreshold(scores, 3);
  assert.ok(Math.abs(t - 3 * 1.2533 * (0.6 / 6)) < 1e-12, `threshold ${t}`);
  assert.ok(t > 0.0014 && t < 0.6, 'a near-identical image stays normal, the odd one is flagged');
  assert.equal(madThreshold([0.4, 0.4, 0.4], 3), 0.4, 'all equal: the median, nothing above it');
});

test('one decision rule: anomalous only strictly above the threshold', () => {
  assert.equal(decide(0.5, 0.5), 'normal');
  assert.equal(decide(0.5000001, 0.5), 'anomalous');
  assert.equal(decide(0, 0), 'normal');
});

test('decision quality: accuracy, F1 and confusion counts at the threshold, and the best achievable cut', () => {
  const scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
  const labels = [0, 0, 1, 0, 1, 1];
  const q = decisionQuality(scores, labels, 0.45);
  assert.equal(q.accuracy, 5 / 6);
  assert.equal(q.f1, 0.8);
  assert.deepEqual(q.confusion, { tp: 2, fp: 0, fn: 1, tn: 3 });
  assert.equal(q.bestAccuracy, 5 / 6);
  const all = decisionQuality(scores, labels, 0.25);
  assert.equal(all.accuracy, 5 / 6);
  assert.equal(all.f1, 6 / 7);
});

test('strongest region: the blob around the hottest pixel, scaled to original pixels', () => {
  const size = 10;
  const map = new Float32Array(size * size).fill(0.1);
  for (let y = 2; y <= 4; y++) for (let x = 5; x <= 7; x++) map[y * size + x] = 0.8;
  map[3 * size + 6] = 1;
  map[9 * size + 0] = 0.9; // a separate, weaker-peak blob elsewhere is not merged
  const r = strongestRegion(map, size, 100, 50);
  assert.deepEqual(r, { x: 50, y: 10, width: 30, height: 15 });
});

test('with a typical map the strongest region is where the map exceeds it most, not the place high in every image', () => {
  const size = 10;
  const typical = new Float32Array(size * size).fill(0.1);
  for (let x = 0; x < size; x++) typical[9 * size + x] = 0.9; // a bottom border high in every image
  const map = Float32Array.from(typical);
  map[9 * size + 0] = 0.95; // the map's max: the border, a little above its usual level
  map[3 * size + 6] = 0.6; // a defect: 0.5 above its place's level
  assert.deepEqual(strongestRegion(map, size, 10, 10), { x: 0, y: 9, width: 10, height: 1 }, 'the raw map: the border row');
  assert.deepEqual(strongestRegion(map, size, 10, 10, typical), { x: 6, y: 3, width: 1, height: 1 });
});

test('the heat scale of a batch spans its map values (not its image scores, which are excesses under image score excess)', () => {
  const maps = [Float32Array.from([0.2, 0.3, 0.9, 0.25]), Float32Array.from([0.1, 0.4, 0.5, 0.2])];
  assert.deepEqual(batchHeatScale(maps), { low: Math.fround(0.1), high: Math.fround(0.9) });
});

test('output names do not collide across folders; display names keep the relative path', () => {
  const files = ['/d/test/good/000.png', '/d/test/broken/000.png', '/d/test/good/a<b>.png'];
  assert.deepEqual(displayNames(files), ['good/000.png', 'broken/000.png', 'good/a<b>.png']);
  const stems = outputStems(files);
  assert.deepEqual(stems, ['good__000', 'broken__000', 'good__a_b_']);
  assert.deepEqual(outputStems(['/x/a?.png', '/x/a*.png']), ['a_', 'a_~1']);
  assert.deepEqual(displayNames(['/only/one.png']), ['one.png']);
});

test('output names of deeply nested inputs stay within what file systems allow, distinct, ending in the file name', () => {
  const dir = (c: string) => c.repeat(200);
  const files = [`/d/${dir('a')}/${dir('b')}/x1.png`, `/d/${dir('a')}/${dir('c')}/x1.png`, `/d/${dir('a')}/é${dir('é')}.png`, '/d/short.png'];
  const stems = outputStems(files);
  for (const s of stems) assert.ok(Buffer.byteLength(`${s}~99.npy`) <= 255, `${Buffer.byteLength(s)} bytes: ${s.slice(0, 40)}…`);
  assert.equal(new Set(stems).size, stems.length, 'distinct');
  assert.ok(stems[0].endsWith('__x1') && stems[1].endsWith('__x1'), 'the file name is kept at the end');
  assert.match(stems[0], /^[0-9a-f]{8}__/);
  assert.equal(stems[3], 'short', 'short names are unchanged');
  assert.ok(!stems[2].includes('\uFFFD'), 'multi-byte characters are not cut in half');
});

test('scores.csv quotes commas, quotes and newlines (RFC 4180)', () => {
  const csv = scoresCsv([
    { path: '/a,b/"x".png', imageScore: 0.5, rscinScore: 1, decision: 'anomalous', threshold: 0.3, region: { x: 1, y: 2, width: 3, height: 4 }, overlay: 'o.png', map: 'm.npy' },
    { path: '/bad\n.png', imageScore: null, rscinScore: null, decision: 'error', threshold: 0.3, region: null, overlay: null, map: null, error: 'cannot read' },
  ]);
  const lines = csv.split('\n');
  assert.equal(lines[0], 'path,image_score,rscin_score,decision,threshold,region_x,region_y,region_width,region_height,overlay,map,error');
  assert.equal(lines[1], '"/a,b/""x"".png",0.50000000,1,anomalous,0.30000000,1,2,3,4,o.png,m.npy,');
  assert.ok(csv.includes('"/bad\n.png",,,error,0.30000000,,,,,,,cannot read'));
});

test('npy encoding: v1.0 header padded to 64 bytes, little-endian float32 payload', () => {
  const data = Float32Array.from([1, 2.5, -3, 4, 5, 6]);
  const npy = encodeNpy(data, [2, 3]);
  const headerLen = npy[8] | (npy[9] << 8);
  assert.equal((10 + headerLen) % 64, 0);
  const header = new TextDecoder().decode(npy.subarray(10, 10 + headerLen));
  assert.match(header, /^\{'descr': '<f4', 'fortran_order': False, 'shape': \(2, 3\), \} *\n$/);
  const payload = new Float32Array(npy.slice(10 + headerLen).buffer);
  assert.deepEqual(Array.from(payload), [1, 2.5, -3, 4, 5, 6]);
});

test('turbo colormap endpoints and heat layer opacity rise with the score', () => {
  assert.deepEqual(turbo(0), [35, 23, 27]);
  const [r, , b] = turbo(1);
  assert.ok(r > 100 && b < 30, 'hot end is red');
  const layer = heatLayer(Float32Array.from([0, 1]), 1 /* size 1 reads one pixel */, { low: 0, high: 1 });
  assert.equal(layer.length, 4);
  const two = heatLayer(Float32Array.from([0, 0.5, 0.75, 1]), 2, { low: 0, high: 1 });
  assert.ok(two[3] < two[7] && two[7] < two[11] && two[11] < two[15]);
});
