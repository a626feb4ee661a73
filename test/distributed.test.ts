/**
 * Distributed mutual scoring (src/distributed): tiles merged in any order give the
 * in-process scores exactly; a coordinator and 2 `musc worker` processes on a private
 * redis-server (127.0.0.1, random port, no persistence) give the same scores (int8
 * bit-identical, fp32 within 1e-6), refinement's jobs too; a restarted coordinator resumes from finished tiles;
 * corrupt and missing partials are recomputed, never merged; a SIGKILLed worker's tile is
 * retried by the other. Synthetic unit vectors: no model, no data. Real images: test/data/distributed.test.ts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Queue } from 'bullmq';
import { QueuedScoring } from '../src/distributed/coordinator.js';
import { decodePartial, encodePartial, type Partial } from '../src/distributed/format.js';
import { connectionFrom, QUEUE_NAME } from '../src/distributed/queue.js';
import { computeTile, mergePartial, rowTilePlan, tilePlan } from '../src/distributed/tiles.js';
import { int8ReferenceLevels, intervalBounds, mutualScores, othersPerUnit, selfOperands, toDistance, type MsmOptions } from '../src/pipeline/msm.js';
import { selfBlockPlan } from '../src/pipeline/pairwise.js';
import { refineScores } from '../src/pipeline/refine.js';
import { maxAbs } from '../src/pipeline/quantize.js';
import { SimilarityKernel } from '../src/pipeline/similarity-kernel.js';
import { LargestK } from '../src/pipeline/top-k.js';
import { MUSC_BIN } from './helpers.js';
import { startRedis, startWorker, tilesDone, type Child } from './queue-helpers.js';
import { writePlates } from './robustness/harness.js';

/** Unit vectors `[N, P, C]` from a seeded generator, clustered so the top-K lists hold ties and near-ties. */
function unitVectors(N: number, P: number, C: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const rand = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const z = new Float32Array(N * P * C);
  for (let row = 0; row < N * P; row++) {
    const v = z.subarray(row * C, (row + 1) * C);
    // Patches of a few prototypes plus noise: many similar values across images.
    const proto = row % 7;
    let n = 0;
    for (let c = 0; c < C; c++) {
      v[c] = (c % 7 === proto ? 1 : 0) + 0.3 * (rand() - 0.5);
      n += v[c] * v[c];
    }
    for (let c = 0; c < C; c++) v[c] /= Math.sqrt(n);
  }
  return z;
}

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

const dims = { N: 12, P: 64, C: 48 };
// Small blocks so a small set has many tiles: 2 units per query group and reference chunk.
const sizes = { queryRows: 128, maxBlockColumns: 128 };
const z = unitVectors(dims.N, dims.P, dims.C, 1);
const set = { subset: 0, layer: 'synthetic', r: 1 };

let redis: (Child & { url: string }) | undefined;
const workers: Child[] = [];
let tmp = '';
let store = '';

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'musc-dist-'));
  store = path.join(tmp, 'store');
  redis = await startRedis();
  workers.push(...(await Promise.all([startWorker(redis.url, store), startWorker(redis.url, store)])));
});
after(async () => {
  // Everything started here is stopped, also when a test failed.
  await Promise.all(workers.map((w) => w.stop()));
  await redis?.stop();
  await rm(tmp, { recursive: true, force: true });
});

test('tiles computed separately and merged in any order give the in-process scores, bit for bit', async () => {
  for (const precision of ['int8', 'fp32'] as const) {
    const opts: MsmOptions = { ...sizes, precision };
    const ref = await mutualScores(z, dims, opts);
    const { kMin, kMax } = intervalBounds(othersPerUnit(dims.N) + 1);
    const ops = await selfOperands(z, dims.C, precision, int8ReferenceLevels(), true, maxAbs(z));
    const pairTiles = tilePlan(selfBlockPlan(dims.N, dims.P, sizes), dims.P, 2);
    assert.ok(pairTiles.length >= 10, `${pairTiles.length} tiles`);
    assert.ok(pairTiles.some((t) => t.ranges.length === 2), 'some tiles touch two row ranges');
    // Rows mode: each tile owns one query group's rows; every ordered pair is computed by its owner.
    const rowTiles = rowTilePlan(dims.N, dims.P, sizes, 2);
    assert.ok(rowTiles.every((t) => t.ranges.length === 1) && rowTiles.some((t) => t.blocks.some((b) => b.r0 === t.ranges[0][0] / dims.P && b.q0 < b.r0)), 'rows tiles own one range and take column maxima from earlier groups');
    const kernel = await SimilarityKernel.create({ precision, threads: 1 });
    try {
      for (const [mode, tiles] of [['pairs', pairTiles], ['rows', rowTiles]] as const) {
        // Each tile goes through its file format, as between a worker and the coordinator.
        const parts: Partial[] = [];
        for (const t of tiles) parts.push(decodePartial(encodePartial(await computeTile(kernel, { kind: 'self', ops, units: dims.N, patches: dims.P, k: kMax }, 'set', t))));
        const orders = [parts, [...parts].reverse(), parts.map((p, i) => parts[(i * 7) % parts.length])];
        for (const order of orders) {
          const best = new LargestK(dims.N * dims.P, kMax);
          for (const p of order) mergePartial(best, p);
          assert.ok(bits(best.meanOfRanks(kMin, kMax, toDistance)).equals(bits(ref)), `${precision}, ${mode}: merged scores differ from the in-process ones`);
        }
      }
    } finally {
      await kernel.dispose();
    }
  }
});

