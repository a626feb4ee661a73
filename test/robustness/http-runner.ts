/**
 * The HTTP runner of the robustness suite: each row is a request (and, optionally, a
 * crowd of hostile sockets running while it is sent) -> the expected answer. Rows run
 * against a real `musc serve` child process on 127.0.0.1 (port 0), with a bank built
 * from synthetic plates (`bankFixture`), so nothing outside the repository is needed.
 *
 * To add a case, add a row to a table (e.g. `http.test.ts`):
 * ```ts
 * { name: 'a PDF is refused', request: { method: 'POST', path: '/score', headers: { 'content-type': 'application/pdf' }, body: '%PDF' },
 *   expect: { status: 400, code: 'BAD_CONTENT_TYPE' } }
 * ```
 * Rows with the same `serve` flags (and bank) share one server, started on first use.
 * After every row the runner checks that the server is alive and its scoring queue
 * drains back to empty (nothing leaked), so a row only states what is special to it.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { MUSC_BIN } from '../helpers.js';
import { bankFixture, cleanBankCacheAfterAll, writePlates, type BankFixture } from './harness.js';

/** Images a row can send: synthetic plates that are not in the bank. */
export interface HttpFixtures {
  /** PNG bytes of upload image `i` (0..2). */
  image(i?: number): Uint8Array;
}

/** One part of a multipart/form-data body: a file (an upload image by index, or bytes) or a text field. */
export interface FormPart {
  readonly field: string;
  /** Index of a fixture image to send as the file. */
  readonly image?: number;
  /** Or the file's bytes. */
  readonly bytes?: Uint8Array;
  /** File name (default `upload-<i>.png` for files). */
  readonly filename?: string;
  /** A text field's value (no file). */
  readonly value?: string;
}

/** The request whose answer a row checks. */
export interface HttpRequestSpec {
  /** Default GET, or POST when there is a body or a form. */
  readonly method?: string;
  /** Path and query, e.g. `/score?name=a.png` (sent as is, not normalised). */
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** Raw body: text, bytes, or made from the fixtures. */
  readonly body?: string | Uint8Array | ((fx: HttpFixtures) => string | Uint8Array);
  /** A multipart/form-data body (its content type and boundary are set by the runner). */
  readonly form?: readonly FormPart[];
}

/** Sockets that misbehave while the row's request is sent. */
export interface HostileClients {
  /**
   * - `idle`: connects and sends nothing;
   * - `slow-headers`: a request line, then one header line every `intervalMs`, never ending the headers;
   * - `headers-only`: complete `POST /score` headers announcing a 5 MiB body, then nothing;
   * - `slow-body`: the same headers, then one body byte every `intervalMs`;
   * - `non-reader`: asks for a large answer (the heatmap of a 2400 × 2400 noise photo scored
   *   first, a PNG of ~15 MB: more than the loopback socket buffers hold) and never reads it.
   */
  readonly kind: 'idle' | 'slow-headers' | 'headers-only' | 'slow-body' | 'non-reader';
  readonly count: number;
  /** Content type announced by `headers-only` / `slow-body` (default `image/png`). */
  readonly contentType?: string;
  /** Pause between bytes or lines (default 200 ms). */
  readonly intervalMs?: number;
  /** Send the row's request only after the server closed every hostile socket. */
  readonly waitClosed?: boolean;
  /** The server must close every hostile socket within this many ms of its opening. */
  readonly closedWithin?: number;
  /**
   * Send the row's request again (every 250 ms) until it gets the expected status, for at most
   * this many ms: for sockets whose closing the client cannot see (a `non-reader` reads nothing,
   * so it never learns of the close), the server has freed them once the request gets through.
   */
  readonly retryFor?: number;
}

