import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../src/errors.js';
import { lnamd, lnamdStack } from '../src/pipeline/lnamd.js';
import { anomalyMap, excessScore, imageScore, imageScoresOf, typicalMap, upsampleBilinear } from '../src/pipeline/maps.js';
import { intervalBounds, mutualScores, mutualScoresOf, type MutualScoring } from '../src/pipeline/msm.js';
import { rscin } from '../src/pipeline/rscin.js';
import { planBatch } from '../src/pipeline/geometry.js';
import { resolveConfig, scoreFeatures, type ImageFeatures, type MuscConfig } from '../src/pipeline/musc.js';
import { LargestK } from '../src/pipeline/top-k.js';
import { gridOfBatch, type ChwGrid, type HwcGrid } from '../src/tensor.js';
import { mulberry32 } from '../src/util/random.js';
import { sharedFloat32 } from '../src/pipeline/parallel.js';
import { maxAbs } from '../src/pipeline/quantize.js';

/** Deterministic pseudo-random numbers so failures reproduce. */
const rng = mulberry32;

function randomGrid(C: number, H: number, W: number, seed: number): ChwGrid {
  const r = rng(seed);
  return { data: Float32Array.from({ length: C * H * W }, () => r() * 4 - 1), channels: C, height: H, width: W };
}

function unitRows(v: Float64Array, P: number, C: number): Float64Array {
  const out = new Float64Array(v.length);
  for (let p = 0; p < P; p++) {
    let s = 0;
    for (let c = 0; c < C; c++) s += v[p * C + c] ** 2;
    for (let c = 0; c < C; c++) out[p * C + c] = v[p * C + c] / Math.sqrt(s);
  }
  return out;
}

test('lnamd r=1: whole-tensor standardisation then per-patch L2 normalisation', () => {
  const g = randomGrid(3, 4, 5, 1);
  const n = g.data.length;
  const mean = g.data.reduce((a, b) => a + b, 0) / n;
  const expected = new Float64Array(20 * 3);
  for (let c = 0; c < 3; c++) for (let p = 0; p < 20; p++) expected[p * 3 + c] = g.data[c * 20 + p] - mean;
  const want = unitRows(expected, 20, 3);
  const got = lnamd(g, 1);
  assert.equal(got.patches, 20);
  assert.equal(got.channels, 3);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got.data[i] - want[i]) < 1e-6, `entry ${i}`);
});

test('lnamd r=3 and r=5: the L2-normalised r x r window sum of the standardised grid, zero outside the grid', () => {
  const C = 2;
  const H = 5;
  const W = 4;
  const g = randomGrid(C, H, W, 2);
  const n = g.data.length;
  const mean = g.data.reduce((a, b) => a + b, 0) / n;
  const variance = g.data.reduce((a, b) => a + (b - mean) ** 2, 0) / n;
  const at = (c: number, u: number, v: number) => (g.data[c * H * W + u * W + v] - mean) / Math.sqrt(variance + 1e-5);
  const zeroPadded = (c: number, u: number, v: number) => (u < 0 || v < 0 || u >= H || v >= W ? 0 : at(c, u, v));
  const replicated = (c: number, u: number, v: number) => at(c, Math.min(H - 1, Math.max(0, u)), Math.min(W - 1, Math.max(0, v)));
  const windowSums = (r: number, value: (c: number, u: number, v: number) => number) => {
    const h = (r - 1) / 2;
    const out = new Float64Array(H * W * C);
    for (let c = 0; c < C; c++)
      for (let u = 0; u < H; u++)
        for (let v = 0; v < W; v++) {
          let s = 0;
          for (let du = -h; du <= h; du++) for (let dv = -h; dv <= h; dv++) s += value(c, u + du, v + dv);
          out[(u * W + v) * C + c] = s;
        }
    return unitRows(out, H * W, C);
  };
  for (const r of [3, 5]) {
    const want = windowSums(r, zeroPadded);
    const got = lnamd(g, r);
    let err = 0;
    for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got.data[i] - want[i]));
    assert.ok(err < 5e-7, `r=${r}: max |lnamd - reference| = ${err.toExponential(2)} (float32 rounding: 4.6e-8 measured)`);
    // Padding matters at the border: another padding (edge replication) gives other vectors there, so the check above can tell.
    const other = windowSums(r, replicated);
    let corner = 0;
    for (let c = 0; c < C; c++) corner = Math.max(corner, Math.abs(got.data[c] - other[c]));
    assert.ok(corner > 0.01, `r=${r}: corner patch under edge replication differs by only ${corner}`);
  }
  // Not checked because it cannot be observed: the reference's avg_pool2d divides by r² (count_include_pad), dividing by the
  // in-bounds count instead scales each patch's whole vector, which the L2 normalisation removes (spec §3, step 5).
  assert.throws(() => lnamd(g, 2), ConfigError);
});