test('coordinator + 2 worker processes on Redis: int8 bit-identical, fp32 within 1e-6, owners and shared int8 range honoured, both tile modes', async () => {
  const q = await QueuedScoring.open({ queue: redis!.url, store, blocksPerTile: 2 });
  try {
    const owner = Int32Array.from({ length: dims.N }, (_, u) => Math.floor(u / 2));
    const cases: MsmOptions[] = [
      { precision: 'int8' },
      { precision: 'fp32' },
      { precision: 'int8', owner, int8Range: 1.25 * maxAbs(z) },
      { precision: 'int8', int8ReferenceLevels: 63, int8Dither: false, intervalLow: 0.1, intervalHigh: 0.5 },
    ];
    for (const c of cases) {
      const ref = await mutualScores(z, dims, { ...sizes, ...c });
      const progress: number[] = [];
      const got = await q.mutualScoring(z, dims, { ...sizes, ...c, onProgress: (f) => progress.push(f) }, set);
      if (c.precision === 'fp32') assert.ok(maxAbsDiff(got, ref) <= 1e-6, `fp32 differs by ${maxAbsDiff(got, ref)}`);
      else assert.ok(bits(got).equals(bits(ref)), `${JSON.stringify({ ...c, owner: !!c.owner })}: queued scores differ`);
      assert.equal(progress.at(-1), 1);
      assert.ok(progress.every((f, i) => i === 0 || f >= progress[i - 1]));
    }
    assert.ok(workers.every((w) => tilesDone(w).length > 0), 'both workers computed tiles');
    assert.equal(q.stats.tilesRecomputed, 0);
    // Tiles that own their rows (each pair computed twice): the same scores.
    const rows = await QueuedScoring.open({ queue: redis!.url, store, blocksPerTile: 3, mode: 'rows' });
    try {
      for (const c of cases) {
        const ref = await mutualScores(z, dims, { ...sizes, ...c });
        const got = await rows.mutualScoring(z, dims, { ...sizes, ...c }, set);
        if (c.precision === 'fp32') assert.ok(maxAbsDiff(got, ref) <= 1e-6, `rows, fp32 differs by ${maxAbsDiff(got, ref)}`);
        else assert.ok(bits(got).equals(bits(ref)), `rows, ${JSON.stringify({ ...c, owner: !!c.owner })}: queued scores differ`);
      }
      await rows.finish();
    } finally {
      await rows.close();
    }
    assert.ok(q.stats.partialBytes > 0 && q.stats.operandBytes > 0);
    await q.finish();
    await assert.rejects(readdir(path.join(store, q.jobId)), { code: 'ENOENT' }, 'the store keeps nothing of a finished run');
  } finally {
    await q.close();
  }
});

test('refinement on the queue: its cross job (q < ½) and full fine pass (q ≥ ½) give the in-process scores, bit for bit', async () => {
  // Coarse 4x4 grids, fine 8x8 (the fine vectors are the synthetic set above).
  const zc = unitVectors(dims.N, 16, dims.C, 3);
  const coarse = { scores: await mutualScores(zc, { N: dims.N, P: 16, C: dims.C }, { precision: 'int8' }), gridHeight: 4, gridWidth: 4 };
  const fine = { gridHeight: 8, gridWidth: 8 };
  const q = await QueuedScoring.open({ queue: redis!.url, store, blocksPerTile: 1 });
  try {
    for (const fraction of [0.2, 0.6]) {
      const opts = { precision: 'int8' as const, queryRows: 96, maxBlockColumns: 128 };
      const ref = await refineScores(z, dims, coarse, fine, fraction, opts);
      const sets = q.stats.sets;
      const got = await refineScores(z, dims, coarse, fine, fraction, { ...opts, mutual: q.mutualScoring, cross: q.crossScoring });
      assert.equal(got.refined, ref.refined);
      assert.ok(bits(got.scores).equals(bits(ref.scores)), `q = ${fraction}: queued refinement differs`);
      assert.equal(q.stats.sets, sets + 1, 'the fine pass ran on the queue');
    }
    await q.finish();
  } finally {
    await q.close();
  }
});

