/**
 * `musc serve --bank line-A.mbank`: scores uploaded images over HTTP (see serve/server.ts)
 * until SIGINT/SIGTERM, then stops accepting requests, lets those in flight finish and
 * releases the scorer.
 */
import type { AddressInfo } from 'node:net';
import { type Command, Option } from 'commander';
import type { FastifyInstance } from 'fastify';
import { MuscScorer } from '../bank/scorer.js';
import { port, positiveInt, positiveNumber } from './parsers.js';
import { createServer, DEFAULT_BODY_TIMEOUT_MS, DEFAULT_HEADERS_TIMEOUT_MS, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PIXELS, DEFAULT_MAX_QUEUE, DEFAULT_SEND_TIMEOUT_MS } from '../serve/server.js';

/** Options of `musc serve` (and of `startServe`, for programs and tests). */
export interface ServeOptions {
  readonly bank: string;
  readonly port: number;
  readonly host: string;
  readonly maxUploadMb: number;
  /** Largest accepted image in megapixels, read from its header before decoding (`--max-megapixels`). */
  readonly maxMegapixels: number;
  readonly queue: number;
  /** Seconds to receive a whole request (headers and body); default 60. */
  readonly bodyTimeout?: number;
  /** Seconds to receive a request's headers; default 10. */
  readonly headersTimeout?: number;
  /** Seconds an idle keep-alive connection stays open; default 5. */
  readonly idleTimeout?: number;
  /** Seconds a client may take no byte of an answer before it is disconnected; default 30. */
  readonly sendTimeout?: number;
  /** Open connections at most; default 256. */
  readonly maxConnections?: number;
  readonly threads?: number;
  readonly precision?: 'fp32' | 'int8';
  readonly log?: boolean;
}

/** A running server. */
export interface ServeHandle {
  readonly url: string;
  readonly app: FastifyInstance;
  readonly scorer: MuscScorer;
  /** Stops accepting requests, waits for those in flight, then disposes the scorer. Idempotent. */
  close(): Promise<void>;
}


/** The URL of a listening server (IPv6 hosts in brackets, wildcard hosts as given). */
export function serverUrl(app: FastifyInstance, host: string): string {
  const addr = app.server.address() as AddressInfo | null;
  const h = host.includes(':') ? `[${host}]` : host;
  return `http://${h}:${addr?.port ?? 0}/`;
}

/** Opens the bank, starts listening and returns the running server. */
export async function startServe(o: ServeOptions, log: (msg: string) => void = (m) => process.stderr.write(`${m}\n`)): Promise<ServeHandle> {
  const scorer = await MuscScorer.open({ bank: o.bank, precision: o.precision, threads: o.threads, log });
  let app: FastifyInstance;
  try {
    const ms = (s: number | undefined) => (s === undefined ? undefined : Math.round(s * 1000));
    app = await createServer({
      scorer,
      maxUploadBytes: Math.round(o.maxUploadMb * 2 ** 20),
      maxPixels: Math.round(o.maxMegapixels * 1e6),
      maxQueue: o.queue,
      bodyTimeoutMs: ms(o.bodyTimeout),
      headersTimeoutMs: ms(o.headersTimeout),
      idleTimeoutMs: ms(o.idleTimeout),
      sendTimeoutMs: ms(o.sendTimeout),
      maxConnections: o.maxConnections,
      logger: o.log ?? false,
    });
    await app.listen({ port: o.port, host: o.host });
  } catch (err) {
    await scorer.dispose();
    throw err;
  }
  let closing: Promise<void> | null = null;
  return {
    url: serverUrl(app, o.host),
    app,
    scorer,
    close: () =>
      (closing ??= (async () => {
        try {
          await app.close();
        } finally {
          await scorer.dispose();
        }
      })()),
  };
}

/** Adds `musc serve` to the program. */
export function addServeCommand(program: Command): void {
  program
    .command('serve')
    .description('score uploaded images against a bank over HTTP: an upload page at /, POST /score, GET /health')
    .requiredOption('--bank <file.mbank>', 'bank built with `musc bank build`')
    .addOption(new Option('--port <n>', 'TCP port (0 picks a free one)').argParser(port).default(8080))
    .addOption(new Option('--host <address>', 'address to listen on (0.0.0.0 for every interface)').default('127.0.0.1'))
    .addOption(new Option('--max-upload-mb <MiB>', 'largest accepted upload').argParser(positiveNumber).default(20))
    .addOption(new Option('--max-megapixels <MP>', 'largest accepted image, read from its header before decoding (a small upload can decode to gigabytes)').argParser(positiveNumber).default(DEFAULT_MAX_PIXELS / 1e6))
    .addOption(new Option('--queue <n>', 'uploaded requests admitted to scoring at once (waiting or scoring); more get 503 + Retry-After').argParser(positiveInt).default(DEFAULT_MAX_QUEUE))
    .addOption(new Option('--body-timeout <s>', 'seconds to receive a whole request, headers and upload; slower clients get 408 and are disconnected').argParser(positiveNumber).default(DEFAULT_BODY_TIMEOUT_MS / 1000))
    .addOption(new Option('--headers-timeout <s>', 'seconds to receive the request headers (slowloris); also closes connections that send nothing').argParser(positiveNumber).default(DEFAULT_HEADERS_TIMEOUT_MS / 1000))
    .addOption(new Option('--idle-timeout <s>', 'seconds an idle keep-alive connection stays open').argParser(positiveNumber).default(DEFAULT_IDLE_TIMEOUT_MS / 1000))
    .addOption(new Option('--send-timeout <s>', 'seconds a client may take no byte of an answer (it stopped reading) before it is disconnected').argParser(positiveNumber).default(DEFAULT_SEND_TIMEOUT_MS / 1000))
    .addOption(new Option('--max-connections <n>', 'open connections at most; more are closed on arrival (uploads in progress hold at most this x --max-upload-mb)').argParser(positiveInt).default(DEFAULT_MAX_CONNECTIONS))
    .addOption(new Option('--threads <n>', 'ONNX Runtime intra-op threads (default: all cores)').argParser(positiveInt))
    .addOption(new Option('--precision <p>', 'GEMM arithmetic (default: int8 for int8 banks, else fp32)').choices(['fp32', 'int8']))
    .option('--log', 'log every request (JSON lines on stdout)')
    .action(async (o: ServeOptions) => {
      const server = await startServe(o);
      const bank = server.scorer.bank;
      process.stderr.write(
        `musc serve: ${bank.images.length} ${bank.reference} bank images, threshold ${server.scorer.threshold.toFixed(4)}\n` +
          `listening on ${server.url} (Ctrl-C to stop)\n`,
      );
      await new Promise<void>((resolve) => {
        const stop = (signal: NodeJS.Signals) => {
          process.removeListener('SIGINT', stop);
          process.removeListener('SIGTERM', stop);
          process.stderr.write(`\n${signal}: finishing requests in flight, then stopping (Ctrl-C again to quit now)\n`);
          process.once('SIGINT', () => process.exit(130));
          resolve();
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
      await server.close();
      process.stderr.write('musc serve: stopped\n');
    });
}