/** The same grid token-major: `[gh*gw, C]`. */
function toHwc(g: ChwGrid): HwcGrid {
  const P = g.height * g.width;
  const data = new Float32Array(g.data.length);
  for (let c = 0; c < g.channels; c++) for (let p = 0; p < P; p++) data[p * g.channels + c] = g.data[c * P + p];
  return { data, channels: g.channels, height: g.height, width: g.width, layout: 'hwc' };
}

test('lnamd gives bit-identical vectors for a grid channel-major and token-major (rectangular grids, any C)', () => {
  // C = 37 is not a multiple of the 16-channel transposition tile; gh ≠ gw both ways.
  for (const [C, H, W, seed] of [[37, 5, 7, 3], [64, 9, 4, 4], [3, 1, 6, 5], [16, 3, 3, 6]] as const) {
    const chw = randomGrid(C, H, W, seed);
    const hwc = toHwc(chw);
    for (const r of [1, 3, 5]) {
      const a = lnamd(chw, r);
      const b = lnamd(hwc, r);
      assert.deepEqual([b.patches, b.channels, b.gridHeight, b.gridWidth], [H * W, C, H, W]);
      assert.deepEqual(b.data, a.data, `C=${C} ${H}x${W} r=${r}`);
    }
  }
  // lnamdStack packs either layout (and a mix) the same way.
  const grids = [randomGrid(20, 4, 6, 7), randomGrid(20, 4, 6, 8), randomGrid(20, 4, 6, 9)];
  assert.deepEqual(lnamdStack([grids[0], toHwc(grids[1]), toHwc(grids[2])], 3), lnamdStack(grids, 3));
  // A backbone batch in either layout slices into the same grids.
  const batch = { data: Float32Array.from([...toHwc(grids[0]).data, ...toHwc(grids[1]).data]), dims: [2, 4, 6, 20], layout: 'hwc' as const };
  const second = gridOfBatch(batch, 1);
  assert.equal(second.layout, 'hwc');
  assert.deepEqual(lnamd(second, 3).data, lnamd(grids[1], 3).data);
});

/** Direct transcription of the definition: min Euclidean distance per other image, mean of the K smallest. */
function naiveMutualScores(z: Float32Array, N: number, P: number, C: number, high = 0.3): Float64Array {
  const K = Math.floor((N - 1) * high);
  const out = new Float64Array(N * P);
  for (let i = 0; i < N; i++)
    for (let p = 0; p < P; p++) {
      const mins: number[] = [];
      for (let j = 0; j < N; j++) {
        if (j === i) continue;
        let best = Infinity;
        for (let q = 0; q < P; q++) {
          let d = 0;
          for (let c = 0; c < C; c++) d += (z[(i * P + p) * C + c] - z[(j * P + q) * C + c]) ** 2;
          best = Math.min(best, Math.sqrt(d));
        }
        mins.push(best);
      }
      mins.sort((a, b) => a - b);
      out[i * P + p] = mins.slice(0, K).reduce((a, b) => a + b, 0) / K;
    }
  return out;
}

function randomUnit(N: number, P: number, C: number, seed: number): Float32Array {
  const r = rng(seed);
  const z = new Float32Array(N * P * C);
  for (let k = 0; k < N * P; k++) {
    let s = 0;
    for (let c = 0; c < C; c++) {
      const v = r() - 0.5;
      z[k * C + c] = v;
      s += v * v;
    }
    for (let c = 0; c < C; c++) z[k * C + c] /= Math.sqrt(s);
  }
  return z;
}