/** What the row's request must get. */
export interface HttpExpectation {
  /** HTTP status, or `closed`: the server drops the connection without an answer. */
  readonly status: number | 'closed';
  /** The JSON error body's `code`. */
  readonly code?: string;
  /** A pattern the JSON error body's `error` message must match. */
  readonly error?: RegExp;
  /** A pattern the body text must match. */
  readonly body?: RegExp;
  readonly headers?: Readonly<Record<string, RegExp>>;
  /** The answer must come within this many ms of sending the request. */
  readonly within?: number;
  /** Every hostile socket must still be open when the answer comes (it did not need them gone). */
  readonly hostileStillOpen?: boolean;
  readonly check?: (answer: HttpAnswer) => void | Promise<void>;
}

/** One row of an HTTP robustness table. */
export interface HttpCase {
  /** What is hostile about it (the test's title). */
  readonly name: string;
  /** Extra `musc serve` flags, e.g. `['--queue', '3', '--body-timeout', '2']`. */
  readonly serve?: readonly string[];
  /** The bank served (default: 6 unlabeled synthetic plates). */
  readonly bank?: BankFixture;
  readonly hostile?: HostileClients;
  readonly request: HttpRequestSpec;
  readonly expect: HttpExpectation;
  /** Per-row limit in ms (default 60 s). */
  readonly timeout?: number;
}

/** The answer to the row's request. */
export interface HttpAnswer {
  readonly status: number | 'closed';
  readonly headers: http.IncomingHttpHeaders;
  readonly text: string;
  /** The parsed JSON body, when it is JSON. */
  readonly json: unknown;
  readonly ms: number;
}

interface ServerProc {
  readonly url: URL;
  readonly child: ChildProcess;
  readonly log: () => string;
}

let workDir: Promise<string> | null = null;
let uploads: Promise<Uint8Array[]> | null = null;
const servers = new Map<string, Promise<ServerProc>>();

function fixtures(): Promise<Uint8Array[]> {
  uploads ??= (async () => {
    workDir ??= mkdtemp(path.join(os.tmpdir(), 'musc-robust-http-'));
    const dir = await writePlates(await workDir, 'uploads', 3, 11);
    const files = (await readdir(dir)).sort();
    return Promise.all(files.map(async (f) => new Uint8Array(await readFile(path.join(dir, f)))));
  })();
  return uploads;
}

/** Starts `musc serve` (once per bank and flags) and waits for its "listening on" line. */
function serverFor(c: HttpCase): Promise<ServerProc> {
  const flags = c.serve ?? [];
  const key = JSON.stringify([c.bank ?? {}, flags]);
  let s = servers.get(key);
  if (!s) {
    s = (async () => {
      const bank = await bankFixture(c.bank);
      const child = spawn(process.execPath, [MUSC_BIN, 'serve', '--bank', bank, '--port', '0', '--host', '127.0.0.1', ...flags], { stdio: ['ignore', 'pipe', 'pipe'] });
      let log = '';
      child.stdout!.on('data', (d: Buffer) => (log += d));
      const url = await new Promise<URL>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`musc serve did not start in 60 s:\n${log}`)), 60_000);
        child.stderr!.on('data', (d: Buffer) => {
          log += d;
          const m = /listening on (http:\/\/\S+)/.exec(log);
          if (m) {
            clearTimeout(timer);
            resolve(new URL(m[1]));
          }
        });
        child.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`musc serve exited with ${code} before listening:\n${log}`));
        });
      });
      return { url, child, log: () => log };
    })();
    servers.set(key, s);
  }
  return s;
}

