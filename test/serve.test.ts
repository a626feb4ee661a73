/**
 * `musc serve` over real HTTP: a real (small) bank of synthetic plates (`musc demo`'s generator,
 * no ../shared needed) and the bundled ResNet50, uploads as multipart and raw bodies, heatmaps at
 * the original size, corrupt and oversized uploads, a burst of 50 concurrent requests (consistent,
 * none lost), memory that does not grow with requests (server in a child process, sampled after
 * GC), the queue limit (503 + Retry-After), and the upload page driven in Chromium.
 */
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { openBackbone } from '../src/backbone/open.js';
import { buildBank } from '../src/bank/bank.js';
import { Musc } from '../src/api/musc.js';
import { encodeBank } from '../src/bank/format.js';
import { bankBackboneOf, type MuscScorer } from '../src/bank/scorer.js';
import { extractFeatures, resolveConfig, scoreFeatures } from '../src/pipeline/musc.js';
import { createServer, type ErrorResponse, type HealthResponse, type ScoreResponse } from '../src/serve/server.js';
import { CHROMIUM, writePlates } from './helpers.js';

let tmp = '';
/** Bank images: 6 good plates and 4 with defects. */
let BANK_FILES: string[] = [];
/** Plates not in the bank, uploaded by the tests: one good, two with defects. */
let UPLOADS: string[] = [];
let scorer: MuscScorer;
/** The heat scale the bank must report, computed from its images' maps here. */
let BANK_HEAT: { low: number; high: number } = { low: NaN, high: NaN };
const apps: FastifyInstance[] = [];
let base = '';
const images: { name: string; bytes: Buffer; width: number; height: number }[] = [];

