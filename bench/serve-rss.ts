/**
 * `npm run bench:serve`: does `musc serve` hold memory flat under a long run? Starts the
 * server in a child process, sends `--requests` sequential `POST /score` (each followed by
 * `GET` of its heatmap, so the cache fills with rendered PNGs), samples the child's RSS from
 * /proc/<pid>/status after every request, and fits a least-squares line to the samples
 * taken once the heatmap cache is full (its entry count, `--cache` = the server's default
 * 256, or its byte budget, whichever comes first). Prints one JSON object on stdout.
 *
 *   npm run bench:serve -- [--requests 1000] [--images DIR] [--cache 256] [--heatmap-every 1] [--malloc mmap|default]
 *
 * `--malloc mmap` (default) starts the server with MALLOC_MMAP_THRESHOLD_=131072, the setting the
 * README recommends for long-running servers on glibc: buffers above 128 KiB (uploads, maps, PNGs)
 * are then always mmap-ed and returned to the system when freed. `default` keeps glibc's dynamic
 * threshold, which after the first large frees serves ~1 MB buffers from fragmenting arenas.
 *
 * Images: `--images DIR` (PNG/JPEG files, sent in turn), by default MVTec bottle test images
 * from ../shared/data when present (900 x 900, as a camera would send), else synthetic
 * plates; the bank is built from 10 other images of the same source with `musc bank build`.
 * Bar (issue #14): slope below 1 MB per 100 requests after the cache is full. Linux only.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSyntheticBatch } from '../src/demo/synthetic.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = resolve(here, '../..');
const MUSC = join(root, 'bin', 'musc.js');
const BOTTLE = resolve(root, '../shared/data/mvtec_ad/bottle/test/good');
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const malloc = arg('malloc', 'mmap');
if (malloc !== 'mmap' && malloc !== 'default') throw new Error(`--malloc must be mmap or default (got ${malloc})`);
const requests = Number(arg('requests', '1000'));
const cacheEntries = Number(arg('cache', '256'));
const heatmapEvery = Number(arg('heatmap-every', '1'));
const log = (s: string) => process.stderr.write(`${s}\n`);
const MB = 1e6;

/** Least-squares slope and intercept of y over x. */
function fit(xs: readonly number[], ys: readonly number[]): { slope: number; intercept: number } {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
  }
  const slope = sxx > 0 ? sxy / sxx : 0;
  return { slope, intercept: my - slope * mx };
}

