/**
 * The coordinator: a `MutualScoring` executor (and a `CrossScoring` one for refinement's
 * cross jobs) that farms each job's tiles out to `musc worker` processes through a
 * BullMQ queue and merges their partial top-K lists.
 * It builds the operands exactly as `mutualScores` does (same function, same options),
 * so the merged scores are bit-identical to the in-process run (see tiles.ts).
 *
 * Faults are BullMQ's: a worker that dies mid-tile loses its lock and the job is retried
 * by another (stalled-job handling); a job that throws is retried (`attempts`). Job ids
 * are `<job id>.<set>.<tile>` with the set named by the SHA-256 of its operands and tiling,
 * so a coordinator restarted with the same job id finds the finished tiles (and the
 * finished sets' scores in the store) and only waits for the rest. A partial whose
 * checksum does not match the one the worker returned, or that is missing, is never
 * merged: its job is removed and added again, and the tile recomputed.
 */
import { randomUUID } from 'node:crypto';
import { Queue, QueueEvents, type Job } from 'bullmq';
import { ConfigError, MuscError, errorText } from '../errors.js';
import { int8ReferenceLevels, intervalBounds, othersPerUnit, selfOperands, toDistance, type MsmOptions, type MutualScoring, type ScoringSetId } from '../pipeline/msm.js';
import type { GemmOperands } from '../pipeline/gemm-operands.js';
import { crossBlockPlan, selfBlockPlan, type RowLayout, type UnitLayout } from '../pipeline/pairwise.js';
import type { CrossScoring } from '../pipeline/refine.js';
import { maxAbs } from '../pipeline/quantize.js';
import { LargestK } from '../pipeline/top-k.js';
import { CorruptFileError, decodePartial, encodeOperands, sha256, type PairwiseKind, type SetOperands } from './format.js';
import { connectionFrom, QUEUE_NAME, type TileJobData, type TileResult } from './queue.js';
import { getScores, getVerified, keys, openStore, putScores, type SharedStore } from './store.js';
import { mergePartial, rowTilePlan, tilePlan, type Tile } from './tiles.js';

/**
 * Default blocks per tile: ~0.7 s of int8 GEMM on 2 cores at the default config (11 ms per block,
 * BENCHMARKS.md), long enough that the per-tile cost (Redis round trip, partial file) stays small.
 */
export const DEFAULT_BLOCKS_PER_TILE = 64;

/** Options of the queued executor. */
export interface QueuedScoringOptions {
  /** Redis URL of the queue (`redis://host:port[/db]`). */
  readonly queue: string;
  /** Shared store: a folder every worker sees at the same path (or a store object). */
  readonly store: string | SharedStore;
  /** Names this run; a coordinator restarted with the same id resumes (default: a new random id). */
  readonly jobId?: string;
  /** GEMM blocks per tile (default `DEFAULT_BLOCKS_PER_TILE`). */
  readonly blocksPerTile?: number;
  /**
   * How a set is tiled. `pairs` (default): each image pair once, its GEMM serving both directions
   * (least compute; partials hold one value per patch and pair, ~N²·P values per set to move and
   * merge). `rows`: each tile owns its query rows against the reference units (2× the GEMM work;
   * partials hold at most K values per row, so ≤ N·P·K per set: for large N, far less to move and
   * merge on the coordinator). Same scores either way: a rows tile measures each of its pairs as
   * the in-process plan does (`rowTilePlan`).
   */
  readonly mode?: 'pairs' | 'rows';
  /** Tries per tile job before the run fails (default 3). */
  readonly attempts?: number;
  /** Leave the job's files in the store after `finish` (default: removed). */
  readonly keepStore?: boolean;
  /** Longest wait for Redis to answer at `open` (default 10 s), then a ConfigError with its last error. */
  readonly connectTimeoutMs?: number;
  readonly log?: (message: string) => void;
}

/** What the distributed path did (for benchmarks and tests). */
export interface DistributedStats {
  sets: number;
  /** Sets whose scores a previous coordinator of the same job id had finished. */
  setsReused: number;
  tiles: number;
  /** Tiles already finished when this coordinator asked for them. */
  tilesReused: number;
  /** Tiles whose partial was missing or corrupt and were computed again. */
  tilesRecomputed: number;
  /** Operand bytes written to the store. */
  operandBytes: number;
  /** Operand bytes workers read from the store. */
  operandReadBytes: number;
  /** Partial bytes read back (each was written once). */
  partialBytes: number;
  /** Seconds workers spent computing tiles (sum). */
  tileSeconds: number;
  /** Coordinator seconds spent writing sets (encode, SHA-256, store), reading and merging partials, and cleaning up. */
  prepareSeconds: number;
  mergeSeconds: number;
}

