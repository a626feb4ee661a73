/**
 * The shared scoring core (gemm-operands, pairwise, top-k): int8 distances from the
 * quantised vectors' own norms, units owned by images (tiles), cross jobs (banks,
 * refinement) against self jobs (batches). Every check is against a direct
 * transcription of the definition.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { int8Operands, int8Side, int8SideOf } from '../src/pipeline/gemm-operands.js';
import { WorkerPool, lnamdStackParallel, quantizeSides, sharedFloat32 } from '../src/pipeline/parallel.js';
import { lnamdStack, lnamdStackWithRange } from '../src/pipeline/lnamd.js';
import { intervalBounds, mutualScores, selfOperands, toDistance } from '../src/pipeline/msm.js';
import { crossBestMatches, crossBlockPlan, selfBestMatches, selfBlockPlan } from '../src/pipeline/pairwise.js';
import { channelDither, int8Scale, maxAbs, quantizeSymmetric, queryDither } from '../src/pipeline/quantize.js';
import { SimilarityKernel } from '../src/pipeline/similarity-kernel.js';
import { LargestK } from '../src/pipeline/top-k.js';
import { mulberry32 } from '../src/util/random.js';

/**
 * Unit vectors shaped like LNAMD output of a LayerNorm'd ReLU map: most channels share
 * one value (the standardised zero), the rest vary, a few spike (they set the int8
 * scale). One global int8 step rounds the shared channels alike, so quantised squared
 * norms drift by several % from 1, as measured on ResNet50 layer3 of bottle.
 */
function reluLikeUnits(rows: number, C: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  const z = new Float32Array(rows * C);
  for (let k = 0; k < rows; k++) {
    const shared = -0.4 - 0.2 * r(); // per-vector standardised zero
    let s = 0;
    for (let c = 0; c < C; c++) {
      const u = r();
      const v = u < 0.6 ? shared : u > 0.995 ? shared + 6 + 4 * r() : shared + 1.5 * r() * r();
      z[k * C + c] = v;
      s += v * v;
    }
    for (let c = 0; c < C; c++) z[k * C + c] /= Math.sqrt(s);
  }
  return z;
}

/**
 * The definition, on whatever vectors `vec` returns: for unit u, patch p, each unit of
 * another owner gives its minimum distance; the interval mean of the sorted minima.
 * With `refVec` (int8: the two sides' codes differ), a pair of units is measured as a self
 * job does: the lower unit's `vec` against the higher unit's `refVec`.
 */
function naiveScores(N: number, P: number, C: number, vec: (row: number) => Float64Array, owner: Int32Array, high = 0.3, d2Offset = 0, refVec = vec): Float64Array {
  const perOwner = owner.filter((o) => o === owner[0]).length;
  const others = N - perOwner;
  const { kMin, kMax } = intervalBounds(others + 1, 0, high);
  const out = new Float64Array(N * P);
  for (let u = 0; u < N; u++)
    for (let p = 0; p < P; p++) {
      const mins: number[] = [];
      for (let v = 0; v < N; v++) {
        if (owner[v] === owner[u]) continue;
        let best = Infinity;
        for (let q = 0; q < P; q++) {
          const [a, b] = u < v ? [vec(u * P + p), refVec(v * P + q)] : [vec(v * P + q), refVec(u * P + p)];
          let d = 0;
          for (let c = 0; c < C; c++) d += (a[c] - b[c]) ** 2;
          best = Math.min(best, Math.sqrt(Math.max(0, d - d2Offset)));
        }
        mins.push(best);
      }
      mins.sort((x, y) => x - y);
      out[u * P + p] = mins.slice(kMin, kMax).reduce((x, y) => x + y, 0) / (kMax - kMin);
    }
  return out;
}

/** Row `row` of `[rows, C]` values as the vector they stand for: (v − d_c)/scale. */
const rowsOf = (z: ArrayLike<number>, C: number, scale = 1, dither?: Float64Array) => (row: number) =>
  Float64Array.from({ length: C }, (_, c) => (z[row * C + c] - (dither ? dither[c] : 0)) / scale);
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

