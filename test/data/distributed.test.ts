/**
 * Data tier: `musc run` on a bottle subset ($MUSC_DATA or ../shared/data) with a private
 * redis-server and 2 `musc worker` processes writes the same scores.json and maps as the
 * in-process `musc run`, also when one worker is SIGKILLed mid-tile, when the coordinator is
 * SIGKILLed and restarted with its job id, and with refinement. Synthetic vectors,
 * corrupt partials and coordinator restarts: test/distributed.test.ts.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { evaluationData, MUSC_BIN } from '../helpers.js';
import { startRedis, startWorker, tilesDone, type Child } from '../queue-helpers.js';

const run = promisify(execFile);
const BOTTLE = path.join(evaluationData(), 'mvtec_ad', 'bottle', 'test');
let files: string[] = [];
let tmp = '';
let redis: (Child & { url: string }) | undefined;
const workers: Child[] = [];

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'musc-dist-data-'));
  const pick = async (sub: string, n: number) => (await readdir(path.join(BOTTLE, sub))).sort().slice(0, n).map((f) => path.join(BOTTLE, sub, f));
  files = [...(await pick('good', 14)), ...(await pick('broken_large', 3)), ...(await pick('contamination', 3))];
  redis = await startRedis();
});
after(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await redis?.stop();
  await rm(tmp, { recursive: true, force: true });
});

/** scores.json parsed, and every map's bytes. */
async function outputsOf(out: string): Promise<{ doc: unknown; maps: Map<string, Buffer> }> {
  const doc: unknown = JSON.parse(await readFile(path.join(out, 'scores.json'), 'utf8'));
  const maps = new Map<string, Buffer>();
  for (const f of (await readdir(path.join(out, 'maps'))).sort()) maps.set(f, await readFile(path.join(out, 'maps', f)));
  return { doc, maps };
}

function assertSameOutputs(a: Awaited<ReturnType<typeof outputsOf>>, b: Awaited<ReturnType<typeof outputsOf>>): void {
  // scores.json holds no timing fields: the whole document must match.
  assert.deepStrictEqual(b.doc, a.doc);
  assert.deepStrictEqual([...b.maps.keys()], [...a.maps.keys()]);
  for (const [name, bytes] of a.maps) assert.ok(bytes.equals(b.maps.get(name)!), `maps/${name} differs`);
}

let inProcess: Awaited<ReturnType<typeof outputsOf>>;

test('in-process musc run on 20 bottle images (the reference)', async () => {
  const out = path.join(tmp, 'local');
  await run(process.execPath, [MUSC_BIN, 'run', ...files, '--out', out], { maxBuffer: 1 << 24 });
  inProcess = await outputsOf(out);
  assert.equal((inProcess.doc as { images: unknown[] }).images.length, 20);
});

test('musc run --queue with 2 musc worker processes: identical scores.json and maps', async () => {
  const store = path.join(tmp, 'store');
  workers.push(...(await Promise.all([startWorker(redis!.url, store), startWorker(redis!.url, store)])));
  const out = path.join(tmp, 'queued');
  const { stderr } = await run(process.execPath, [MUSC_BIN, 'run', ...files, '--out', out, '--queue', redis!.url, '--store', store], { maxBuffer: 1 << 24 });
  assert.match(stderr, /distributed: \d+ tiles/);
  assertSameOutputs(inProcess, await outputsOf(out));
  assert.ok(workers.every((w) => tilesDone(w).length > 0), 'both workers computed tiles');
  assert.deepStrictEqual(await readdir(store), [], 'the store keeps nothing of a finished run');
});

test('musc run --queue SIGKILLed mid-run and restarted with its --job-id resumes from the finished tiles: identical outputs', async (t) => {
  const store = path.join(tmp, 'store');
  const args = [MUSC_BIN, 'run', ...files, '--queue', redis!.url, '--store', store, '--job-id', 'restart-test', '--tile-blocks', '8'];
  const first = spawn(process.execPath, [...args, '--out', path.join(tmp, 'restart-1')], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((resolve) => first.once('exit', () => resolve()));
  try {
    const from = workers.map((w) => w.lines.length);
    // Killed once the workers have finished a few tiles of the run.
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        if (workers.reduce((n, w, i) => n + w.lines.slice(from[i]).filter((l) => / done in /.test(l)).length, 0) >= 6) {
          clearInterval(timer);
          resolve();
        }
      }, 20);
      first.once('exit', (code) => (clearInterval(timer), reject(new Error(`the first coordinator ended (${code}) before it was killed`))));
    });
  } finally {
    first.kill('SIGKILL');
    await exited;
  }
  const out = path.join(tmp, 'restart-2');
  const { stderr } = await run(process.execPath, [...args, '--out', out], { maxBuffer: 1 << 24 });
  const m = /distributed: (\d+) tiles \((\d+) reused, (\d+) recomputed\), (\d+) sets \((\d+) reused\)/.exec(stderr);
  assert.ok(m, stderr);
  assert.ok(Number(m[2]) + Number(m[5]) > 0, `nothing was resumed: ${m[0]}`);
  t.diagnostic(`restarted coordinator: ${m[0]}`);
  assertSameOutputs(inProcess, await outputsOf(out));
  assert.deepStrictEqual(await readdir(store), [], 'the store keeps nothing of a finished run');
});

test('musc run --queue while one worker is SIGKILLed mid-tile: identical scores.json and maps', async () => {
  const store = path.join(tmp, 'store');
  const [victim, survivor] = workers;
  const from = victim.lines.length;
  const out = path.join(tmp, 'killed');
  // Small tiles: many of them, each still ~0.2-0.5 s of GEMM.
  const coordinator = spawn(process.execPath, [MUSC_BIN, 'run', ...files, '--out', out, '--queue', redis!.url, '--store', store, '--tile-blocks', '4'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  coordinator.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => coordinator.once('exit', (code) => resolve(code)));
  try {
    // Kill at the victim's third tile: the set is loaded and the tile is running.
    let line = '';
    for (let i = 0, at = from; i < 3; i++) {
      line = await victim.waitFor(/^tile \S+ started/, 300_000, at);
      at = victim.lines.indexOf(line, at) + 1;
    }
    await victim.stop('SIGKILL');
    const id = /^tile (\S+) started/.exec(line)![1];
    assert.equal(await exited, 0, stderr);
    assert.ok(!tilesDone(victim).includes(id), 'the victim finished its tile before the kill: inconclusive');
    assert.ok(tilesDone(survivor).includes(id), `the killed worker's tile ${id} was not retried`);
  } finally {
    if (coordinator.exitCode === null) coordinator.kill('SIGKILL');
  }
  assertSameOutputs(inProcess, await outputsOf(out));
});

test('musc run --refine 0.2 --tile-mode rows on the queue (fine pass as a cross job, tiles owning their rows): identical outputs', async () => {
  const store = path.join(tmp, 'store');
  // The victim of the test above is gone: one worker is enough.
  const flags = ['--refine', '0.2'];
  const local = path.join(tmp, 'refine-local');
  await run(process.execPath, [MUSC_BIN, 'run', ...files, '--out', local, ...flags], { maxBuffer: 1 << 24 });
  const queued = path.join(tmp, 'refine-queued');
  const { stderr } = await run(process.execPath, [MUSC_BIN, 'run', ...files, '--out', queued, ...flags, '--tile-mode', 'rows', '--queue', redis!.url, '--store', store], { maxBuffer: 1 << 24 });
  assert.match(stderr, /refinement of \d+ rows/);
  assertSameOutputs(await outputsOf(local), await outputsOf(queued));
});
