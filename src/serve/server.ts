/**
 * `musc serve`: an HTTP front for a bank scorer (Fastify 5).
 *
 *   GET  /                  the upload page (page.ts)
 *   GET  /health            bank and queue state
 *   POST /score             one image (multipart field `image`, or a raw image body) → JSON verdict
 *   GET  /heatmaps/<id>.png the upload at its original size with the heat layer on top
 *
 * Scoring is CPU-bound and `MuscScorer` runs one call at a time; uploads and decoding go
 * on concurrently. A request takes a place in the scoring queue only once its upload is
 * complete, so slow uploads cannot hold it; at most `maxQueue` complete requests wait or
 * run at once, the rest are turned away with 503 + Retry-After.
 *
 * Slow and idle clients are cut by Node's own timers (set through Fastify): the whole
 * request (headers and body) must arrive within `bodyTimeoutMs` (else 408 and the
 * connection is closed), the headers within `headersTimeoutMs` (slowloris; also closes
 * connections that never send a byte), idle keep-alive connections close after
 * `idleTimeoutMs`, and at most `maxConnections` sockets are open at once (more are closed
 * on arrival). Uploads in progress hold at most `maxConnections` × `maxUploadBytes`.
 * Answers are bounded too: a client that stops reading (its socket takes no byte for
 * `sendTimeoutMs` while an answer is being written) is disconnected, so clients that never
 * read a large heatmap cannot hold connections, and the PNGs they pin, for ever.
 *
 * Heatmaps are rendered lazily, on their first GET: most API clients only want the score.
 * The cache keeps the upload bytes and the map until then and only the PNG afterwards;
 * it is an LRU (`lru-cache`) bounded both in entries and in bytes, so memory stays bounded.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { fastifyMultipart, type MultipartFile } from '@fastify/multipart';
import { fastify, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { LRUCache } from 'lru-cache';
import pLimit from 'p-limit';
import type { MuscScorer } from '../bank/scorer.js';
import { bankImageScore } from '../bank/format.js';
import { MuscError } from '../errors.js';
import { pixelCountOfBytes } from '../image/io.js';
import { overlayPngOfBytes, type HeatScale } from '../outputs/heatmap.js';
import type { BankSummary, ErrorResponse, ScoreResponse } from './api.js';
import { renderPage } from './page.js';
import { bankHeatScale } from '../bank/score.js';
import type { Size2D } from '../tensor.js';

/** Options of `createServer`. */
export interface ServerOptions {
  readonly scorer: MuscScorer;
  /** Largest accepted upload in bytes (default 20 MiB), for multipart files and raw bodies alike. */
  readonly maxUploadBytes?: number;
  /** Complete requests admitted to scoring at once, waiting or running (default 64); more get 503. */
  readonly maxQueue?: number;
  /** Longest time to receive a whole request, headers and body (default 60 s); slower ones get 408. */
  readonly bodyTimeoutMs?: number;
  /** Longest time to receive a request's headers (default 10 s, at most `bodyTimeoutMs`); also closes silent connections. */
  readonly headersTimeoutMs?: number;
  /** An idle keep-alive connection is closed after this long (default 5 s). */
  readonly idleTimeoutMs?: number;
  /** Open connections at most (default 256); more are closed on arrival. */
  readonly maxConnections?: number;
  /** A client that takes no byte of an answer for this long is disconnected (default 30 s). */
  readonly sendTimeoutMs?: number;
  /**
   * Largest accepted image in pixels (default 100 M), read from the upload's header before
   * decoding: a small, well-compressed upload can decode to gigabytes (3 bytes per pixel to
   * score it, about 10 while its heatmap is drawn). More get 413 `TOO_MANY_PIXELS`.
   */
  readonly maxPixels?: number;
  /** Heatmaps kept for `GET /heatmaps/<id>.png`, most recent first (default 256). */
  readonly heatmapCacheSize?: number;
  /** Byte budget of that cache: uploads and maps not yet rendered, PNGs once rendered (default 256 MiB). */
  readonly heatmapCacheBytes?: number;
  /** Fastify request logging (JSON lines on stdout; default off). */
  readonly logger?: boolean;
  /**
   * Called with unexpected errors (answered 500 without details). Default: the Fastify
   * logger when `logger` is on, else one line with the stack on stderr.
   */
  readonly onInternalError?: (err: unknown, where: string) => void;
}