async function listen(app: FastifyInstance): Promise<string> {
  apps.push(app);
  await app.listen({ port: 0, host: '127.0.0.1' });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

function multipart(bytes: Uint8Array, name: string, field = 'image'): FormData {
  const form = new FormData();
  form.append(field, new Blob([bytes], { type: 'image/png' }), name);
  return form;
}

async function postImage(url: string, img: { name: string; bytes: Uint8Array }): Promise<Response> {
  return fetch(`${url}/score`, { method: 'POST', body: multipart(img.bytes, img.name) });
}

before(async () => {
  const t0 = performance.now();
  tmp = await mkdtemp(path.join(os.tmpdir(), 'musc-serve-test-'));
  // 512 px: large enough for the upload-size limits below, heatmaps are drawn at this size.
  const plates = await writePlates(path.join(tmp, 'plates'), { count: 24, size: 512 });
  BANK_FILES = [...plates.good.slice(0, 6), ...plates.defective.slice(0, 4)];
  UPLOADS = [plates.good[6], plates.defective[4], plates.defective[5]];
  // Image score excess, as `musc bank build` makes banks by default.
  const cfg = resolveConfig({ imageScore: 'excess' });
  const { backbone } = await openBackbone({ layers: ['layer2', 'layer3'], imageSize: 224 });
  try {
    const { features, failures } = await extractFeatures(BANK_FILES, backbone, cfg);
    assert.equal(failures.length, 0);
    const bank = await buildBank(features, cfg, { backbone: bankBackboneOf(backbone, {}, null) });
    // The heatmaps' scale is in map units: from half the lowest to the highest map maximum of the bank's images.
    const maxima = (await scoreFeatures(features, cfg)).maps.map((m) => m.reduce((a, v) => Math.max(a, v), -Infinity));
    BANK_HEAT = { low: 0.5 * Math.min(...maxima), high: Math.max(...maxima) };
    scorer = await Musc.open({ bank });
  } finally {
    await backbone.dispose();
  }
  for (const file of UPLOADS) {
    const bytes = await readFile(file);
    const meta = await sharp(bytes).metadata();
    images.push({ name: `${path.basename(path.dirname(file))}_${path.basename(file)}`, bytes, width: meta.width!, height: meta.height! });
  }
  base = await listen(await createServer({ scorer }));
  process.stderr.write(`# bank of ${BANK_FILES.length} images and server ready in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
});

after(async () => {
  // Closing must not wait for idle or never-used client sockets (undici opens spares after aborts).
  const t0 = performance.now();
  for (const app of apps) await app.close();
  await scorer?.dispose();
  assert.ok(performance.now() - t0 < 10_000, `closing took ${(performance.now() - t0).toFixed(0)} ms`);
  await rm(tmp, { recursive: true, force: true });
});

test('GET /health describes the bank and the queue', async () => {
  const res = await fetch(`${base}/health`);
  assert.equal(res.status, 200);
  const h = (await res.json()) as HealthResponse;
  assert.equal(h.status, 'ok');
  assert.equal(h.bank.images, BANK_FILES.length);
  assert.equal(h.bank.reference, 'unlabeled');
  assert.equal(h.bank.imageSize, 224);
  assert.match(h.bank.backbone, /resnet50/i);
  assert.ok(Number.isFinite(h.bank.threshold));
  assert.deepEqual(h.queue, { running: 0, waiting: 0, limit: 64 });
  assert.equal(h.bank.imageScore, 'excess');
  assert.deepEqual(h.heatScale, BANK_HEAT);
  assert.ok(h.heatScale.high > Math.max(...scorer.bank.images.map((im) => im.score)), 'map units, not the excess scores');
});

async function checkHeatmap(url: string, width: number, height: number, server = base): Promise<void> {
  const res = await fetch(`${server}${url}`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'image/png');
  const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
  assert.equal(meta.format, 'png');
  assert.equal(meta.width, width);
  assert.equal(meta.height, height);
  assert.equal(meta.channels, 3, 'an opaque RGB overlay');
}

test('POST /score: multipart and raw uploads give the same verdict and a heatmap at the original size', async () => {
  const img = images[1];
  const t0 = performance.now();
  const a = await postImage(base, img);
  const tMultipart = performance.now() - t0;
  assert.equal(a.status, 200);
  const ra = (await a.json()) as ScoreResponse;
  assert.equal(ra.name, img.name);
  assert.ok(Number.isFinite(ra.score) && Number.isFinite(ra.imageScore));
  assert.ok(ra.decision === 'normal' || ra.decision === 'anomalous');
  assert.equal(ra.decision, ra.score > ra.threshold ? 'anomalous' : 'normal');
  assert.equal(ra.threshold, scorer.threshold);
  assert.deepEqual([ra.width, ra.height], [img.width, img.height]);
  assert.match(ra.heatmapUrl, /^\/heatmaps\/[A-Za-z0-9_-]{22}\.png$/);

  const b = await fetch(`${base}/score?name=raw.png`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: img.bytes });
  assert.equal(b.status, 200);
  const rb = (await b.json()) as ScoreResponse;
  assert.equal(rb.name, 'raw.png');
  assert.equal(rb.score, ra.score);
  assert.equal(rb.imageScore, ra.imageScore);
  assert.notEqual(rb.heatmapUrl, ra.heatmapUrl);

  const c = await fetch(`${base}/score`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: images[0].bytes });
  assert.equal(c.status, 200);
  assert.equal(((await c.json()) as ScoreResponse).name, 'upload');

  const t1 = performance.now();
  await checkHeatmap(ra.heatmapUrl, img.width, img.height);
  const tRender = performance.now() - t1;
  await checkHeatmap(rb.heatmapUrl, img.width, img.height);
  // The second GET of a heatmap is served from the cache: its time is printed, not asserted (timing
  // asserts are flaky on a shared machine); the cache's bounds are measured by `npm run bench:serve`.
  const t2 = performance.now();
  await checkHeatmap(ra.heatmapUrl, img.width, img.height);
  process.stderr.write(`# score (multipart) ${tMultipart.toFixed(0)} ms, first heatmap GET ${tRender.toFixed(0)} ms, cached ${(performance.now() - t2).toFixed(0)} ms\n`);

  const missing = await fetch(`${base}/heatmaps/AAAAAAAAAAAAAAAAAAAAAA.png`);
  assert.equal(missing.status, 404);
  assert.equal(((await missing.json()) as ErrorResponse).code, 'NOT_FOUND');
  assert.equal((await fetch(`${base}/heatmaps/..%2F..%2Fetc%2Fpasswd`)).status, 404);
});

test('bad requests: corrupt image, no file, wrong field, wrong content type, unknown route → JSON errors', async () => {
  const truncated = images[0].bytes.subarray(0, 20_000);
  for (const res of [
    await postImage(base, { name: 'cut.png', bytes: truncated }),
    await fetch(`${base}/score`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: truncated }),
    await fetch(`${base}/score`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new TextEncoder().encode('not an image at all') }),
  ]) {
    assert.equal(res.status, 400);
    const e = (await res.json()) as ErrorResponse;
    assert.equal(e.code, 'IMAGE_DECODE');
    assert.match(e.error, /cannot read image/);
    assert.doesNotMatch(e.error, /\n\s+at /, 'no stack trace');
  }
  const cases: [RequestInit, string][] = [
    [{ method: 'POST', body: multipart(images[0].bytes, 'x.png', 'photo') }, 'MISSING_FILE'],
    [{ method: 'POST', body: (() => { const f = new FormData(); f.append('note', 'hi'); return f; })() }, 'MISSING_FILE'],
    [{ method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(0) }, 'MISSING_FILE'],
    [{ method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"image":"x"}' }, 'BAD_CONTENT_TYPE'],
    [{ method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' }, 'BAD_CONTENT_TYPE'],
    [{ method: 'POST', headers: { 'content-type': 'multipart/form-data; boundary=zzz' }, body: '--zzz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\nabc' }, ''],
  ];
  for (const [init, code] of cases) {
    const res = await fetch(`${base}/score`, init);
    assert.equal(res.status, 400, `${JSON.stringify(init.headers)} → ${res.status}`);
    const e = (await res.json()) as ErrorResponse;
    assert.ok(e.error.length > 0);
    if (code) assert.equal(e.code, code);
  }
  const nf = await fetch(`${base}/nope`);
  assert.equal(nf.status, 404);
  assert.equal(((await nf.json()) as ErrorResponse).code, 'NOT_FOUND');
  // Nothing leaked into the queue count.
  const h = (await (await fetch(`${base}/health`)).json()) as HealthResponse;
  assert.deepEqual(h.queue, { running: 0, waiting: 0, limit: 64 });
});

test('uploads over maxUploadBytes get 413, multipart and raw, and the server keeps working', async () => {
  const url = await listen(await createServer({ scorer, maxUploadBytes: 200 * 1024 }));
  const big = images[0];
  assert.ok(big.bytes.length > 200 * 1024);
  const raw = await fetch(`${url}/score`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: big.bytes });
  assert.equal(raw.status, 413);
  assert.equal(((await raw.json()) as ErrorResponse).code, 'TOO_LARGE');
  const form = await postImage(url, big);
  assert.equal(form.status, 413);
  assert.equal(((await form.json()) as ErrorResponse).code, 'TOO_LARGE');
  // A multipart body only slightly over the limit passes the Content-Length check and is cut by the file-size limit.
  const slightly = Buffer.concat([big.bytes.subarray(0, 200 * 1024), Buffer.alloc(100)]);
  const cut = await postImage(url, { name: 'slightly.png', bytes: slightly });
  assert.equal(cut.status, 413);
  // A streamed raw body without Content-Length is cut while reading.
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < big.bytes.length; i += 64 * 1024) c.enqueue(big.bytes.subarray(i, i + 64 * 1024));
      c.close();
    },
  });
  const chunked = await fetch(`${url}/score`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: stream, duplex: 'half' } as RequestInit);
  assert.equal(chunked.status, 413);
  // A small image still goes through.
  const small = await sharp(big.bytes).resize(256, 256).png().toBuffer();
  const ok = await postImage(url, { name: 'small.png', bytes: small });
  assert.equal(ok.status, 200);
  const h = (await (await fetch(`${url}/health`)).json()) as HealthResponse;
  assert.equal(h.queue.waiting + h.queue.running, 0);
});