const JOB_ID = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

/** Waits for a promise unless the signal aborts first. */
function abortable<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** How long `QueuedScoring.open` retries a Redis that does not answer. */
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** Runs mutual scoring on queue workers; `mutualScoring` plugs into `scoreFeatures`. */
export class QueuedScoring {
  readonly jobId: string;
  readonly stats: DistributedStats = { sets: 0, setsReused: 0, tiles: 0, tilesReused: 0, tilesRecomputed: 0, operandBytes: 0, operandReadBytes: 0, partialBytes: 0, tileSeconds: 0, prepareSeconds: 0, mergeSeconds: 0 };
  private readonly store: SharedStore;
  private readonly queue: Queue<TileJobData, TileResult>;
  private readonly events: QueueEvents;
  private readonly blocksPerTile: number;
  private readonly attempts: number;
  private readonly mode: 'pairs' | 'rows';
  /** Whether Redis answered once (from then on, reconnections are retried for ever). */
  private connected = false;

  private constructor(private readonly opts: QueuedScoringOptions) {
    if (opts.jobId !== undefined && !JOB_ID.test(opts.jobId)) throw new ConfigError(`--job-id ${opts.jobId}: use a letter, then up to 63 letters, digits, - or _`);
    this.jobId = opts.jobId ?? `run-${randomUUID().slice(0, 8)}`;
    this.store = typeof opts.store === 'string' ? openStore(opts.store) : opts.store;
    this.blocksPerTile = opts.blocksPerTile ?? DEFAULT_BLOCKS_PER_TILE;
    this.attempts = opts.attempts ?? 3;
    this.mode = opts.mode ?? 'pairs';
    // ioredis retries a refused connection for ever, so `open` would hang silently on a wrong URL or
    // a Redis that is down. Until the first connection, retries stop after `connectTimeoutMs`;
    // once connected, a Redis restart mid-run is waited for as before.
    const started = Date.now();
    const waitMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const connection = connectionFrom(opts.queue, (times) => (!this.connected && Date.now() - started >= waitMs ? null : Math.min(2000, 100 * 2 ** Math.min(times, 5))));
    this.queue = new Queue(QUEUE_NAME, { connection });
    this.events = new QueueEvents(QUEUE_NAME, { connection });
    // One waiter (and one job handle) per tile in flight.
    this.events.setMaxListeners(0);
    this.queue.setMaxListeners(0);
  }

  /** Connects to the queue (fails with a one-line ConfigError when Redis cannot be reached). */
  static async open(opts: QueuedScoringOptions): Promise<QueuedScoring> {
    const q = new QueuedScoring(opts);
    let lastError: unknown;
    const remember = (err: unknown) => void (lastError = err);
    q.queue.on('error', remember);
    q.events.on('error', remember);
    try {
      await Promise.all([q.queue.waitUntilReady(), q.events.waitUntilReady()]);
      q.connected = true;
    } catch (err) {
      // Not closed: the connections have ended (the retry rule gave up), and closing would detach
      // BullMQ's own error handlers before its connection reports the failure once more (uncaught).
      // `remember` stays attached to absorb that report.
      const why = lastError ? errorText(lastError) : errorText(err);
      throw new ConfigError(`--queue ${opts.queue}: cannot reach Redis (no answer after retrying for ${(opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS) / 1000} s: ${why})`);
    }
    q.queue.off('error', remember);
    q.events.off('error', remember);
    return q;
  }

  /** The executor for `scoreFeatures` (`hooks.mutualScoring`). */
  readonly mutualScoring: MutualScoring = (z, dims, opts, set) => this.score(z, dims, opts, set);

  /** The executor of refinement's cross jobs (`hooks.crossScoring`). */
  readonly crossScoring: CrossScoring = (ops, query, reference, interval, opts) => this.cross(ops, query, reference, interval, opts);

  /** Removes the job's files from the store (unless `keepStore`): call after the run succeeded. */
  async finish(): Promise<void> {
    if (!this.opts.keepStore) await this.store.remove(this.jobId);
  }

  /** Closes the connections (the queue's jobs and the store's files stay). */
  async close(): Promise<void> {
    await Promise.allSettled([this.queue.close(), this.events.close()]);
  }