test('int8 scores are the exact distances of the quantised vectors (norm channels, dither), far closer to fp32 than √(2 − 2s)', async () => {
  const N = 10;
  const P = 12;
  const C = 512;
  const z = reluLikeUnits(N * P, C, 5);
  const owner = Int32Array.from({ length: N }, (_, i) => i);
  const scale = int8Scale(maxAbs(z), 127);
  const fp32 = naiveScores(N, P, C, rowsOf(z, C), owner);
  const errors: Record<string, number> = {};
  for (const dither of [false, true]) {
    // Query side and reference side round with different dithers (see queryDither).
    const dq = dither ? queryDither(C) : undefined;
    const dr = dither ? channelDither(C) : undefined;
    const vec = rowsOf(quantizeSymmetric(z, scale, 127, undefined, dq), C, scale, dq);
    const refVec = rowsOf(quantizeSymmetric(z, scale, 127, undefined, dr), C, scale, dr);
    if (!dither) {
      // Without dither, quantised squared norms really drift (the flaw being fixed).
      const drift = Math.max(...Array.from({ length: N * P }, (_, r) => Math.abs(vec(r).reduce((a, v) => a + v * v, 0) - 1)));
      assert.ok(drift > 0.03, `quantised squared norms drift: max |‖q‖² − 1| = ${drift}`);
    }
    // With dither the expected squared quantisation noise, C/12·2/s², is removed from every squared distance.
    const exactOnCodes = naiveScores(N, P, C, vec, owner, 0.3, dither ? (C / 12) * (2 / scale ** 2) : 0, refVec);
    const int8 = await mutualScores(z, { N, P, C }, { precision: 'int8', int8ReferenceLevels: 127, int8Dither: dither, queryRows: 24, maxBlockColumns: 36 });
    const err = maxDiff(int8, exactOnCodes);
    assert.ok(err < 2e-4, `dither ${dither}: int8 vs the exact distance of the codes: ${err}`);
    errors[dither ? 'dither' : 'plain'] = maxDiff(int8, fp32);
  }
  // What √(2 − 2·qa·qb/s²) gives (the old int8 arithmetic, no dither), for comparison.
  const codes = quantizeSymmetric(z, scale, 127);
  const innerOnly = (() => {
    const out = new Float64Array(N * P);
    const { kMin, kMax } = intervalBounds(N, 0, 0.3);
    for (let u = 0; u < N; u++)
      for (let p = 0; p < P; p++) {
        const mins: number[] = [];
        for (let v = 0; v < N; v++) {
          if (v === u) continue;
          let best = -Infinity;
          for (let q = 0; q < P; q++) {
            let s = 0;
            for (let c = 0; c < C; c++) s += codes[(u * P + p) * C + c] * codes[(v * P + q) * C + c];
            best = Math.max(best, s / (scale * scale));
          }
          mins.push(toDistance(best));
        }
        mins.sort((x, y) => x - y);
        out[u * P + p] = mins.slice(kMin, kMax).reduce((x, y) => x + y, 0) / (kMax - kMin);
      }
    return out;
  })();
  const errOld = maxDiff(innerOnly, fp32);
  assert.ok(errors.plain * 2 < errOld, `norm channels must cut the int8 error vs fp32 (${JSON.stringify(errors)}, old ${errOld})`);
  assert.ok(errors.dither < errors.plain, `the dither must cut it further (${JSON.stringify(errors)})`);
});

test('int8 with 7-bit reference codes (CPUs without VNNI): still the exact quantised distance, two scales', async () => {
  const N = 8;
  const P = 9;
  const C = 40;
  const z = reluLikeUnits(N * P, C, 8);
  const range = maxAbs(z);
  const sa = int8Scale(range, 127);
  const sb = int8Scale(range, 63);
  const dq = queryDither(C);
  const dr = channelDither(C);
  const qa = quantizeSymmetric(z, sa, 127, undefined, dq);
  const qb = quantizeSymmetric(z, sb, 63, undefined, dr);
  // The definition with a query side at sa and a reference side at sb (the lower unit on the query side).
  const owner = Int32Array.from({ length: N }, (_, i) => i);
  const want = naiveScores(N, P, C, rowsOf(qa, C, sa, dq), owner, 0.3, (C / 12) * (1 / sa ** 2 + 1 / sb ** 2), rowsOf(qb, C, sb, dr));
  for (const blocks of [{}, { queryRows: 18, maxBlockColumns: 18 }]) {
    const got = await mutualScores(z, { N, P, C }, { precision: 'int8', int8ReferenceLevels: 63, ...blocks });
    const err = maxDiff(got, want);
    assert.ok(err < 2e-4, `int8 (63 levels, blocks ${JSON.stringify(blocks)}) vs the exact quantised distance: ${err}`);
  }
});