test('heatmaps are kept in an LRU of recent results; evicted ids answer 404', async () => {
  const url = await listen(await createServer({ scorer, heatmapCacheSize: 2 }));
  const score = async (img: (typeof images)[number]) => ((await (await postImage(url, img)).json()) as ScoreResponse).heatmapUrl;
  const [a, b, c] = [await score(images[0]), await score(images[1]), await score(images[2])];
  const gone = await fetch(`${url}${a}`);
  assert.equal(gone.status, 404);
  assert.equal(((await gone.json()) as ErrorResponse).code, 'NOT_FOUND');
  await checkHeatmap(b, images[1].width, images[1].height, url); // rendered, and now the most recently used
  const d = await score(images[0]);
  assert.equal((await fetch(`${url}${c}`)).status, 404, 'the least recently used entry left');
  await checkHeatmap(b, images[1].width, images[1].height, url);
  await checkHeatmap(d, images[0].width, images[0].height, url);
});

test('50 concurrent requests: all answered, same image → same score, each its own heatmap', { timeout: 120_000 }, async () => {
  const expected = new Map<string, number>();
  for (const img of images) {
    const res = await postImage(base, img);
    expected.set(img.name, ((await res.json()) as ScoreResponse).score);
  }
  const burst = async () => {
    const t0 = performance.now();
    const replies = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const img = images[i % images.length];
        const res = i % 2 === 0 ? await postImage(base, img) : await fetch(`${base}/score?name=${encodeURIComponent(img.name)}`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: img.bytes });
        return { img, status: res.status, body: (await res.json()) as ScoreResponse };
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    assert.equal(replies.length, 50);
    for (const r of replies) {
      assert.equal(r.status, 200);
      assert.equal(r.body.name, r.img.name);
      assert.ok(Math.abs(r.body.score - expected.get(r.img.name)!) <= 1e-6 * Math.max(1, Math.abs(r.body.score)), `${r.img.name}: ${r.body.score} vs ${expected.get(r.img.name)}`);
    }
    assert.equal(new Set(replies.map((r) => r.body.heatmapUrl)).size, 50, 'every request got its own heatmap');
    // A few heatmaps of the burst are there.
    for (const r of replies.slice(-3)) await checkHeatmap(r.body.heatmapUrl, r.img.width, r.img.height);
    return seconds;
  };
  process.stderr.write(`# burst of 50: ${(await burst()).toFixed(1)} s\n`);
  const h = (await (await fetch(`${base}/health`)).json()) as HealthResponse;
  assert.deepEqual(h.queue, { running: 0, waiting: 0, limit: 64 });
});