/** Sends one request on its own connection (no pooled sockets that would count against connection caps). */
async function send(base: URL, spec: HttpRequestSpec): Promise<HttpAnswer> {
  const imgs = await fixtures();
  const fx: HttpFixtures = { image: (i = 0) => imgs[i] };
  const headers: Record<string, string> = { ...(spec.headers ?? {}) };
  let body: Uint8Array | undefined;
  if (spec.form) {
    const form = new FormData();
    spec.form.forEach((p, i) => {
      if (p.value !== undefined) form.append(p.field, p.value);
      else form.append(p.field, new Blob([p.bytes ?? fx.image(p.image)], { type: 'image/png' }), p.filename ?? `upload-${i}.png`);
    });
    const req = new Request('http://x/', { method: 'POST', body: form });
    body = new Uint8Array(await req.arrayBuffer());
    headers['content-type'] ??= req.headers.get('content-type')!;
  } else if (spec.body !== undefined) {
    const b = typeof spec.body === 'function' ? spec.body(fx) : spec.body;
    body = typeof b === 'string' ? new TextEncoder().encode(b) : b;
  }
  if (body) headers['content-length'] = String(body.length);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ host: base.hostname, port: base.port, path: spec.path, method: spec.method ?? (body ? 'POST' : 'GET'), headers, agent: false });
    req.setTimeout(120_000, () => req.destroy(new Error('no answer in 120 s')));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, json, ms: performance.now() - t0 });
      });
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (['ECONNRESET', 'EPIPE', 'ECONNREFUSED'].includes(err.code ?? '') || /socket hang up/.test(err.message)) {
        resolve({ status: 'closed', headers: {}, text: '', json: undefined, ms: performance.now() - t0 });
      } else reject(err);
    });
    req.end(body);
  });
}

interface Hostile {
  readonly sockets: net.Socket[];
  /** ms from opening to the server closing it, per socket (undefined while open). */
  readonly closedAfter: (number | undefined)[];
  allClosed(): Promise<void>;
  stop(): void;
}

/** The heatmap URL of a large noise photo, scored on `base` (for `non-reader` sockets). */
async function largeHeatmapUrl(base: URL): Promise<string> {
  const jpeg = new Uint8Array(await sharp({ create: { width: 2400, height: 2400, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 60 } } }).jpeg({ quality: 95 }).toBuffer());
  const a = await send(base, { path: '/score', headers: { 'content-type': 'image/jpeg' }, body: jpeg });
  assert.equal(a.status, 200, `scoring the large photo: ${a.text.slice(0, 300)}`);
  return (a.json as { heatmapUrl: string }).heatmapUrl;
}

async function startHostile(base: URL, h: HostileClients): Promise<Hostile> {
  const every = h.intervalMs ?? 200;
  const heatmap = h.kind === 'non-reader' ? await largeHeatmapUrl(base) : '';
  const timers: NodeJS.Timeout[] = [];
  const closedAfter: (number | undefined)[] = Array.from({ length: h.count }, () => undefined);
  const closed: Promise<void>[] = [];
  const head = `POST /score HTTP/1.1\r\nHost: ${base.host}\r\nContent-Type: ${h.contentType ?? 'image/png'}\r\nContent-Length: ${5 * 2 ** 20}\r\n\r\n`;
  const sockets = Array.from({ length: h.count }, (_, i) => {
    const t0 = performance.now();
    const s = net.connect(Number(base.port), base.hostname);
    s.on('error', () => undefined);
    if (h.kind !== 'non-reader') s.on('data', () => undefined);
    closed.push(new Promise((res) => s.once('close', () => ((closedAfter[i] = performance.now() - t0), res()))));
    const drip = (piece: () => string) => timers.push(setInterval(() => s.writable && s.write(piece()), every));
    s.once('connect', () => {
      if (h.kind === 'slow-headers') {
        s.write(`GET /health HTTP/1.1\r\nHost: ${base.host}\r\n`);
        let n = 0;
        drip(() => `X-Slow-${n++}: 1\r\n`);
      } else if (h.kind === 'non-reader') {
        s.pause(); // nothing is read: the kernel buffers fill and the server's writes stall
        s.write(`GET ${heatmap} HTTP/1.1\r\nHost: ${base.host}\r\n\r\n`);
      } else if (h.kind === 'headers-only') s.write(head);
      else if (h.kind === 'slow-body') {
        s.write(head);
        drip(() => 'x');
      }
    });
    return s;
  });
  return {
    sockets,
    closedAfter,
    allClosed: async () => void (await Promise.all(closed)),
    stop: () => {
      for (const t of timers) clearInterval(t);
      for (const s of sockets) s.destroy();
    },
  };
}