export const DEFAULT_MAX_UPLOAD_BYTES = 20 * 2 ** 20;
export const DEFAULT_MAX_QUEUE = 64;
export const DEFAULT_BODY_TIMEOUT_MS = 60_000;
export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 5_000;
export const DEFAULT_MAX_CONNECTIONS = 256;
export const DEFAULT_SEND_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_PIXELS = 100_000_000;
export const DEFAULT_HEATMAP_CACHE_SIZE = 256;
export const DEFAULT_HEATMAP_CACHE_BYTES = 256 * 2 ** 20;

export type { BankSummary, ErrorResponse, ScoreResponse } from './api.js';

/** The JSON answer of `GET /health`. */
export interface HealthResponse {
  readonly status: 'ok';
  readonly bank: BankSummary;
  readonly queue: { readonly running: number; readonly waiting: number; readonly limit: number };
  /** The fixed colour scale of heatmaps (raw map units). */
  readonly heatScale: HeatScale;
}

/** An error with the HTTP status and code to answer with. */
class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** 503: the scoring queue is full; `retryAfter` seconds go into the Retry-After header. */
class BusyError extends HttpError {
  constructor(
    message: string,
    readonly retryAfter: number,
  ) {
    super(503, 'BUSY', message);
  }
}

const MULTIPART_SLACK = 64 * 1024; // boundaries and part headers around the file
const ID_BYTES = 16;
const HEATMAP_PATH = /^([A-Za-z0-9_-]{22})\.png$/;
const RENDER_CONCURRENCY = 2;
const HOW_TO_SEND = 'send the image as multipart/form-data (file field "image") or as the raw request body with an image/* or application/octet-stream content type';

const mib = (bytes: number) => `${+(bytes / 2 ** 20).toFixed(2)} MiB`;

/** A heatmap waiting in the cache: the upload and its map until rendered, then the PNG. */
type HeatEntry =
  | { state: 'source'; bytes: Uint8Array; name: string; map: Float32Array; size: Size2D; cost: number }
  | { state: 'rendering'; promise: Promise<Buffer>; cost: number }
  | { state: 'png'; png: Buffer; cost: number };