/** Theil–Sen slope of y over x (median of the pairwise slopes): a steady trend, not one allocator step. */
function slope(x: readonly number[], y: readonly number[]): number {
  const s: number[] = [];
  for (let i = 0; i < x.length; i++) for (let j = i + 1; j < x.length; j++) s.push((y[j] - y[i]) / (x[j] - x[i]));
  s.sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * Growth per request after warm-up that fails the test. Measured on a 2-core machine: the JS heap +
 * external is flat (0.1–2 KiB per request); RSS creeps by 10–50 KiB per request over these 80
 * requests (native-heap fragmentation settling; `npm run bench:serve` follows it over 1000 requests).
 * A leaked upload (~0.1 MiB here) or score map (0.2 MiB) per request exceeds the heap limit: an
 * injected 128 KiB Buffer per response measured 162 KiB per request there, while RSS did not move
 * (freed memory the allocator kept absorbed it). The RSS limit is for native leaks, such as a
 * backbone output (1.6 MiB per image) or a score map kept by the native side.
 */
const RSS_SLOPE_LIMIT = 128 * 1024;
const HEAP_SLOPE_LIMIT = 8 * 1024;
/** Concurrent requests between two samples. */
const PER_ROUND = 16;

test('memory does not grow with requests once the heatmap cache is full (RSS and JS heap after GC, in a server process of its own)', { timeout: 300_000 }, async () => {
  const bankFile = path.join(tmp, 'memory.mbank');
  await writeFile(bankFile, encodeBank(scorer.bank));
  // Small uploads keep the test quick; the cache of 8 heatmaps fills during the warm-up.
  const uploads = await Promise.all(images.map(async (img) => ({ name: img.name, bytes: await sharp(img.bytes).resize(256, 256).png().toBuffer() })));
  const child = fork(fileURLToPath(new URL('./serve-memory-child.js', import.meta.url)), [bankFile, '8'], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  type Sample = { rss: number; heapUsed: number; external: number };
  const next = <T>() => new Promise<T>((resolve, reject) => {
    child.once('message', (m) => resolve(m as T));
    child.once('exit', (code) => reject(new Error(`the server process exited with ${code}`)));
  });
  try {
    const { port } = await next<{ port: number }>();
    const url = `http://127.0.0.1:${port}`;
    const round = async () => {
      const statuses = await Promise.all(
        Array.from({ length: PER_ROUND }, async (_, i) => {
          const img = uploads[i % uploads.length];
          const res = i % 2 === 0 ? await postImage(url, img) : await fetch(`${url}/score`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: img.bytes });
          const body = (await res.json()) as ScoreResponse;
          if (i % 5 === 0) await (await fetch(`${url}${body.heatmapUrl}`)).arrayBuffer(); // some heatmaps rendered too
          return res.status;
        }),
      );
      assert.deepEqual(new Set(statuses), new Set([200]));
    };
    const sample = () => {
      const reply = next<Sample>();
      child.send('sample');
      return reply;
    };
    // Warm-up: allocator pools, libvips and ORT buffers, JIT, the heatmap cache fills; V8 resizes its heap
    // after the first forced GC (RSS steps up by ~16 MiB in the next requests), so one sample is thrown away.
    await round();
    await round();
    await sample();
    await round();
    const requests: number[] = [];
    const samples: Sample[] = [];
    for (let r = 0; r <= 5; r++) {
      if (r > 0) await round();
      requests.push(PER_ROUND * r);
      samples.push(await sample());
    }
    const mib = (x: number) => (x / 2 ** 20).toFixed(1);
    const rssSlope = slope(requests, samples.map((s) => s.rss));
    const heapSlope = slope(requests, samples.map((s) => s.heapUsed + s.external));
    process.stderr.write(
      `# after GC, every ${PER_ROUND} requests: rss ${samples.map((s) => mib(s.rss)).join(' ')} MiB; heap+external ${samples.map((s) => mib(s.heapUsed + s.external)).join(' ')} MiB; ` +
        `slopes ${(rssSlope / 1024).toFixed(1)} KiB and ${(heapSlope / 1024).toFixed(1)} KiB per request\n`,
    );
    assert.ok(heapSlope < HEAP_SLOPE_LIMIT, `JS heap + external grows by ${(heapSlope / 1024).toFixed(1)} KiB per request (limit ${HEAP_SLOPE_LIMIT / 1024})`);
    assert.ok(rssSlope < RSS_SLOPE_LIMIT, `RSS grows by ${(rssSlope / 1024).toFixed(1)} KiB per request (limit ${RSS_SLOPE_LIMIT / 1024})`);
  } finally {
    const gone = new Promise((r) => child.once('exit', r));
    child.send('exit');
    await gone;
  }
});

test('queue limit: past maxQueue requests get 503 with Retry-After, the rest are scored, none hang', { timeout: 60_000 }, async () => {
  const url = await listen(await createServer({ scorer, maxQueue: 2 }));
  const replies = await Promise.all(
    Array.from({ length: 10 }, async (_, i) => {
      const res = await fetch(`${url}/score`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: images[i % images.length].bytes, signal: AbortSignal.timeout(30_000) });
      return { status: res.status, retry: res.headers.get('retry-after'), body: (await res.json()) as ScoreResponse | ErrorResponse };
    }),
  );
  const ok = replies.filter((r) => r.status === 200);
  const busy = replies.filter((r) => r.status === 503);
  assert.equal(ok.length + busy.length, 10, `statuses ${replies.map((r) => r.status).join(',')}`);
  assert.ok(ok.length >= 1 && ok.length <= 9, `${ok.length} scored`);
  assert.ok(busy.length >= 1);
  for (const r of busy) {
    assert.ok(Number(r.retry) >= 1, `Retry-After ${r.retry}`);
    assert.equal((r.body as ErrorResponse).code, 'BUSY');
  }
  // Clients that give up free their slots (once the scoring they started, if any, is over).
  const gaveUp = await Promise.all(
    Array.from({ length: 2 }, (_, i) =>
      fetch(`${url}/score`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: images[i].bytes, signal: AbortSignal.timeout(100) }).then(
        (r) => r.status,
        (e: Error) => e.name,
      ),
    ),
  );
  assert.deepEqual(gaveUp, ['TimeoutError', 'TimeoutError']);
  let queue: HealthResponse['queue'] | undefined;
  for (let i = 0; i < 100; i++) {
    queue = ((await (await fetch(`${url}/health`)).json()) as HealthResponse).queue;
    if (queue.running + queue.waiting === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(queue, { running: 0, waiting: 0, limit: 2 });
  // And requests are admitted again.
  const again = await fetch(`${url}/score`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: images[0].bytes });
  assert.equal(again.status, 200);
});