/** Waits until the server's scoring queue is empty again (nothing leaked by the row). */
async function queueDrains(base: URL): Promise<void> {
  let last: unknown;
  for (let i = 0; i < 100; i++) {
    const a = await send(base, { path: '/health' });
    const q = (a.json as { queue?: { running: number; waiting: number } } | undefined)?.queue;
    if (a.status === 200 && q && q.running + q.waiting === 0) return;
    last = a.json ?? a.status;
    await sleep(100);
  }
  assert.fail(`the scoring queue did not drain: ${JSON.stringify(last)}`);
}

/** Registers one `node:test` test per row, and stops the servers and removes the files afterwards. */
export function httpCases(area: string, cases: readonly HttpCase[]): void {
  after(async () => {
    for (const s of servers.values()) {
      const { child } = await s.catch(() => ({ child: null }));
      if (!child || child.exitCode !== null) continue;
      const exited = new Promise((res) => child.once('exit', res));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000).then(() => child.kill('SIGKILL'))]);
    }
    if (workDir) await rm(await workDir, { recursive: true, force: true });
  });
  cleanBankCacheAfterAll();
  for (const c of cases) {
    test(`${area}: ${c.name}`, { timeout: c.timeout ?? 60_000 }, async () => {
      const server = await serverFor(c);
      const hostile = c.hostile ? await startHostile(server.url, c.hostile) : null;
      try {
        if (hostile) {
          if (c.hostile!.waitClosed) await hostile.allClosed();
          else await sleep(400); // let the server read their headers first
        }
        let answer = await send(server.url, c.request);
        const retryUntil = performance.now() + (c.hostile?.retryFor ?? 0);
        while (answer.status !== c.expect.status && performance.now() < retryUntil) {
          await sleep(250);
          answer = await send(server.url, c.request);
        }
        const openAtAnswer = hostile ? hostile.closedAfter.filter((t) => t === undefined).length : 0;
        const ctx = `${c.request.method ?? ''} ${c.request.path} -> ${answer.status} in ${answer.ms.toFixed(0)} ms: ${answer.text.slice(0, 500)}\nserver log: ${server.log().slice(-1500)}`;
        assert.equal(answer.status, c.expect.status, ctx);
        if (c.expect.code) assert.equal((answer.json as { code?: string } | undefined)?.code, c.expect.code, ctx);
        if (c.expect.error) assert.match(String((answer.json as { error?: string } | undefined)?.error), c.expect.error, ctx);
        if (c.expect.body) assert.match(answer.text, c.expect.body, ctx);
        for (const [k, re] of Object.entries(c.expect.headers ?? {})) assert.match(String(answer.headers[k] ?? ''), re, `header ${k}\n${ctx}`);
        if (c.expect.within !== undefined) assert.ok(answer.ms <= c.expect.within, `answered in ${answer.ms.toFixed(0)} ms, more than ${c.expect.within}\n${ctx}`);
        if (c.expect.hostileStillOpen) assert.equal(openAtAnswer, c.hostile!.count, `hostile sockets open at the answer\n${ctx}`);
        await c.expect.check?.(answer);
        if (hostile && c.hostile!.closedWithin !== undefined) {
          const limit = c.hostile!.closedWithin;
          await Promise.race([hostile.allClosed(), sleep(limit + 2000)]);
          const late = hostile.closedAfter.map((t) => t ?? Infinity).filter((t) => t > limit);
          assert.deepEqual(late, [], `hostile sockets the server did not close within ${limit} ms`);
        }
        hostile?.stop();
        assert.equal(server.child.exitCode, null, `the server exited\n${server.log()}`);
        await queueDrains(server.url);
      } finally {
        hostile?.stop();
      }
    });
  }
}