test('a restarted coordinator resumes from the finished tiles; corrupt and missing partials are recomputed, never merged', async () => {
  const jobId = 'resume-test';
  const opts: MsmOptions = { ...sizes, precision: 'int8' };
  const ref = await mutualScores(z, dims, opts);
  const before = workers.flatMap(tilesDone).length;
  // The first coordinator queues the tiles and dies (aborted) before merging anything.
  const ctrl = new AbortController();
  const q1 = await QueuedScoring.open({ queue: redis!.url, store, jobId, blocksPerTile: 2, log: (m) => m.includes('tiles queued') && ctrl.abort(new Error('coordinator stopped')) });
  await assert.rejects(q1.mutualScoring(z, dims, { ...opts, signal: ctrl.signal }, set), /coordinator stopped/);
  await q1.close();
  const tiles = q1.stats.tiles;
  // The workers go on without a coordinator.
  const queue = new Queue(QUEUE_NAME, { connection: connectionFrom(redis!.url) });
  try {
    for (let t = 0; (await queue.getJobCounts('completed')).completed < tiles; t++) {
      assert.ok(t < 600, 'the workers did not finish the queued tiles');
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await queue.close();
  }
  const partDir = path.join(store, jobId, 'tiles');
  const parts = (await readdir(partDir)).sort();
  assert.equal(parts.length, tiles);
  const bad = await readFile(path.join(partDir, parts[0]));
  bad[bad.length - 5] ^= 0x40; // one flipped bit in a value
  await writeFile(path.join(partDir, parts[0]), bad);
  await unlink(path.join(partDir, parts[1]));

  const logs: string[] = [];
  const q2 = await QueuedScoring.open({ queue: redis!.url, store, jobId, blocksPerTile: 2, log: (m) => logs.push(m) });
  try {
    const got = await q2.mutualScoring(z, dims, opts, set);
    assert.ok(bits(got).equals(bits(ref)), 'resumed scores differ');
    assert.equal(q2.stats.tilesReused, tiles);
    assert.equal(q2.stats.tilesRecomputed, 2);
    assert.equal(logs.filter((l) => /checksum/.test(l)).length, 1, logs.join('\n'));
    assert.equal(logs.filter((l) => /missing/.test(l)).length, 1, logs.join('\n'));
    await new Promise((r) => setTimeout(r, 200)); // the workers' last log lines
    assert.equal(workers.flatMap(tilesDone).length - before, tiles + 2, 'each tile computed once, plus the two bad ones');
    // A coordinator restarted after the set was merged takes its scores from the store.
    const q3 = await QueuedScoring.open({ queue: redis!.url, store, jobId, blocksPerTile: 2 });
    try {
      assert.ok(bits(await q3.mutualScoring(z, dims, opts, set)).equals(bits(ref)));
      assert.equal(q3.stats.setsReused, 1);
      assert.equal(q3.stats.tiles, 0);
    } finally {
      await q3.close();
    }
    await q2.finish();
  } finally {
    await q2.close();
  }
});

test('a worker killed mid-tile (SIGKILL) loses nothing: the other worker computes its tile', async () => {
  // Heavier tiles (~0.3 s each on one thread) so the kill lands while the tile runs.
  const big = { N: 20, P: 400, C: 512 };
  const zb = unitVectors(big.N, big.P, big.C, 2);
  const opts: MsmOptions = { precision: 'fp32' };
  const ref = await mutualScores(zb, big, opts);
  const [victim, survivor] = workers;
  const from = victim.lines.length;
  const q = await QueuedScoring.open({ queue: redis!.url, store, blocksPerTile: 6 });
  try {
    const running = q.mutualScoring(zb, big, opts, set);
    const line = await victim.waitFor(/^tile \S+ started/, 60_000, from);
    await victim.stop('SIGKILL');
    const id = /^tile (\S+) started/.exec(line)![1];
    const got = await running;
    assert.ok(maxAbsDiff(got, ref) <= 1e-6, `fp32 differs by ${maxAbsDiff(got, ref)}`);
    assert.ok(!tilesDone(victim).includes(id), 'the victim finished its tile before the kill: inconclusive');
    assert.ok(tilesDone(survivor).includes(id), `the killed worker's tile ${id} was not retried`);
    await q.finish();
  } finally {
    await q.close();
  }
});

test('a run whose Redis does not answer exits 2 with one line naming the URL, not a silent hang', { timeout: 90_000 }, async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'musc-noredis-'));
  try {
    await writePlates(dir, 'p', 5);
    const t0 = performance.now();
    // Port 1: nothing listens there, so every connection is refused (and BullMQ would retry for ever).
    // A child process, so a regression fails here (killed at 60 s) instead of hanging the test file.
    const out = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(process.execPath, [MUSC_BIN, 'run', 'p', '--out', 'o', '--queue', 'redis://127.0.0.1:1', '--store', 'store'], { cwd: dir, timeout: 60_000 }, (err, _stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stderr }),
      );
    });
    assert.equal(out.code, 2, out.stderr);
    assert.match(out.stderr, /^musc: --queue redis:\/\/127\.0\.0\.1:1: cannot reach Redis \(no answer after retrying for 10 s: .*ECONNREFUSED/m);
    assert.ok(performance.now() - t0 < 45_000, 'within the connect timeout, plus start-up');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
