/**
 * `npm run bench:dist`: the queued path (BullMQ on a private redis-server + `musc worker`
 * processes + a shared-folder store) against in-process mutual scoring on the same batch.
 *
 *   npm run bench:dist -- [--category bottle] [--repeats 2] [--tile-blocks 24] [--one-worker] [--json]
 *
 * Features of the category's test images (bottle: N = 83) are extracted once; then
 * `scoreFeatures` runs in-process and with the queued executor (1 worker with every core:
 * the same arithmetic resources), alternating, `--repeats` times each (best kept: the machine
 * may be shared; compared: `scoreFeatures` wall time, LNAMD + mutual scoring + maps + RsCIN,
 * the queued path with 2 sets in flight as the CLI runs it). Then `--tile-mode rows` once, and
 * 2 workers with 1 thread each. Checks the maps are bit-identical, and
 * reports the overhead of the queued path, tiles/s, seconds per tile and per GEMM block, and
 * the bytes moved through the store per image. Writes bench/dist-results.json.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openBackbone } from '../src/backbone/open.js';
import { QueuedScoring, DEFAULT_BLOCKS_PER_TILE } from '../src/distributed/coordinator.js';
import { extractFeatures, resolveConfig, scoreFeatures, type MuscScores, type StageTimes } from '../src/pipeline/musc.js';
import { selfBlockPlan } from '../src/pipeline/pairwise.js';
import { startRedis, startWorker, type Child } from '../test/queue-helpers.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const DATA = resolve(here, '../../../shared/data');
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const category = arg('category', 'bottle');
const repeats = Number(arg('repeats', '2'));
const twoWorkers = !process.argv.includes('--one-worker');
const blocksPerTile = Number(arg('tile-blocks', String(DEFAULT_BLOCKS_PER_TILE)));
const log = (s: string) => process.stderr.write(`${s}\n`);
const cores = os.availableParallelism();

const cfg = resolveConfig();
const { backbone } = await openBackbone({ layers: cfg.layers, imageSize: cfg.imageSize });
const testDir = join(DATA, 'mvtec_ad', category, 'test');
const files: string[] = [];
for (const d of (await readdir(testDir)).sort()) for (const f of (await readdir(join(testDir, d))).sort()) files.push(join(testDir, d, f));
const { features } = await extractFeatures(files, backbone, cfg);
await backbone.dispose();
const N = features.length;
log(`${category}: N = ${N}, ${cores} cores, precision ${cfg.precision}, ${blocksPerTile} blocks per tile`);

const zero = (): StageTimes => ({ lnamd: 0, msm: 0, maps: 0, rscin: 0 });
const sameMaps = (a: MuscScores, b: MuscScores) => a.maps.every((m, i) => Buffer.from(m.buffer).equals(Buffer.from(b.maps[i].buffer)));

const tmp = await mkdtemp(join(os.tmpdir(), 'musc-bench-dist-'));
const store = join(tmp, 'store');
const redis = await startRedis();
const workers: Child[] = [];
try {
  const inProcess = async () => {
    const times = zero();
    const t = performance.now();
    const scores = await scoreFeatures(features, cfg, { times });
    return { seconds: (performance.now() - t) / 1000, msm: times.msm, scores };
  };
  const queued = async (mode: 'pairs' | 'rows' = 'pairs') => {
    const q = await QueuedScoring.open({ queue: redis.url, store, blocksPerTile, mode });
    try {
      const times = zero();
      const t = performance.now();
      const scores = await scoreFeatures(features, cfg, { times, mutualScoring: q.mutualScoring, setsInFlight: 2 });
      const seconds = (performance.now() - t) / 1000;
      await q.finish();
      return { seconds, msm: times.msm, scores, stats: { ...q.stats } };
    } finally {
      await q.close();
    }
  };

  workers.push(await startWorker(redis.url, store, { threads: cores, lockMs: 30_000 }));
  const local: Awaited<ReturnType<typeof inProcess>>[] = [];
  const remote: Awaited<ReturnType<typeof queued>>[] = [];
  for (let i = 0; i < repeats; i++) {
    local.push(await inProcess());
    log(`in-process: ${local.at(-1)!.seconds.toFixed(2)} s (msm ${local.at(-1)!.msm.toFixed(2)} s)`);
    remote.push(await queued());
    log(`queued, 1 worker x ${cores} threads: ${remote.at(-1)!.seconds.toFixed(2)} s (msm ${remote.at(-1)!.msm.toFixed(2)} s)`);
  }
  const rows = await queued('rows');
  log(`queued, rows mode, 1 worker x ${cores} threads: ${rows.seconds.toFixed(2)} s`);
  const identical = [...remote, rows].every((r) => sameMaps(local[0].scores, r.scores));
  let two: Awaited<ReturnType<typeof queued>> | null = null;
  if (twoWorkers) {
    await workers.pop()!.stop('SIGTERM');
    workers.push(...(await Promise.all([startWorker(redis.url, store, { lockMs: 30_000 }), startWorker(redis.url, store, { lockMs: 30_000 })])));
    two = await queued();
    log(`queued, 2 workers x 1 thread: ${two.seconds.toFixed(2)} s`);
  }

  const best = <T extends { seconds: number }>(xs: T[]) => xs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
  const l = best(local);
  const r = best(remote);
  const s = r.stats;
  // GEMM blocks per run: every (layer, r) set of the one subset.
  const blocks = cfg.layers.reduce((sum, _, li) => {
    const g = features[0].units[0][li];
    return sum + cfg.rList.length * selfBlockPlan(N, g.height * g.width).length;
  }, 0);
  const moved = s.operandBytes + s.operandReadBytes + 2 * s.partialBytes;
  const result = {
    date: new Date().toISOString(),
    category,
    N,
    cores,
    precision: cfg.precision,
    blocksPerTile,
    identical: identical && (!two || sameMaps(local[0].scores, two.scores)),
    inProcess: { msmSeconds: +l.msm.toFixed(2), scoringSeconds: +l.seconds.toFixed(2) },
    queued1: {
      msmSeconds: +r.msm.toFixed(2),
      scoringSeconds: +r.seconds.toFixed(2),
      // scoreFeatures wall time: with 2 sets in flight the queued path's msm times overlap.
      overheadPct: +((100 * (r.seconds - l.seconds)) / l.seconds).toFixed(1),
      workerTileSeconds: +s.tileSeconds.toFixed(2),
      coordinatorPrepareSeconds: +s.prepareSeconds.toFixed(2),
      coordinatorMergeSeconds: +s.mergeSeconds.toFixed(2),
    },
    queued1Rows: {
      scoringSeconds: +rows.seconds.toFixed(2),
      tiles: rows.stats.tiles,
      workerTileSeconds: +rows.stats.tileSeconds.toFixed(2),
      coordinatorMergeSeconds: +rows.stats.mergeSeconds.toFixed(2),
      partialBytes: rows.stats.partialBytes,
    },
    queued2x1: two ? { scoringSeconds: +two.seconds.toFixed(2) } : null,
    tiles: s.tiles,
    blocks,
    tilesPerSecond: +(s.tiles / r.seconds).toFixed(2),
    secondsPerTile: +(s.tileSeconds / s.tiles).toFixed(3),
    secondsPerBlock: +(s.tileSeconds / blocks).toFixed(4),
    bytes: { operandsWritten: s.operandBytes, operandsRead: s.operandReadBytes, partials: s.partialBytes, movedPerImage: Math.round(moved / N) },
  };
  await writeFile(join(here, '../../bench/dist-results.json'), `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(result, null, process.argv.includes('--json') ? 0 : 2)}\n`);
} finally {
  await Promise.all(workers.map((w) => w.stop()));
  await redis.stop();
  await rm(tmp, { recursive: true, force: true });
}