/** Error bodies for Fastify's and the multipart plugin's own errors. */
function toHttpError(err: unknown, maxUploadBytes: number): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof MuscError && err.code === 'ABORTED') return new HttpError(400, 'ABORTED', err.message);
  const e = err as { code?: unknown; statusCode?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? e.code : '';
  const status = typeof e?.statusCode === 'number' ? e.statusCode : 500;
  switch (code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
      return new HttpError(413, 'TOO_LARGE', `upload larger than the server's limit of ${mib(maxUploadBytes)}`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
    case 'FST_ERR_CTP_INVALID_TYPE':
      return new HttpError(400, 'BAD_CONTENT_TYPE', `unsupported content type: ${HOW_TO_SEND}`);
    case 'FST_FILES_LIMIT':
      return new HttpError(400, 'TOO_MANY_FILES', 'the form holds more than one file: send one image per request (field "image")');
    case 'FST_PARTS_LIMIT':
    case 'FST_FIELDS_LIMIT':
      return new HttpError(400, 'TOO_MANY_PARTS', 'send one image per request');
  }
  if (status >= 400 && status < 500) {
    const message = typeof e.message === 'string' && e.message ? e.message.split('\n')[0] : 'bad request';
    return new HttpError(status, code.replace(/^FST_(ERR_)?/, '') || 'BAD_REQUEST', message);
  }
  return new HttpError(500, 'INTERNAL', 'internal server error');
}

/**
 * Builds the server (not listening yet: call `app.listen({ port, host })`). The scorer stays
 * the caller's: close the app, then dispose the scorer.
 */
export async function createServer(opts: ServerOptions): Promise<FastifyInstance> {
  const { scorer } = opts;
  const maxUploadBytes = opts.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES;
  const maxQueue = opts.maxQueue ?? DEFAULT_MAX_QUEUE;
  const bodyTimeout = opts.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS;
  const headersTimeout = Math.min(opts.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS, bodyTimeout); // Node requires headers <= request
  const idleTimeout = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const sendTimeout = opts.sendTimeoutMs ?? DEFAULT_SEND_TIMEOUT_MS;
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!(maxPixels >= 1)) throw new RangeError(`maxPixels must be positive (got ${maxPixels})`);
  const maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  if (!(maxUploadBytes > 0)) throw new RangeError(`maxUploadBytes must be positive (got ${maxUploadBytes})`);
  if (!Number.isInteger(maxQueue) || maxQueue < 1) throw new RangeError(`maxQueue must be a positive integer (got ${maxQueue})`);
  for (const [name, v] of Object.entries({ bodyTimeoutMs: bodyTimeout, headersTimeoutMs: headersTimeout, idleTimeoutMs: idleTimeout, sendTimeoutMs: sendTimeout })) {
    if (!(v >= 1 && Number.isFinite(v))) throw new RangeError(`${name} must be a positive number of milliseconds (got ${v})`);
  }
  if (!Number.isInteger(maxConnections) || maxConnections < 1) throw new RangeError(`maxConnections must be a positive integer (got ${maxConnections})`);
  const cache = new LRUCache<string, HeatEntry>({
    max: Math.max(1, opts.heatmapCacheSize ?? DEFAULT_HEATMAP_CACHE_SIZE),
    maxSize: opts.heatmapCacheBytes ?? DEFAULT_HEATMAP_CACHE_BYTES, // an entry larger than this is not kept (its GET answers 404)
    sizeCalculation: (e) => Math.max(1, e.cost),
  });
  const renderSlot = pLimit(RENDER_CONCURRENCY);
  const page = renderPage();

  // One colour scale for every request so heatmaps compare (as `musc score --out`).
  const scale: HeatScale = bankHeatScale(scorer.bank);

  let inFlight = 0; // complete requests admitted to scoring: waiting or running
  let scoring = 0;
  let secondsPerImage = 0.5; // running mean, for Retry-After

  const app = fastify({
    logger: opts.logger ?? false,
    bodyLimit: Math.ceil(maxUploadBytes),
    return503OnClosing: false, // answered below, in this API's error format
    // Node's request timer covers headers and body together and answers 408 itself; it is checked
    // every `connectionsCheckingInterval` (30 s by default, far too coarse for short timeouts).
    requestTimeout: bodyTimeout,
    keepAliveTimeout: idleTimeout,
    http: { headersTimeout, requestTimeout: bodyTimeout, connectionsCheckingInterval: Math.max(50, Math.min(1000, headersTimeout / 4)) },
  });
  app.server.maxConnections = maxConnections;
  const reportInternal =
    opts.onInternalError ??
    ((err: unknown, where: string) => {
      if (opts.logger) app.log.error({ err }, `internal error on ${where}`);
      else process.stderr.write(`musc serve: internal error on ${where}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    });
  let closing = false;

  // Only what /score accepts is parsed: no JSON or text bodies are read at all.
  app.removeAllContentTypeParsers();
  await app.register(fastifyMultipart, {
    limits: { fileSize: Math.ceil(maxUploadBytes), files: 1, fields: 8, parts: 9, fieldSize: 4096, headerPairs: 64 },
  });
  app.addContentTypeParser(/^(?:image\/[\w.+-]+|application\/octet-stream)(?:\s*;.*)?$/i, { parseAs: 'buffer', bodyLimit: Math.ceil(maxUploadBytes) }, (_req, body, done) => {
    done(null, body);
  });

  app.addHook('onSend', async (request, reply, payload) => {
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
    // Node's request and header timers stop once a request is in; nothing bounds the answer. From
    // here on, a socket that takes no byte for sendTimeout has a client that stopped reading: Node
    // destroys a timed-out socket when nobody handles its 'timeout'. Once the answer is written,
    // Node's own keep-alive timer replaces this one (resOnFinish sets the socket's timeout again).
    request.raw.socket?.setTimeout(sendTimeout);
    return payload;
  });

  app.setErrorHandler((err, request, reply) => {
    const h = toHttpError(err, maxUploadBytes);
    if (h.statusCode >= 500 && !(h instanceof BusyError)) reportInternal(err, `${request.method} ${request.url}`);
    if (h instanceof BusyError) void reply.header('retry-after', String(h.retryAfter));
    void reply.code(h.statusCode).header('cache-control', 'no-store').send({ error: h.message, code: h.code } satisfies ErrorResponse);
  });

  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({ error: `no route ${request.method} ${request.url.split('?')[0]}`, code: 'NOT_FOUND' } satisfies ErrorResponse);
  });

  // Closing waits for requests in flight but not for connections without one: Fastify only closes
  // idle keep-alive connections, and a socket that never sent a request (a browser's preconnect,
  // a client's spare) would hold `close()` until Node's headers timeout (60 s).
  const activeRequests = new Map<Socket, number>();
  app.server.on('connection', (socket: Socket) => {
    activeRequests.set(socket, 0);
    socket.once('close', () => activeRequests.delete(socket));
  });
  app.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    activeRequests.set(socket, (activeRequests.get(socket) ?? 0) + 1);
    res.once('close', () => {
      const n = (activeRequests.get(socket) ?? 1) - 1;
      if (activeRequests.has(socket)) activeRequests.set(socket, n);
      if (closing && n === 0) socket.end();
    });
  });
  app.addHook('preClose', async () => {
    closing = true;
    for (const [socket, n] of activeRequests) if (n === 0) socket.destroy();
  });
  app.addHook('onClose', async () => {
    cache.clear();
  });
  app.addHook('onRequest', async (_request, reply) => {
    if (!closing) return;
    return reply
      .code(503)
      .header('retry-after', '10')
      .header('connection', 'close')
      .send({ error: 'server shutting down', code: 'SHUTTING_DOWN' } satisfies ErrorResponse);
  });

  app.get('/', async (_request, reply) => {
    return reply
      .header('content-type', 'text/html; charset=utf-8')
      .header('content-security-policy', page.csp)
      .header('x-frame-options', 'DENY')
      .header('cache-control', 'no-cache')
      .send(page.html);
  });

  app.get('/health', async (_request, reply): Promise<HealthResponse> => {
    const bank = scorer.bank;
    const running = Math.min(1, scoring);
    void reply.header('cache-control', 'no-store');
    return {
      status: 'ok',
      bank: { images: bank.images.length, reference: bank.reference, backbone: bank.backbone.id, imageSize: bank.config.imageSize, imageScore: bankImageScore(bank.config), threshold: scorer.threshold },
      queue: { running, waiting: inFlight - running, limit: maxQueue },
      heatScale: scale,
    };
  });

  const busy = () => {
    const retry = Math.min(60, Math.max(1, Math.ceil(secondsPerImage * inFlight)));
    return new BusyError(`server busy: ${inFlight} requests queued for scoring (limit ${maxQueue}); retry in ${retry} s`, retry);
  };

  /** Early refusal when the queue is full already, before reading the body; takes no place in the queue. */
  const refuseWhenFull = async (_request: FastifyRequest, reply: FastifyReply) => {
    if (inFlight < maxQueue) return;
    // The unread body is discarded by Node (closing the socket instead would reset clients still sending).
    const err = busy();
    return reply.code(503).header('retry-after', String(err.retryAfter)).header('cache-control', 'no-store').send({ error: err.message, code: err.code } satisfies ErrorResponse);
  };

  const readUpload = async (request: FastifyRequest): Promise<{ name: string; bytes: Uint8Array }> => {
    if (request.isMultipart()) {
      const length = Number(request.headers['content-length']);
      if (length > maxUploadBytes + MULTIPART_SLACK) throw new HttpError(413, 'TOO_LARGE', `upload larger than the server's limit of ${mib(maxUploadBytes)}`);
      let file: MultipartFile | undefined;
      let bytes: Buffer | undefined;
      try {
        // The whole form is read (text fields are ignored), so a second file is an error
        // (the plugin's file limit is 1) rather than silently left out.
        for await (const part of request.parts()) {
          if (part.type !== 'file') continue;
          file = part;
          if (part.fieldname !== 'image') throw new HttpError(400, 'MISSING_FILE', `expected the file in field "image", got field ${JSON.stringify(part.fieldname.slice(0, 64))}`);
          bytes = await part.toBuffer();
        }
      } catch (err) {
        // Read what is left of the body so the client can finish sending and read our answer.
        file?.file.resume();
        request.raw.resume();
        const h = toHttpError(err, maxUploadBytes);
        throw h.statusCode >= 500 ? new HttpError(400, 'BAD_MULTIPART', 'malformed or interrupted multipart/form-data body') : h;
      }
      if (!file || !bytes) throw new HttpError(400, 'MISSING_FILE', `no file in the form: ${HOW_TO_SEND}`);
      if (bytes.length === 0) throw new HttpError(400, 'MISSING_FILE', 'the uploaded file is empty');
      return { name: cleanName(file.filename) ?? 'upload', bytes };
    }
    const body = request.body;
    if (!Buffer.isBuffer(body) || body.length === 0) throw new HttpError(400, 'MISSING_FILE', `no image in the request: ${HOW_TO_SEND}`);
    const q = request.query as Record<string, unknown> | undefined;
    return { name: cleanName(typeof q?.name === 'string' ? q.name : undefined) ?? 'upload', bytes: body };
  };

  app.post('/score', { onRequest: refuseWhenFull }, async (request, reply): Promise<ScoreResponse> => {
    const upload = await readUpload(request);
    const pixels = await pixelCountOfBytes(upload.bytes);
    if (pixels !== null && pixels > maxPixels) {
      throw new HttpError(413, 'TOO_MANY_PIXELS', `image of ${(pixels / 1e6).toFixed(2)} megapixels, more than the server's limit of ${(maxPixels / 1e6).toFixed(2)} megapixels`);
    }
    // Admission only now that the upload is complete: a slow upload never holds a place in the queue.
    if (inFlight >= maxQueue) throw busy();
    inFlight++;
    try {
      const ctrl = new AbortController();
      const onClose = () => {
        if (!reply.raw.writableFinished) ctrl.abort(new MuscError('ABORTED', 'the client went away'));
      };
      reply.raw.once('close', onClose);
      const ahead = scoring++;
      const t0 = performance.now();
      let out;
      try {
        out = await scorer.score([upload], { signal: ctrl.signal });
      } finally {
        scoring--;
        reply.raw.removeListener('close', onClose);
      }
      secondsPerImage = 0.8 * secondsPerImage + 0.2 * ((performance.now() - t0) / 1000 / (ahead + 1));
      const r = out.results[0];
      if (!r) {
        const f = out.failures[0];
        throw new HttpError(400, f?.code ?? 'IMAGE_DECODE', f?.error ?? `cannot read image ${JSON.stringify(upload.name)}`);
      }
      const id = randomBytes(ID_BYTES).toString('base64url');
      cache.set(id, { state: 'source', bytes: upload.bytes, name: upload.name, map: r.map, size: { width: r.width, height: r.height }, cost: upload.bytes.byteLength + r.map.byteLength });
      void reply.header('cache-control', 'no-store');
      return {
        name: r.name,
        score: r.score,
        imageScore: r.imageScore,
        decision: r.decision,
        threshold: r.threshold,
        heatmapUrl: `/heatmaps/${id}.png`,
        width: r.originalWidth,
        height: r.originalHeight,
      };
    } finally {
      inFlight--;
    }
  });

  app.get('/heatmaps/:file', async (request, reply) => {
    const m = HEATMAP_PATH.exec((request.params as { file: string }).file);
    const entry = m ? cache.get(m[1]) : undefined;
    if (!m || !entry) throw new HttpError(404, 'NOT_FOUND', 'no such heatmap: unknown id, or evicted from the cache (score the image again)');
    const id = m[1];
    let png: Buffer;
    if (entry.state === 'png') png = entry.png;
    else if (entry.state === 'rendering') png = await entry.promise;
    else {
      const { bytes, name, map, size } = entry;
      const promise = renderSlot(() => overlayPngOfBytes(bytes, name, map, size, scale));
      /** Replaces the entry unless it was evicted meanwhile. */
      const replace = (e: HeatEntry) => void (cache.has(id) && cache.set(id, e));
      replace({ state: 'rendering', promise, cost: entry.cost });
      try {
        // Kept as a copy in a Node buffer: the cache holds hundreds of ~1 MB PNGs for a long time,
        // and keeping sharp's own output buffers (malloc'd in libvips worker threads) fragmented
        // the native heap, so RSS crept up after the cache was full (bench:serve, BENCHMARKS.md).
        png = Buffer.from(await promise);
      } catch (err) {
        replace(entry); // let a later GET try again
        throw err;
      }
      replace({ state: 'png', png, cost: png.byteLength });
    }
    return reply.header('content-type', 'image/png').header('cache-control', 'private, max-age=86400, immutable').send(png);
  });

  return app;
}

/** A display name from an upload's file name: no paths or control characters, at most 200 characters. */
function cleanName(raw: string | undefined): string | undefined {
  if (!raw) return undefined;
  // eslint-disable-next-line no-control-regex
  const base = raw.split(/[\\/]/).pop()!.replace(/[\u0000-\u001f\u007f]/g, '').trim();
  return base ? base.slice(0, 200) : undefined;
}