test('units owned by images (tiles): same-image units are never compared, the interval spans the other images\' units', async () => {
  const T = 3; // units per image
  const images = 6;
  const N = T * images;
  const P = 5;
  const C = 16;
  const z = reluLikeUnits(N * P, C, 21);
  const owner = Int32Array.from({ length: N }, (_, u) => Math.floor(u / T));
  const want = naiveScores(N, P, C, rowsOf(z, C), owner);
  for (const [rows, cols] of [
    [5, 5],
    [15, 10],
    [1568, 1568],
  ]) {
    const got = await mutualScores(z, { N, P, C }, { owner, queryRows: rows, maxBlockColumns: cols });
    assert.ok(maxDiff(got, want) < 2e-5, `fp32, blocks ${rows}x${cols}: ${maxDiff(got, want)}`);
  }
  // Unbalanced owners have no single interval: refused.
  await assert.rejects(mutualScores(z, { N, P, C }, { owner: Int32Array.from({ length: N }, (_, u) => (u === 0 ? 0 : 1 + (u % 5))) }), /same number of units/);
});

test('a cross job (one image against the others) reproduces the rows of that image placed first in the batch: int8 bit for bit', async () => {
  const N = 9;
  const P = 16;
  const C = 48;
  const z = reluLikeUnits(N * P, C, 33);
  const K = intervalBounds(N).kMax;
  const i = 4;
  // The batch with image i first: a self job puts the lower unit of each pair on the query
  // side, so the first image is measured exactly as a cross job measures its query rows.
  const order = [i, ...Array.from({ length: N }, (_, k) => k).filter((k) => k !== i)];
  const zFirst = new Float32Array(z.length);
  order.forEach((k, n) => zFirst.set(z.subarray(k * P * C, (k + 1) * P * C), n * P * C));
  for (const precision of ['int8', 'fp32'] as const) {
    const kernel = await SimilarityKernel.create({ precision });
    try {
      const rows = z.subarray(i * P * C, (i + 1) * P * C);
      // The batch's quantisation: one scale for the whole set, each side its dither.
      const self = await selfOperands(z, C, precision, 127);
      const ops =
        precision === 'fp32'
          ? { ...self, query: rows }
          : int8Operands(int8Side(rows, int8Scale(maxAbs(z), 127), 127, queryDither(C)), int8Side(z, int8Scale(maxAbs(z), 127), 127, channelDither(C)), C);
      const best = new LargestK(P, K);
      const owner = new Int32Array(P).fill(i);
      await crossBestMatches(kernel, ops, { rows: P, owner }, { units: N, patches: P }, best, { queryRows: 7, maxBlockColumns: 40 });
      const got = best.meanOfRanks(0, K, toDistance);
      // Several block plans: the pairs' roles, hence the scores, do not depend on them.
      for (const blocks of [{}, { queryRows: 32, maxBlockColumns: 48 }]) {
        const batch = await mutualScores(zFirst, { N, P, C }, { precision, kernel, int8ReferenceLevels: 127, ...blocks });
        const want = batch.subarray(0, P);
        if (precision === 'int8') assert.deepEqual(Array.from(got), Array.from(want), `int8: identical (blocks ${JSON.stringify(blocks)})`);
        else assert.ok(maxDiff(got, want) < 1e-6, `fp32: ${maxDiff(got, want)}`);
      }
    } finally {
      await kernel.dispose();
    }
  }
});

