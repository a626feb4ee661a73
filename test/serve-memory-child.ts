/**
 * A `musc serve` server in its own process for the memory test in serve.test.ts (started with
 * `--expose-gc`, so memory is sampled after real garbage collections and the test's own
 * allocations do not count). Usage (via child_process.fork): serve-memory-child.js <bank.mbank>
 * <heatmap cache size>. Sends `{ port }` once listening; answers the message 'sample' with the
 * process's memory after GC, and 'exit' by closing down.
 */
import { Musc } from '../src/api/musc.js';
import { createServer } from '../src/serve/server.js';

const [bankFile, cacheSize] = process.argv.slice(2);
const gc = globalThis.gc;
if (!gc || !process.send) throw new Error('run me with fork() and --expose-gc');
const scorer = await Musc.open({ bank: bankFile });
const app = await createServer({ scorer, heatmapCacheSize: Number(cacheSize) });
await app.listen({ port: 0, host: '127.0.0.1' });
const address = app.server.address();
process.send({ port: typeof address === 'object' && address ? address.port : 0 });

process.on('message', (m) => {
  if (m === 'sample') {
    // Twice: the first collection can leave finalised objects for the second.
    gc();
    gc();
    const { rss, heapUsed, external } = process.memoryUsage();
    process.send!({ rss, heapUsed, external });
  } else if (m === 'exit') {
    void app
      .close()
      .then(() => scorer.dispose())
      .then(() => process.exit(0));
  }
});
