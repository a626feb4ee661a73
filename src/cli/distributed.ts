/** Flags of the distributed path (`--queue`, `--store`, `--job-id` on `run` and `eval`) and their mapping. */
import { Option, type Command } from 'commander';
import { QueuedScoring } from '../distributed/coordinator.js';
import { ConfigError } from '../errors.js';
import type { ScoringOptions } from '../api/options.js';
import { positiveInt } from './parsers.js';

/** Adds the queue flags (each also read from the environment, for containers). */
export function addQueueOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--queue <url>', 'run mutual scoring on `musc worker` processes via this Redis (redis://host:port[/db])').env('MUSC_QUEUE'))
    .addOption(new Option('--store <dir>', 'shared folder for the bulk data of --queue (the same folder the workers see)').env('MUSC_STORE'))
    .addOption(new Option('--job-id <id>', 'name of this distributed run: rerun with the same id to resume from its finished tiles').env('MUSC_JOB_ID'))
    .addOption(new Option('--tile-blocks <n>', 'GEMM blocks per queued tile').argParser(positiveInt))
    .addOption(new Option('--tile-mode <mode>', 'pairs: each image pair once (least GEMM work); rows: tiles own their rows (2x GEMM, far fewer bytes to move and merge at large N)').choices(['pairs', 'rows']).default('pairs'))
    .addOption(new Option('--keep-store', "keep the run's files in --store after it succeeds"));
}

/** Parsed queue flags. */
export interface QueueOpts {
  queue?: string;
  store?: string;
  jobId?: string;
  tileBlocks?: number;
  tileMode?: 'pairs' | 'rows';
  keepStore?: boolean;
}

/**
 * Runs `fn` with the executor the flags name (none without `--queue`); the store's files of
 * the run are removed when it succeeds and kept when it fails, so the same `--job-id` resumes.
 */
export async function withQueue<T>(o: QueueOpts, fn: (executors: Pick<ScoringOptions, 'mutualScoring' | 'crossScoring' | 'setsInFlight'>) => Promise<T>): Promise<T> {
  if (!o.queue) {
    if (o.store || o.jobId) throw new ConfigError('--store and --job-id need --queue');
    return fn({});
  }
  if (!o.store) throw new ConfigError('--queue needs --store (a folder the workers share)');
  const q = await QueuedScoring.open({ queue: o.queue, store: o.store, jobId: o.jobId, blocksPerTile: o.tileBlocks, mode: o.tileMode, keepStore: o.keepStore, log: (m) => process.stderr.write(`${m}\n`) });
  process.stderr.write(`distributed: job ${q.jobId} on ${o.queue} (store ${o.store}); rerun with --job-id ${q.jobId} to resume\n`);
  try {
    const out = await fn({ mutualScoring: q.mutualScoring, crossScoring: q.crossScoring, setsInFlight: 2 });
    await q.finish();
    const s = q.stats;
    process.stderr.write(`distributed: ${s.tiles} tiles (${s.tilesReused} reused, ${s.tilesRecomputed} recomputed), ${s.sets} sets (${s.setsReused} reused)\n`);
    return out;
  } finally {
    await q.close();
  }
}