test('int8 nearest neighbours that are near duplicates: the two sides\' own dithers keep them unbiased (one shared dither over-corrects them)', async () => {
  // Images that repeat one another up to a small perturbation (|δ| well below one int8
  // step per channel), as the background of aligned product photos does.
  const N = 8;
  const P = 10;
  const C = 512;
  const base = reluLikeUnits(P, C, 41);
  const r = mulberry32(42);
  const z = new Float32Array(N * P * C);
  for (let u = 0; u < N; u++)
    for (let p = 0; p < P; p++) {
      let s = 0;
      const o = (u * P + p) * C;
      for (let c = 0; c < C; c++) {
        z[o + c] = base[p * C + c] + 0.003 * (r() - 0.5); // ≈ 0.17 step rms per channel
        s += z[o + c] ** 2;
      }
      for (let c = 0; c < C; c++) z[o + c] /= Math.sqrt(s);
    }
  const fp32 = await mutualScores(z, { N, P, C }, { precision: 'fp32' });
  const now = await mutualScores(z, { N, P, C }, { precision: 'int8', int8ReferenceLevels: 127 });
  // The former arithmetic: one dither for both sides, the same mean noise removed.
  const scale = int8Scale(maxAbs(z), 127);
  const shared = int8Operands(int8Side(z, scale, 127, channelDither(C)), int8Side(z, scale, 127, channelDither(C)), C);
  const kernel = await SimilarityKernel.create({ precision: 'int8' });
  const { kMin, kMax } = intervalBounds(N);
  const best = new LargestK(N * P, kMax);
  await selfBestMatches(kernel, shared, { units: N, patches: P }, best);
  await kernel.dispose();
  const former = best.meanOfRanks(kMin, kMax, toDistance);
  const bias = (s: Float32Array) => Array.from(s).reduce((t, v, k) => t + v - fp32[k], 0) / s.length;
  const typical = Array.from(fp32).reduce((t, v) => t + v, 0) / fp32.length;
  assert.ok(bias(former) < -0.3 * typical, `one shared dither: nearest distances biased low (${bias(former)} of ${typical})`);
  assert.ok(Math.abs(bias(now)) < 0.25 * Math.abs(bias(former)), `own dithers: bias ${bias(now)} vs shared ${bias(former)}`);
  assert.ok(maxDiff(now, fp32) < 0.4 * maxDiff(former, fp32), `own dithers: max error ${maxDiff(now, fp32)} vs shared ${maxDiff(former, fp32)}`);
});

test('block plans cover every unit pair exactly once (self) and every row x unit once (cross)', () => {
  for (const [U, P, rows, cols] of [
    [17, 9, 27, 20],
    [5, 784, 1568, 1568],
    [40, 196, 1568, 1568],
  ]) {
    const seen = new Map<string, number>();
    for (const b of selfBlockPlan(U, P, { queryRows: rows, maxBlockColumns: cols })) {
      for (let q = b.q0; q < b.q1; q++)
        for (let r = b.r0; r < b.r1; r++) {
          if (b.q0 === b.r0 && r <= q) continue; // the diagonal block's upper triangle
          const key = `${Math.min(q, r)},${Math.max(q, r)}`;
          seen.set(key, (seen.get(key) ?? 0) + 1);
        }
    }
    assert.equal(seen.size, (U * (U - 1)) / 2, `U=${U}: every pair`);
    assert.ok([...seen.values()].every((n) => n === 1), `U=${U}: each pair once`);
    let cells = 0;
    for (const b of crossBlockPlan(U * P, { units: U, patches: P }, { queryRows: rows, maxBlockColumns: cols })) cells += (b.q1 - b.q0) * (b.r1 - b.r0);
    assert.equal(cells, U * P * U);
  }
});

test('the GEMM-only kernel runs the same shapes without reductions (benchmark floor)', async () => {
  for (const precision of ['fp32', 'int8'] as const) {
    const kernel = await SimilarityKernel.create({ precision });
    try {
      const z = reluLikeUnits(20, 8, 1);
      const ops = await selfOperands(z, 8, precision, 127);
      await kernel.gemmOnly(ops.query.subarray(0, 10 * ops.channels), ops.reference, { rows: 10, J: 4, Q: 5, C: ops.channels });
      await assert.rejects(kernel.gemmOnly(ops.query, ops.reference, { rows: 3, J: 4, Q: 5, C: ops.channels }), /do not fit/);
    } finally {
      await kernel.dispose();
    }
  }
});

