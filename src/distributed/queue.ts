/**
 * What the coordinator and the workers share on the job queue (BullMQ on Redis):
 * the connection, the queue's name and the small JSON of a tile job. Bulk data never
 * goes into Redis: a job names a set and its tile's blocks; the operands and the
 * partial result live in the shared store.
 */
import type { ConnectionOptions } from 'bullmq';
import { ConfigError } from '../errors.js';
import type { Block } from '../pipeline/pairwise.js';
import type { RowRanges } from './format.js';

/** The BullMQ queue of mutual-scoring tiles. */
export const QUEUE_NAME = 'musc-tiles';

/** Data of one tile job. */
export interface TileJobData {
  /** The coordinator's job id: the store folder of this run. */
  readonly job: string;
  /** The set (SHA-256 prefix of its operands file). */
  readonly set: string;
  /** SHA-256 of the set's operands file, checked by the worker after reading it. */
  readonly opsSha: string;
  readonly tile: number;
  readonly blocks: readonly Block[];
  readonly ranges: RowRanges;
}

/** What a worker returns for a tile (kept by BullMQ as the job's return value). */
export interface TileResult {
  /** SHA-256 of the partial file the worker wrote. */
  readonly sha256: string;
  readonly bytes: number;
  /** Seconds spent in the GEMM blocks and top-K (not reading the set). */
  readonly seconds: number;
  /** Bytes of operands read from the store for this tile (0 when cached). */
  readonly readBytes: number;
  readonly worker: string;
}

/**
 * BullMQ connection options from `redis://[user:password@]host[:port][/db]` (or `rediss://` for TLS).
 * @param retryStrategy ioredis's reconnection rule (ms to wait, or null to give up); default: retry for ever
 */
export function connectionFrom(url: string, retryStrategy?: (times: number) => number | null): ConnectionOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`--queue ${url}: not a URL (expected redis://host:port)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new ConfigError(`--queue ${url}: expected a redis:// or rediss:// URL`);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new ConfigError(`--queue ${url}: the database must be a number`);
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db,
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    // BullMQ's workers block on Redis; they must not give up on commands while Redis restarts.
    maxRetriesPerRequest: null,
    ...(retryStrategy ? { retryStrategy } : {}),
  };
}
