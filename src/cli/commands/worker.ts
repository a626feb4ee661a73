/** `musc worker`: computes mutual-scoring tiles from a queue until stopped (SIGINT/SIGTERM). */
import { Option, type Command } from 'commander';
import { DEFAULT_LOCK_MS, startWorker } from '../../distributed/worker.js';
import { integer, positiveInt } from '../parsers.js';

export function addWorkerCommand(program: Command): void {
  program
    .command('worker')
    .description('compute mutual-scoring tiles queued by `musc run/eval --queue` (runs until SIGINT/SIGTERM)')
    .addOption(new Option('--queue <url>', 'Redis of the queue (redis://host:port[/db])').env('MUSC_QUEUE').makeOptionMandatory())
    .addOption(new Option('--store <dir>', 'the shared folder given to the coordinator (--store)').env('MUSC_STORE').makeOptionMandatory())
    .addOption(new Option('--threads <n>', 'ONNX Runtime intra-op threads (default: all cores)').argParser(positiveInt).env('MUSC_THREADS'))
    .addOption(new Option('--concurrency <n>', 'tiles at once in this process').argParser(positiveInt).default(1))
    .addOption(new Option('--lock-ms <ms>', "a dead worker's tile is retried after about this long").argParser(integer(1000)).env('MUSC_LOCK_MS').default(DEFAULT_LOCK_MS))
    .action(async (o: { queue: string; store: string; threads?: number; concurrency: number; lockMs: number }) => {
      const log = (m: string) => process.stderr.write(`${m}\n`);
      const worker = await startWorker({ queue: o.queue, store: o.store, threads: o.threads, concurrency: o.concurrency, lockMs: o.lockMs, log });
      log(`musc worker ${process.pid}: waiting for tiles on ${o.queue}`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      log(`musc worker ${process.pid}: stopping after the current tile (${worker.tiles()} computed)`);
      await worker.close();
    });
}