async function rssBytes(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

function run(args: string[]): Promise<void> {
  return new Promise((res, rej) => {
    const c = spawn(process.execPath, [MUSC, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
    c.once('exit', (code) => (code === 0 ? res() : rej(new Error(`musc ${args.join(' ')} exited ${code}`))));
  });
}

const tmp = await mkdtemp(join(os.tmpdir(), 'musc-bench-serve-'));
let server: ReturnType<typeof spawn> | null = null;
try {
  // Images: 10 for the bank, the rest sent in turn.
  let files: string[];
  let source: string;
  const dir = arg('images', existsSync(BOTTLE) ? BOTTLE : '');
  if (dir) {
    files = (await readdir(dir)).filter((f) => /\.(png|jpe?g)$/i.test(f)).sort().map((f) => join(dir, f));
    source = dir;
  } else {
    await writeSyntheticBatch(join(tmp, 'plates'), { count: 30, seed: 3 });
    const t = join(tmp, 'plates', 'test');
    files = [];
    for (const k of (await readdir(t)).sort()) for (const f of (await readdir(join(t, k))).sort()) files.push(join(t, k, f));
    source = 'synthetic plates (256 x 256)';
  }
  if (files.length < 12) throw new Error(`need at least 12 images in ${source}`);
  const bankFiles = files.slice(0, 10);
  const uploads = await Promise.all(files.slice(10).map((f) => readFile(f)));
  const bank = join(tmp, 'bench.mbank');
  log(`building a bank of ${bankFiles.length} images from ${source}`);
  await run(['bank', 'build', ...bankFiles, '--out', bank]);

  const env = malloc === 'mmap' ? { ...process.env, MALLOC_MMAP_THRESHOLD_: '131072' } : process.env;
  server = spawn(process.execPath, [MUSC, 'serve', '--bank', bank, '--port', '0'], { stdio: ['ignore', 'ignore', 'pipe'], env });
  const url = await new Promise<string>((res, rej) => {
    let text = '';
    server!.stderr!.on('data', (d: Buffer) => {
      text += d;
      const m = /listening on (http:\/\/\S+?)\/?\s/.exec(text);
      if (m) res(m[1]);
    });
    server!.once('exit', (code) => rej(new Error(`musc serve exited ${code}: ${text}`)));
  });
  const pid = server.pid!;
  const rss: number[] = [await rssBytes(pid)];
  let cacheBytes = 0;
  let fullAt = -1; // request index after which the cache holds its maximum
  const t0 = performance.now();
  for (let i = 0; i < requests; i++) {
    const body = uploads[i % uploads.length];
    const res = await fetch(`${url}/score?name=u${i}.png`, { method: 'POST', headers: { 'content-type': 'image/png' }, body });
    const j = (await res.json()) as { heatmapUrl?: string; error?: string };
    if (res.status !== 200 || !j.heatmapUrl) throw new Error(`request ${i}: ${res.status} ${j.error}`);
    if (i % heatmapEvery === 0) {
      const h = await fetch(`${url}${j.heatmapUrl}`);
      const png = await h.arrayBuffer();
      if (h.status !== 200) throw new Error(`heatmap ${i}: ${h.status}`);
      cacheBytes += png.byteLength;
    }
    // Full once it holds `cacheEntries` entries or (approximately) its 256 MiB budget.
    if (fullAt < 0 && (i + 1 >= cacheEntries || cacheBytes >= 256 * 2 ** 20)) fullAt = i + 1;
    rss.push(await rssBytes(pid));
    if ((i + 1) % 100 === 0) log(`${i + 1} requests, rss ${(rss[rss.length - 1] / MB).toFixed(1)} MB`);
  }
  const seconds = (performance.now() - t0) / 1000;
  const from = fullAt < 0 ? rss.length : fullAt;
  const xs = rss.map((_, i) => i).slice(from);
  const ys = rss.slice(from).map((b) => b / MB);
  const { slope } = xs.length >= 2 ? fit(xs, ys) : { slope: NaN };
  // The allocator settles during the first cache turnover; the later half shows the trend that remains.
  const half = Math.floor(xs.length / 2);
  const late = xs.length - half >= 2 ? fit(xs.slice(half), ys.slice(half)).slope : NaN;
  const result = {
    requests,
    heatmapEvery,
    images: source,
    cacheEntries,
    cacheFullAfter: fullAt,
    samplesFitted: xs.length,
    rssMB: {
      start: +(rss[0] / MB).toFixed(1),
      atCacheFull: fullAt >= 0 ? +(rss[fullAt] / MB).toFixed(1) : null,
      end: +(rss[rss.length - 1] / MB).toFixed(1),
      maxAfterFull: xs.length ? +Math.max(...ys).toFixed(1) : null,
      minAfterFull: xs.length ? +Math.min(...ys).toFixed(1) : null,
    },
    slopeMBPer100Requests: +(slope * 100).toFixed(3),
    slopeLaterHalfMBPer100Requests: +(late * 100).toFixed(3),
    bar: 'slope < 1 MB per 100 requests after the heatmap cache is full',
    pass: slope * 100 < 1,
    msPerRequest: +((seconds * 1000) / requests).toFixed(1),
    seconds: +seconds.toFixed(1),
    malloc: malloc === 'mmap' ? 'MALLOC_MMAP_THRESHOLD_=131072' : 'glibc default',
    node: process.version,
    cpus: os.cpus().length,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  if (server && server.exitCode === null) {
    const exited = new Promise((r) => server!.once('exit', r));
    server.kill('SIGTERM');
    await exited;
  }
  await rm(tmp, { recursive: true, force: true });
}