test('mutualScores equals the direct definition (each pair once, both directions), for many block shapes', async () => {
  for (const [N, P, C, rows, cols] of [
    [7, 9, 5, 9, 9],
    [7, 9, 5, 18, 27],
    [12, 6, 4, 1568, 18],
    [12, 6, 4, 12, 6],
    [23, 4, 3, 12, 40],
  ] as const) {
    const z = randomUnit(N, P, C, N * 100 + P + rows);
    const want = naiveMutualScores(z, N, P, C);
    const got = await mutualScores(z, { N, P, C }, { maxBlockColumns: cols, queryRows: rows });
    for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) < 2e-5, `N=${N} rows=${rows} cols=${cols} entry ${i}: ${got[i]} vs ${want[i]}`);
  }
});

test('int8 mutual scoring stays within quantisation error of fp32 and keeps the ranking', async () => {
  const N = 16;
  const P = 25;
  const C = 64;
  const z = randomUnit(N, P, C, 99);
  const fp32 = await mutualScores(z, { N, P, C }, { queryRows: 50, maxBlockColumns: 75 });
  const int8 = await mutualScores(z, { N, P, C }, { precision: 'int8', queryRows: 50, maxBlockColumns: 75 });
  let maxDiff = 0;
  for (let i = 0; i < fp32.length; i++) maxDiff = Math.max(maxDiff, Math.abs(fp32[i] - int8[i]));
  assert.ok(maxDiff < 0.01, `max |int8 - fp32| = ${maxDiff}`);
  assert.ok(maxDiff > 0, 'int8 really ran (results are not bit-identical)');
  const rank = (xs: Float32Array) => Array.from(xs.keys()).sort((a, b) => xs[b] - xs[a]).slice(0, 10);
  assert.ok(rank(int8).filter((k) => rank(fp32).includes(k)).length >= 8, 'top patches mostly agree');
});

test('an outlier patch gets the highest mutual score', async () => {
  const N = 10;
  const P = 16;
  const C = 8;
  // Normal patches: small perturbations of one of two prototypes; one patch of image 3 points elsewhere.
  const r = rng(7);
  const images = Array.from({ length: N }, (_, i) => {
    const data = new Float32Array(P * C);
    for (let p = 0; p < P; p++) {
      let s = 0;
      for (let c = 0; c < C; c++) {
        const proto = (p % 2 === 0 ? c === 0 : c === 1) ? 1 : 0;
        const v = i === 3 && p === 5 ? (c === 7 ? 1 : 0) : proto + 0.05 * (r() - 0.5);
        data[p * C + c] = v;
        s += v * v;
      }
      for (let c = 0; c < C; c++) data[p * C + c] /= Math.sqrt(s);
    }
    return { data, patches: P, channels: C, gridHeight: 4, gridWidth: 4 };
  });
  const scores = await mutualScoresOf(images);
  let best = { i: -1, p: -1, s: -Infinity };
  scores.forEach((s, i) => s.forEach((v, p) => (v > best.s ? (best = { i, p, s: v }) : undefined)));
  assert.deepEqual([best.i, best.p], [3, 5]);
  assert.ok(Math.abs(best.s - Math.SQRT2) < 0.05, `orthogonal outlier is at distance ~sqrt(2), got ${best.s}`);
});

test('interval sizes match the reference and N <= 4 is a clear error', async () => {
  assert.deepEqual(intervalBounds(200), { kMin: 0, kMax: 59 });
  assert.deepEqual(intervalBounds(83), { kMin: 0, kMax: 24 });
  assert.deepEqual(intervalBounds(42), { kMin: 0, kMax: 12 });
  assert.deepEqual(intervalBounds(441), { kMin: 0, kMax: 132 });
  assert.deepEqual(intervalBounds(5), { kMin: 0, kMax: 1 });
  assert.throws(() => intervalBounds(4), ConfigError);
  await assert.rejects(mutualScores(randomUnit(4, 2, 3, 1), { N: 4, P: 2, C: 3 }), /at least 5 images/);
});

test('bilinear upsampling with align_corners=True', () => {
  const grid = Float32Array.from([0, 1, 2, 3]); // 2x2
  const up = upsampleBilinear(grid, 2, 2, 3);
  assert.deepEqual(Array.from(up), [0, 0.5, 1, 1, 1.5, 2, 2, 2.5, 3]);
  const map = anomalyMap(
    [
      { scores: grid, gridHeight: 2, gridWidth: 2 },
      { scores: Float32Array.from([4]), gridHeight: 1, gridWidth: 1 },
    ],
    3,
  );
  assert.equal(map[0], 2);
  assert.equal(map[8], 3.5);
  assert.equal(imageScore(map), 3.5);
});