  private async score(z: Float32Array, dims: { N: number; P: number; C: number }, opts: MsmOptions, set: ScoringSetId): Promise<Float32Array> {
    const { N, P, C } = dims;
    // The same checks and operands as mutualScores (msm.ts), so the scores are the same.
    if (z.length !== N * P * C) throw new RangeError(`mutualScores: z has ${z.length} elements, expected ${N}x${P}x${C}`);
    if (opts.owner && opts.owner.length !== N) throw new RangeError(`mutualScores: owner has ${opts.owner.length} entries, expected ${N}`);
    if (opts.maxQueryGroups !== undefined) throw new ConfigError('partial (benchmark) scoring runs in-process only');
    const { kMin, kMax } = intervalBounds(othersPerUnit(N, opts.owner) + 1, opts.intervalLow ?? 0, opts.intervalHigh ?? 0.3);
    const precision = opts.precision ?? 'fp32';
    const levels = int8ReferenceLevels(opts.int8ReferenceLevels);
    const ops = await selfOperands(z, C, precision, levels, opts.int8Dither ?? true, opts.int8Range ?? maxAbs(z));
    const referenceLevels = precision === 'int8' ? levels : undefined;
    const tag = `${set.layer} r=${set.r} subset ${set.subset}${set.tile !== undefined ? ` tile ${set.tile}` : ''}${set.fine ? ' (fine)' : ''}`;
    const job: SetOperands = { kind: 'self', ops, units: N, patches: P, owner: opts.owner, k: kMax, referenceLevels };
    // Rows mode: each tile owns a query group's rows and computes all of their pairs, each as the
    // in-process plan does (the earlier unit on the query side), so the scores are the same.
    const tiles = this.mode === 'rows' ? rowTilePlan(N, P, opts, this.blocksPerTile) : tilePlan(selfBlockPlan(N, P, opts), P, this.blocksPerTile, 'self');
    return this.pairwise(job, tiles, kMin, opts, tag);
  }

  /** The cross job of a refinement (`CrossScoring`), on the workers. */
  private async cross(ops: GemmOperands, query: RowLayout, reference: UnitLayout, interval: { kMin: number; kMax: number }, opts: MsmOptions): Promise<Float32Array> {
    const levels = int8ReferenceLevels(opts.int8ReferenceLevels);
    const job: SetOperands = {
      kind: 'cross',
      ops,
      units: reference.units,
      patches: reference.patches,
      owner: reference.owner,
      rows: query.rows,
      rowOwner: query.owner,
      k: interval.kMax,
      referenceLevels: ops.precision === 'int8' ? levels : undefined,
    };
    return this.pairwise(job, tilePlan(crossBlockPlan(query.rows, reference, opts), reference.patches, this.blocksPerTile, 'cross'), interval.kMin, opts, `refinement of ${query.rows} rows`);
  }

  /**
   * Runs one pairwise job on the workers: operands to the store, tiles on the queue, partials
   * merged into the job's top-K, and the mean of ranks [kMin, k) of each row's distances.
   */
  private async pairwise(set: SetOperands, tiles: readonly Tile[], kMin: number, opts: Pick<MsmOptions, 'signal' | 'onProgress' | 'queryRows' | 'maxBlockColumns'>, tag: string): Promise<Float32Array> {
    const t0 = performance.now();
    const file = encodeOperands(set);
    const opsSha = sha256(file);
    const rows = set.kind === 'self' ? set.units * set.patches : (set.rows ?? 0);
    // The set's name covers its operands and its tiling (a pure function of the plan's sizes: hashing
    // the blocks themselves would cost a string of hundreds of MB at N = 10 000), so a resumed run
    // with other tiles starts afresh.
    const tiling = { kMin, mode: this.mode, blocksPerTile: this.blocksPerTile, queryRows: opts.queryRows, maxBlockColumns: opts.maxBlockColumns, blocks: tiles.reduce((s, t) => s + t.blocks.length, 0), tiles: tiles.length };
    const setKey = sha256(Buffer.from(`${opsSha}|${JSON.stringify(tiling)}`)).slice(0, 32);
    this.stats.sets++;

    const done = await getScores(this.store, keys.done(this.jobId, setKey), rows);
    if (done) {
      // A coordinator that stopped between saving the scores and removing the tiles left their jobs.
      await Promise.all(tiles.map((t) => this.queue.remove(`${this.jobId}.${setKey}.${t.index}`)));
      this.stats.setsReused++;
      opts.onProgress?.(1);
      return done;
    }
    const opsKey = keys.set(this.jobId, setKey);
    const existing = await this.store.get(opsKey);
    if (!existing || sha256(existing) !== opsSha) {
      await this.store.put(opsKey, file);
      this.stats.operandBytes += file.length;
    }

    const best = new LargestK(rows, set.k);
    this.stats.prepareSeconds += (performance.now() - t0) / 1000;
    const total = tiles.reduce((s, t) => s + t.work, 0);
    let finished = 0;
    const jobs = await Promise.all(tiles.map((t) => this.enqueue(t, set.kind, setKey, opsSha)));
    this.opts.log?.(`${tag}: ${tiles.length} tiles queued (job ${this.jobId})`);
    await Promise.all(
      tiles.map(async (t, i) => {
        await this.settle(jobs[i], t, setKey, best, opts.signal);
        finished += t.work;
        opts.onProgress?.(finished / total);
      }),
    );
    const t1 = performance.now();
    const scores = best.meanOfRanks(kMin, set.k, toDistance);
    await putScores(this.store, keys.done(this.jobId, setKey), scores);
    // The set is safe in the store: its tiles are no longer needed.
    await Promise.all(jobs.map((j) => j.remove().catch(() => undefined)));
    await Promise.all([opsKey, ...tiles.map((t) => keys.partial(this.jobId, setKey, t.index))].map((k) => this.store.remove(k)));
    this.stats.mergeSeconds += (performance.now() - t1) / 1000;
    return scores;
  }

