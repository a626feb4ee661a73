/**
 * `musc worker`: takes tile jobs from the BullMQ queue, computes them with the same
 * pairwise routine as the in-process path (`selfBestMatches` over the tile's blocks),
 * writes the partial top-K to the shared store and returns its SHA-256.
 *
 * Concurrency 1 per process by default: one tile already uses every core ONNX Runtime
 * is given. The lock is renewed while a tile runs; a worker that dies (SIGKILL, lost
 * machine) stops renewing it, and after `lockDuration` another worker's stalled-job
 * check puts the tile back in the queue (`maxStalledCount` times before it fails).
 * The last sets' operands are cached (LRU): consecutive tiles of one set read it once.
 */
import { hostname } from 'node:os';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { LRUCache } from 'lru-cache';
import { ConfigError } from '../errors.js';
import type { MsmPrecision } from '../pipeline/gemm-operands.js';
import { SimilarityKernel } from '../pipeline/similarity-kernel.js';
import { int8FullRangeIsExact } from '../util/cpu.js';
import { CorruptFileError, decodeOperands, encodePartial, sha256, type SetOperands } from './format.js';
import { connectionFrom, QUEUE_NAME, type TileJobData, type TileResult } from './queue.js';
import { getVerified, keys, openStore, type SharedStore } from './store.js';
import { computeTile } from './tiles.js';

/** Default lock duration: a dead worker's tile is back in the queue within ~this long. */
export const DEFAULT_LOCK_MS = 30_000;

/** Options of a worker. */
export interface TileWorkerOptions {
  /** Redis URL of the queue. */
  readonly queue: string;
  /** The shared store (same folder as the coordinator's, possibly mounted elsewhere). */
  readonly store: string | SharedStore;
  /** Tiles at once in this process (default 1). */
  readonly concurrency?: number;
  /** ONNX Runtime intra-op threads (default: all cores). */
  readonly threads?: number;
  /** Lock duration in ms (default 30 s); stalled tiles are looked for every half of it. */
  readonly lockMs?: number;
  /** Sets of operands kept in memory (default 2). */
  readonly cachedSets?: number;
  readonly log?: (message: string) => void;
}

/** A running worker. */
export interface TileWorker {
  /** Tiles computed so far by this process. */
  readonly tiles: () => number;
  /** Finishes the tile in progress, then stops. */
  close(): Promise<void>;
}

/** Starts a worker; it runs until `close`. */
export async function startWorker(opts: TileWorkerOptions): Promise<TileWorker> {
  const store = typeof opts.store === 'string' ? openStore(opts.store) : opts.store;
  const lockMs = opts.lockMs ?? DEFAULT_LOCK_MS;
  if (!(lockMs >= 1000)) throw new ConfigError(`lock duration must be at least 1000 ms (got ${lockMs})`);
  const sets = new LRUCache<string, SetOperands>({ max: opts.cachedSets ?? 2 });
  const kernels = new Map<MsmPrecision, Promise<SimilarityKernel>>();
  const kernelFor = (p: MsmPrecision) => {
    let k = kernels.get(p);
    if (!k) kernels.set(p, (k = SimilarityKernel.create({ precision: p, threads: opts.threads })));
    return k;
  };
  const name = `${hostname()}:${process.pid}`;
  let count = 0;

  const process_ = async (job: Job<TileJobData, TileResult>): Promise<TileResult> => {
    const d = job.data;
    opts.log?.(`tile ${job.id} started`);
    let set = sets.get(d.set);
    let readBytes = 0;
    if (!set) {
      let buf: Buffer;
      try {
        buf = await getVerified(store, keys.set(d.job, d.set), d.opsSha);
      } catch (err) {
        // A missing or damaged set does not get better by retrying here: the coordinator writes it.
        // Missing is almost always a store that is not shared: say so, since the coordinator sees the file.
        if (err instanceof CorruptFileError) {
          throw new UnrecoverableError(`${err.message} on worker ${name} (is its --store the same shared folder as the coordinator's?)`);
        }
        throw err;
      }
      set = decodeOperands(buf);
      readBytes = buf.length;
      sets.set(d.set, set);
    }
    if (set.referenceLevels === 127 && !int8FullRangeIsExact()) {
      throw new UnrecoverableError(`${name}: this CPU's int8 GEMM could saturate with 127-level codes (no VNNI); run workers on CPUs like the coordinator's`);
    }
    const kernel = await kernelFor(set.ops.precision);
    const t0 = performance.now();
    const part = await computeTile(kernel, set, d.set, { index: d.tile, blocks: d.blocks, ranges: d.ranges });
    const seconds = (performance.now() - t0) / 1000;
    const buf = encodePartial(part);
    const sum = sha256(buf);
    await store.put(keys.partial(d.job, d.set, d.tile), buf);
    count++;
    opts.log?.(`tile ${job.id} done in ${seconds.toFixed(2)} s (${buf.length} bytes)`);
    return { sha256: sum, bytes: buf.length, seconds, readBytes, worker: name };
  };

  const worker = new Worker<TileJobData, TileResult>(QUEUE_NAME, process_, {
    connection: connectionFrom(opts.queue),
    concurrency: opts.concurrency ?? 1,
    lockDuration: lockMs,
    stalledInterval: Math.max(500, Math.floor(lockMs / 2)),
    maxStalledCount: 3,
  });
  worker.on('failed', (job, err) => opts.log?.(`tile ${job?.id ?? '?'} failed: ${err.message}`));
  worker.on('error', (err) => opts.log?.(`queue error: ${err.message}`));
  await worker.waitUntilReady();
  return {
    tiles: () => count,
    async close() {
      await worker.close();
      for (const k of kernels.values()) await (await k).dispose();
    },
  };
}