/** NumPy's median of one pixel over the maps (sorted copy; mean of the two middle values). */
function medianAt(maps: readonly Float32Array[], i: number): number {
  const s = Float64Array.from(maps, (m) => m[i]).sort();
  return Math.fround((s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2);
}

test('typicalMap is the per-pixel median (odd and even counts, ties) and leaves the maps alone', () => {
  const r = rng(5);
  for (const n of [1, 2, 3, 4, 7, 10, 83]) {
    for (const ties of [false, true]) {
      // 300 pixels: more than one block of 256, so block edges are crossed.
      const maps = Array.from({ length: n }, () => Float32Array.from({ length: 300 }, () => (ties ? Math.round(r() * 3) / 3 : r())));
      const before = maps.map((m) => Float32Array.from(m));
      const typical = typicalMap(maps);
      for (let i = 0; i < 300; i++) assert.equal(typical[i], medianAt(maps, i), `n = ${n}, ties = ${ties}, pixel ${i}`);
      assert.deepEqual(maps, before, 'inputs unchanged');
    }
  }
  assert.throws(() => typicalMap([]), /no maps/);
  assert.throws(() => typicalMap([new Float32Array(3), new Float32Array(4)]), /different sizes/);
});

test("image score excess: a place that is high in every map loses to a defect that stands out from its place's level", () => {
  // Pixel 0 (a border, say) is 0.8 in every image; image 2 has a defect of 0.6 at pixel 3,
  // where the others have 0.2. The max ranks image 2 with the rest; the excess singles it out.
  const maps = [0, 1, 2, 3, 4].map((k) => Float32Array.from([0.8 + 0.01 * k, 0.3, 0.2, k === 2 ? 0.6 : 0.2]));
  const typical = typicalMap(maps);
  assert.deepEqual(Array.from(typical), [Math.fround(0.82), 0.3, 0.2, 0.2].map(Math.fround));
  const plain = maps.map(imageScore); // imageScore stays unary: it can be mapped over maps
  const excess = maps.map((m) => excessScore(m, typical));
  assert.equal(plain.indexOf(Math.max(...plain)), 4, 'the max follows the border');
  assert.equal(excess.indexOf(Math.max(...excess)), 2, 'the excess finds the defect');
  assert.ok(Math.abs(excess[2] - 0.4) < 1e-6);
  assert.deepEqual(Array.from(imageScoresOf(maps, null)), plain);
  assert.deepEqual(Array.from(imageScoresOf(maps, typical)), excess);
  assert.throws(() => excessScore(maps[0], new Float32Array(3)), /typical map/);
});

test('bilinear upsampling of a rectangular grid to a rectangular map (align_corners per axis)', () => {
  // A 2x3 grid (gh = 2, gw = 3) to width 5, height 3: x samples at 0, .5, 1, 1.5, 2; y at 0, .5, 1.
  const grid = Float32Array.from([0, 1, 2, 10, 11, 12]);
  const up = upsampleBilinear(grid, 2, 3, { width: 5, height: 3 });
  assert.deepEqual(Array.from(up), [0, 0.5, 1, 1.5, 2, 5, 5.5, 6, 6.5, 7, 10, 10.5, 11, 11.5, 12]);
  // A square size given as a number is the same as width = height.
  assert.deepEqual(upsampleBilinear(grid, 2, 3, 4), upsampleBilinear(grid, 2, 3, { width: 4, height: 4 }));
  assert.throws(() => upsampleBilinear(grid, 3, 3, 4), /expected 3x3/);
});

test('rscin: k=1 returns min-max normalised scores; larger windows average over similar images', () => {
  const scores = [1, 3, 2, 5];
  // Embeddings: images 0 and 1 identical, 2 and 3 identical, groups orthogonal.
  const e = Float32Array.from([1, 0, 1, 0, 0, 1, 0, 1]);
  const k1 = rscin(scores, e, 2, [1]);
  assert.deepEqual(Array.from(k1), [0, 0.5, 0.25, 1]);
  const k2 = rscin(scores, e, 2, [2]);
  // Each image's 2-neighbourhood is its own pair, with equal weights.
  assert.deepEqual(Array.from(k2), [0.25, 0.25, 0.625, 0.625]);
  const k12 = rscin(scores, e, 2, [1, 2]);
  assert.deepEqual(Array.from(k12), [0.125, 0.375, 0.4375, 0.8125]);
  assert.deepEqual(Array.from(rscin(scores, e, 2, [])), scores);
  assert.throws(() => rscin(scores, e, 2, [5]), ConfigError);
  // Raw dot products (DINO): image 1's longer embedding outranks image 0's own similarity, but a
  // window of one is still each image's own score; window 2 follows the similarities.
  const long = Float32Array.from([1, 0, 2, 0, 0, 1, 0, 1]);
  assert.deepEqual(Array.from(rscin(scores, long, 2, [1], { cosine: false })), [0, 0.5, 0.25, 1]);
  assert.deepEqual(Array.from(rscin(scores, long, 2, [2], { cosine: false })), [1 / 3, 1 / 3, 0.625, 0.625]);
});

test('LargestK keeps exactly the k largest values per row, in any arrival order', () => {
  const r = rng(5);
  const rows = 50;
  const k = 7;
  const sel = new LargestK(rows, k);
  const all: number[][] = Array.from({ length: rows }, () => []);
  for (let t = 0; t < 5000; t++) {
    const row = Math.floor(r() * rows);
    const v = Math.round(r() * 100) / 10; // many ties
    sel.push(row, v);
    all[row].push(v);
  }
  const means = sel.meanOfRanks(2, 5, (v) => v);
  for (let row = 0; row < rows; row++) {
    const desc = Float32Array.from(all[row]).sort().reverse();
    const want = (desc[2] + desc[3] + desc[4]) / 3;
    assert.ok(Math.abs(means[row] - want) < 1e-6, `row ${row}: ${means[row]} vs ${want}`);
  }
});

test('int8 with 7-bit reference codes (CPUs without VNNI) also stays close to fp32', async () => {
  const N = 12;
  const P = 16;
  const C = 48;
  const z = randomUnit(N, P, C, 123);
  const fp32 = await mutualScores(z, { N, P, C });
  const reduced = await mutualScores(z, { N, P, C }, { precision: 'int8', int8ReferenceLevels: 63 });
  let maxDiff = 0;
  for (let i = 0; i < fp32.length; i++) maxDiff = Math.max(maxDiff, Math.abs(fp32[i] - reduced[i]));
  assert.ok(maxDiff < 0.02, `max |int8(63) - fp32| = ${maxDiff}`);
});

/**
 * `n` images of one grid of random channels (layer `x`; 8 channels of 3 × 3 unless `grid` says
 * otherwise, in shared memory with `grid.shared`, as the backbone's grids are), files under
 * /batch/<folder(i)>/.
 */
function randomFeatures(n: number, seed: number, cfg: MuscConfig, folder: (i: number) => string = () => '.', grid = { channels: 8, side: 3, shared: false }): ImageFeatures[] {
  const r = rng(seed);
  const geometry = planBatch(cfg, []);
  const { channels, side, shared } = grid;
  return Array.from({ length: n }, (_, i) => {
    const data = Float32Array.from({ length: channels * side * side }, () => r());
    return {
      file: `/batch/${folder(i)}/${i}.png`,
      originalWidth: 10,
      originalHeight: 10,
      geometry,
      units: [[{ data: shared ? sharedFloat32(data) : data, channels, height: side, width: side }]],
      fine: null,
      embedding: Float32Array.from({ length: 4 }, () => r()),
    };
  });
}

test('onVectors gets each (layer, r) of a whole batch once, as LNAMD makes it, and nothing for a split batch; sets in flight on reused buffers score as one set at a time', async () => {
  // 12 images of 64 × 24 × 24 in shared memory: LNAMD and quantisation run on the worker threads,
  // and every set's vectors come from (and go back to) the pool's buffers.
  const cfg = resolveConfig({ imageSize: 32, layers: ['x'], rList: [1, 3, 5], precision: 'int8' });
  const features = randomFeatures(12, 31, cfg, (i) => (i % 2 ? 'a' : 'b'), { channels: 64, side: 24, shared: true });
  const grids = features.map((f) => f.units[0][0]);
  const seen: string[] = [];
  const one = await scoreFeatures(features, cfg, {
    threads: 2,
    onVectors: (l, r, z, range) => {
      seen.push(`${l}:${r}`);
      const own = lnamdStack(grids, r);
      assert.ok(Buffer.from(z.buffer, z.byteOffset, z.byteLength).equals(Buffer.from(own.buffer)), `r = ${r}: the vectors LNAMD makes`);
      assert.equal(range, maxAbs(own));
    },
  });
  assert.deepEqual(seen, ['0:1', '0:3', '0:5']);
  // Two sets in flight, the r = 3 set's executor reading its vectors late: the r = 5 set starts
  // meanwhile, so a buffer handed back before its set was scored would be overwritten under it.
  const late: MutualScoring = async (z, dims, opts, set) => {
    if (set.r === 3) await new Promise((done) => setTimeout(done, 300));
    return mutualScores(z, dims, opts);
  };
  const two = await scoreFeatures(features, cfg, { threads: 2, setsInFlight: 2, mutualScoring: late });
  assert.deepEqual(Array.from(two.imageScores), Array.from(one.imageScores));
  assert.ok(two.maps.every((m, i) => Buffer.from(m.buffer).equals(Buffer.from(one.maps[i].buffer))), 'maps equal');
  seen.length = 0;
  await scoreFeatures(features, { ...cfg, divideNum: 2 }, { threads: 2, onVectors: (l, r) => seen.push(`${l}:${r}`) });
  assert.deepEqual(seen, [], 'a batch split into subsets hands over no whole-batch vectors');
});

test('scoreFeatures with image score excess: the maps are unchanged, scores are the max excess over the whole batch\'s median', async () => {
  const cfg = resolveConfig({ imageSize: 32, layers: ['x'], divideNum: 2, precision: 'fp32' });
  const features = randomFeatures(12, 17, cfg, (i) => (i % 2 ? 'a' : 'b'));
  const plain = await scoreFeatures(features, cfg);
  const excess = await scoreFeatures(features, { ...cfg, imageScore: 'excess' });
  assert.equal(plain.typical, null);
  assert.deepEqual(excess.maps, plain.maps, 'segmentation maps do not depend on the image score');
  // One typical map over both subsets (like RsCIN), not one per subset.
  assert.deepEqual(excess.typical, typicalMap(plain.maps));
  excess.maps.forEach((m, i) => {
    let best = -Infinity;
    for (let p = 0; p < m.length; p++) best = Math.max(best, m[p] - excess.typical![p]);
    assert.equal(excess.imageScores[i], best);
  });
  assert.notDeepEqual(Array.from(excess.imageScores), Array.from(plain.imageScores));
  assert.throws(() => resolveConfig({ imageScore: 'mean' as never }), /image score must be max or excess/);
});

test('divideNum without explicit subsets splits by parent folder and scores within each subset', async () => {
  const cfg = resolveConfig({ imageSize: 32, layers: ['x'], divideNum: 2, precision: 'fp32' });
  const features = randomFeatures(12, 11, cfg, (i) => (i % 2 ? 'a' : 'b'));
  const split = await scoreFeatures(features, cfg);
  const whole = await scoreFeatures(features, { ...cfg, divideNum: 1 });
  assert.equal(split.maps.length, 12);
  assert.ok(split.imageScores.every(Number.isFinite));
  assert.notDeepEqual(Array.from(split.imageScores), Array.from(whole.imageScores), 'subsets change who is compared with whom');
  await assert.rejects(scoreFeatures(features, { ...cfg, divideNum: 3 }), /at least 5 images/);
});

test('a set that fails rejects scoreFeatures with its error, also with sets still queued (no silent hang)', async () => {
  const cfg = resolveConfig({ imageSize: 32, layers: ['x'], rList: [1, 3, 5, 7], precision: 'fp32' });
  const features = randomFeatures(6, 12, cfg);
  for (const setsInFlight of [1, 2]) {
    let calls = 0;
    const failing = async (): Promise<Float32Array> => {
      calls++;
      throw new Error('executor lost');
    };
    // Before the fix the queued sets were dropped unsettled and this await never returned.
    await assert.rejects(scoreFeatures(features, cfg, { mutualScoring: failing, setsInFlight }), /executor lost/);
    // The sets in flight, and the one p-limit starts as the first fails; the fourth never runs.
    assert.ok(calls >= 1 && calls <= setsInFlight + 1, `${calls} of 4 sets ran (setsInFlight ${setsInFlight})`);
  }
});