  /** Adds a tile's job, or finds the one a previous coordinator of this job id added. */
  private async enqueue(t: Tile, kind: PairwiseKind, setKey: string, opsSha: string): Promise<Job<TileJobData, TileResult>> {
    const id = `${this.jobId}.${setKey}.${t.index}`;
    this.stats.tiles++;
    const old = await this.queue.getJob(id);
    if (old) {
      const state = await old.getState();
      if (state === 'completed') this.stats.tilesReused++;
      if (state === 'failed') await old.retry('failed');
      return old;
    }
    return this.add(t, kind, setKey, opsSha);
  }

  private add(t: Tile, kind: PairwiseKind, setKey: string, opsSha: string): Promise<Job<TileJobData, TileResult>> {
    const data: TileJobData = { job: this.jobId, set: setKey, opsSha, tile: t.index, blocks: t.blocks, ranges: t.ranges };
    return this.queue.add(kind, data, {
      jobId: `${this.jobId}.${setKey}.${t.index}`,
      attempts: this.attempts,
      backoff: { type: 'fixed', delay: 1000 },
      // Kept until the set is merged: a restarted coordinator reads the results from them.
      removeOnComplete: false,
      removeOnFail: false,
    });
  }

  /** Waits for a tile, checks its partial and merges it; a bad or missing partial is recomputed. */
  private async settle(job: Job<TileJobData, TileResult>, t: Tile, setKey: string, best: LargestK, signal?: AbortSignal): Promise<void> {
    const key = keys.partial(this.jobId, setKey, t.index);
    for (let round = 0; ; round++) {
      let result: TileResult;
      try {
        result = await abortable(job.waitUntilFinished(this.events), signal);
      } catch (err) {
        if (signal?.aborted) throw err;
        throw new MuscError('DISTRIBUTED', `tile ${job.id} failed (at most ${this.attempts} tries; errors a retry cannot fix end it at once): ${err instanceof Error ? err.message : String(err)}`);
      }
      try {
        const t0 = performance.now();
        const part = decodePartial(await getVerified(this.store, key, result.sha256));
        if (part.set !== setKey || part.tile !== t.index) throw new CorruptFileError(`${key} holds tile ${part.set}.${part.tile}`);
        if (JSON.stringify(part.ranges) !== JSON.stringify(t.ranges)) throw new CorruptFileError(`${key} covers other rows than its tile`);
        this.stats.partialBytes += result.bytes;
        this.stats.operandReadBytes += result.readBytes;
        this.stats.tileSeconds += result.seconds;
        mergePartial(best, part);
        this.stats.mergeSeconds += (performance.now() - t0) / 1000;
        return;
      } catch (err) {
        if (!(err instanceof CorruptFileError) || round >= this.attempts) throw err;
        this.opts.log?.(`tile ${job.id}: ${err.message}; computing it again`);
        this.stats.tilesRecomputed++;
        await job.remove();
        job = await this.add(t, job.name as PairwiseKind, setKey, job.data.opsSha);
      }
    }
  }
}
