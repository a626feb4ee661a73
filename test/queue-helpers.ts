/**
 * Test (and bench/dist.ts) helpers of the distributed path: a private `redis-server` on a free loopback port
 * (no persistence) and `musc worker` child processes, all stopped by the caller's `after`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { MUSC_BIN } from './helpers.js';

/** The Redis server binary (Debian's `redis-server`; `npm test` installs it). */
export const REDIS_SERVER = process.env.MUSC_REDIS_SERVER ?? '/usr/bin/redis-server';

/** A free TCP port on 127.0.0.1 (released just before use: fine on a test machine). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** A child process with its stderr+stdout lines collected. */
export interface Child {
  readonly proc: ChildProcess;
  readonly lines: string[];
  /** Resolves with the first line from index `from` on (already seen or coming) matching `re`. */
  waitFor(re: RegExp, timeoutMs?: number, from?: number): Promise<string>;
  /** Kills the process (SIGKILL unless said otherwise) and waits for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

function track(proc: ChildProcess): Child {
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  let buf = '';
  const onData = (chunk: Buffer) => {
    buf += chunk.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.re.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  };
  proc.stdout?.on('data', onData);
  proc.stderr?.on('data', onData);
  return {
    proc,
    lines,
    waitFor(re, timeoutMs = 60_000, from = 0) {
      const seen = lines.slice(from).find((l) => re.test(l));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re} (output: ${lines.slice(-10).join(' | ')})`)), timeoutMs);
        waiters.push({ re, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      });
    },
    async stop(signal: NodeJS.Signals = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
  };
}

/** Starts a private Redis on 127.0.0.1 (no RDB, no AOF) and waits until it accepts connections. */
export async function startRedis(): Promise<Child & { url: string }> {
  const port = await freePort();
  const proc = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const child = track(proc);
  await child.waitFor(/Ready to accept connections/, 20_000);
  return { ...child, url: `redis://127.0.0.1:${port}` };
}

/**
 * Starts `musc worker`; by default with 1 ONNX Runtime thread (two share a 2-core machine) and a
 * short lock, so a killed worker's tile comes back in ~2 s.
 */
export async function startWorker(url: string, store: string, opts: { lockMs?: number; threads?: number } = {}): Promise<Child> {
  const argv = [MUSC_BIN, 'worker', '--queue', url, '--store', store, '--threads', String(opts.threads ?? 1), '--lock-ms', String(opts.lockMs ?? 2000)];
  const proc = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const child = track(proc);
  await child.waitFor(/waiting for tiles/, 30_000);
  return child;
}

/** Ids of the tiles a worker finished, from its log. */
export function tilesDone(w: Child): string[] {
  return w.lines.map((l) => /^tile (\S+) done/.exec(l)?.[1]).filter((id): id is string => id !== undefined);
}