test('a self job\'s two int8 sides from one pass equal the two sides quantised separately (codes and norm terms), also over worker threads; LNAMD reports the range maxAbs finds, also over worker threads', async () => {
  const C = 96;
  const workers = WorkerPool.open(2)!;
  try {
    // 40 rows: quantised in this thread; 3000 rows of 96: above the size parallel.ts splits over workers.
    for (const rows of [40, 3000]) {
      const z = reluLikeUnits(rows, C, 77);
      const sq = int8Scale(maxAbs(z), 127);
      const sr = int8Scale(maxAbs(z), 63);
      const query = { scale: sq, levels: 127, dither: queryDither(C), otherDither: channelDither(C) };
      const reference = { scale: sr, levels: 63, dither: channelDither(C), otherDither: queryDither(C) };
      const expected = [int8Side(z, sq, 127, query.dither, query.otherDither), int8Side(z, sr, 63, reference.dither, reference.otherDither)];
      for (const pool of [null, workers]) {
        const [a, b] = await quantizeSides(z, [query, reference], pool);
        const [a1] = await quantizeSides(z, [query], pool);
        const [b1] = await quantizeSides(z, [reference], pool);
        for (const [got, want] of [
          [int8SideOf(a, query), expected[0]],
          [int8SideOf(b, reference), expected[1]],
          [int8SideOf(a1, query), expected[0]],
          [int8SideOf(b1, reference), expected[1]],
        ]) {
          assert.deepEqual(Array.from(got.codes), Array.from(want.codes), `${rows} rows, ${pool ? 'workers' : 'this thread'}`);
          assert.deepEqual(Array.from(got.norms!.sumSq), Array.from(want.norms!.sumSq));
          assert.deepEqual(Array.from(got.norms!.cross), Array.from(want.norms!.cross));
          assert.deepEqual(Array.from(got.codes), Array.from(quantizeSymmetric(z, got.scale, got.levels, undefined, got.dither!)));
        }
      }
    }
    const r = mulberry32(3);
    const grids = Array.from({ length: 3 }, () => ({ layout: 'chw' as const, channels: 8, height: 5, width: 6, data: Float32Array.from({ length: 240 }, () => Math.max(0, r() - 0.5)) }));
    for (const deg of [1, 3, 5]) {
      const { z: zl, range } = lnamdStackWithRange(grids, deg);
      assert.equal(range, maxAbs(zl), `r = ${deg}`);
      assert.deepEqual(Array.from(zl), Array.from(lnamdStack(grids, deg)));
    }
    // Over worker threads (grids in shared memory, 13·64·360 values: above the split size): the same bits.
    const big = Array.from({ length: 13 }, () => ({ layout: 'chw' as const, channels: 64, height: 20, width: 18, data: sharedFloat32(Float32Array.from({ length: 64 * 360 }, () => Math.max(0, r() - 0.5))) }));
    for (const deg of [1, 3, 5]) {
      const serial = lnamdStackWithRange(big, deg);
      const parallel = await lnamdStackParallel(big, deg, workers);
      assert.equal(parallel.range, serial.range, `r = ${deg}`);
      assert.deepEqual(Buffer.from(parallel.z.buffer), Buffer.from(serial.z.buffer), `r = ${deg}`);
    }
  } finally {
    await workers.close();
  }
});

test('LNAMD memory handed back to the worker pool serves the next set of that size, with the same vectors as fresh memory; int8 mutual scoring over the workers equals this thread', async () => {
  const workers = WorkerPool.open(2)!;
  try {
    const r = mulberry32(19);
    // 13·64·360 values: above the size parallel.ts splits over workers.
    const grids = () => Array.from({ length: 13 }, () => ({ layout: 'chw' as const, channels: 64, height: 20, width: 18, data: sharedFloat32(Float32Array.from({ length: 64 * 360 }, () => Math.max(0, r() - 0.5))) }));
    const first = await lnamdStackParallel(grids(), 3, workers);
    const second = grids();
    workers.release(first.z);
    const again = await lnamdStackParallel(second, 3, workers);
    assert.equal(again.z.buffer, first.z.buffer, 'the handed-back buffer is reused');
    assert.deepEqual(Buffer.from(again.z.buffer), Buffer.from(lnamdStackWithRange(second, 3).z.buffer));
    // Arrays the pool did not hand out are ignored: the next set gets new memory.
    const foreign = sharedFloat32(again.z);
    workers.release(foreign);
    const next = await lnamdStackParallel(second, 3, workers);
    assert.ok(next.z.buffer !== foreign.buffer && next.z.buffer !== again.z.buffer, 'a new buffer');
    // A smaller set (12 of the 13 images: still above the split size) is written into the start of a larger spare buffer.
    workers.release(next.z);
    const fewer = second.slice(0, 12);
    const small = await lnamdStackParallel(fewer, 5, workers);
    assert.equal(small.z.buffer, next.z.buffer);
    assert.equal(small.z.length, (next.z.length / 13) * 12);
    assert.deepEqual(Buffer.from(small.z.buffer, 0, small.z.byteLength), Buffer.from(lnamdStackWithRange(fewer, 5).z.buffer));

    // A whole int8 self job with its operands quantised over the workers equals one in this thread.
    const dims = { N: 6, P: 90, C: 512 };
    const z = reluLikeUnits(dims.N * dims.P, dims.C, 5);
    assert.deepEqual(Array.from(await mutualScores(sharedFloat32(z), dims, { precision: 'int8', workers })), Array.from(await mutualScores(z, dims, { precision: 'int8' })));
  } finally {
    await workers.close();
  }
});