test('the page at / uploads an image in Chromium and shows the verdict and the heatmap', { timeout: 60_000 }, async () => {
  if (!existsSync(CHROMIUM)) {
    assert.fail(`Chromium not found at ${CHROMIUM}: the page's browser test needs it. \`npm test\` installs Debian's chromium (as root), or point MUSC_CHROMIUM at a Chromium binary.`);
  }
  const res = await fetch(`${base}/`);
  assert.equal(res.status, 200);
  const csp = res.headers.get('content-security-policy') ?? '';
  assert.match(csp, /default-src 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  const html = await res.text();
  assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//, 'no external resources');

  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    const errors: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(`${base}/`, { waitUntil: 'load' });
    await page.getByTestId('bank').filter({ hasText: `${BANK_FILES.length} unlabeled images` }).waitFor({ timeout: 10_000 });

    await page.getByTestId('file').setInputFiles(UPLOADS[1]);
    await page.getByTestId('result').waitFor({ state: 'visible', timeout: 20_000 });
    // A function predicate (a string one would be eval'd in the page, which its CSP forbids).
    await page.getByTestId('heatmap').evaluate(
      (img: { complete: boolean; naturalWidth: number; decode(): Promise<void> }) => (img.complete && img.naturalWidth > 0 ? undefined : img.decode()),
      undefined,
      { timeout: 20_000 },
    );
    const shown = (await page.evaluate(`(() => {
      const img = document.querySelector('[data-testid=heatmap]');
      return { w: img.naturalWidth, h: img.naturalHeight, score: document.querySelector('[data-testid=score]').textContent, decision: document.querySelector('[data-testid=decision]').textContent, name: document.querySelector('[data-testid=name]').textContent };
    })()`)) as { w: number; h: number; score: string; decision: string; name: string };
    assert.deepEqual([shown.w, shown.h], [images[1].width, images[1].height]);
    assert.match(shown.score, /^-?\d+\.\d{4}$/);
    assert.ok(shown.decision === 'normal' || shown.decision === 'anomalous');
    assert.equal(shown.name, path.basename(UPLOADS[1]));

    // A corrupt file shows the server's message, not a crash.
    await page.getByTestId('file').setInputFiles({ name: 'broken.png', mimeType: 'image/png', buffer: images[0].bytes.subarray(0, 5000) });
    await page.getByTestId('status').filter({ hasText: 'IMAGE_DECODE' }).waitFor({ timeout: 20_000 });

    assert.deepEqual(errors.filter((e) => !/status of 400/.test(e)), [], 'no console or page errors (CSP violations included)');
    assert.ok(requests.every((u) => u.startsWith(base) || u.startsWith('data:')), `only same-origin requests: ${requests.join(', ')}`);
  } finally {
    await browser.close();
  }
});
