/**
 * The robustness suite's harness: hostile inputs as table rows -> expected outcome.
 * A new case is one object in a table; no test code to write. Each case runs in a
 * fresh temporary folder, needs nothing outside the repository (images come from
 * the synthetic plate generator, banks from `bankFixture`), and checks exit code,
 * messages and the files written (or not written).
 *
 * Runners:
 * - `cliCases(area, rows)`: one `musc` invocation per row (or `parallel` copies at once);
 * - `httpCases(area, rows)` (http-runner.ts): requests, and hostile sockets, against a
 *   `musc serve` child process.
 *
 * Tables live beside this file, one per area (`cli-*.test.ts`, `bank.test.ts`,
 * `http.test.ts`); extend this harness with other runners (library) as needed.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { writeSyntheticBatch } from '../../src/demo/synthetic.js';
import { MUSC_BIN } from '../helpers.js';

/** What a hostile CLI invocation must lead to. */
export interface CliExpectation {
  /** Exit code (0 ok, 2 user error, 130 interrupted), or the codes allowed (e.g. a race with Ctrl-C). */
  readonly exit: number | readonly number[];
  readonly stdout?: RegExp;
  readonly stderr?: RegExp;
  /** Paths (relative to the case folder) that must exist afterwards. */
  readonly files?: readonly string[];
  /** Paths that must not exist afterwards. */
  readonly absent?: readonly string[];
  /** Any further check on the case folder; `all` holds every run's output when the row runs in `parallel`. */
  readonly check?: (dir: string, out: CliOutput, all: readonly CliOutput[]) => Promise<void> | void;
}

/** What one `musc` run printed. */
export interface CliOutput {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** One row of a CLI robustness table. */
export interface CliCase {
  /** What is hostile about it (the test's title). */
  readonly name: string;
  /** Creates the case's files in its fresh folder (e.g. with `writePlates`). */
  readonly setup?: (dir: string) => Promise<void>;
  /** `musc` arguments; paths relative to the case folder (the working directory). `i` numbers the `parallel` runs. */
  readonly args: readonly string[] | ((dir: string, i: number) => readonly string[]);
  /** Start this many `musc` processes at once (default 1); each must meet `expect`. */
  readonly parallel?: number;
  readonly expect: CliExpectation;
  /** Sends Ctrl-C (SIGINT) once `when(dir)` holds, polled every 20 ms while the command runs. */
  readonly interrupt?: { readonly when: (dir: string) => boolean | Promise<boolean> };
  /** Per-case limit in ms (default 120 s: cases that score load the backbone). */
  readonly timeout?: number;
}

/** Runs `musc` with `args` in `cwd`; never throws on a non-zero exit. `interruptWhen` as `CliCase.interrupt`. */
export function runMusc(
  args: readonly string[],
  cwd: string,
  env: NodeJS.ProcessEnv = process.env,
  interruptWhen?: () => boolean | Promise<boolean>,
): Promise<CliOutput> {
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const child = execFile(process.execPath, [MUSC_BIN, ...args], { cwd, env, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      clearTimeout(timer);
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    if (interruptWhen) {
      const poll = async () => {
        if (child.exitCode !== null) return;
        if (await interruptWhen()) child.kill('SIGINT');
        else timer = setTimeout(() => void poll(), 20);
      };
      void poll();
    }
  });
}

/** `runMusc` for a case's setup: fails the case, with the output, unless the command exits 0. */
export async function runMuscOk(args: readonly string[], cwd: string): Promise<{ stdout: string; stderr: string }> {
  const out = await runMusc(args, cwd);
  assert.equal(out.code, 0, `setup: musc ${args.join(' ')} failed\nstdout: ${out.stdout.slice(-2000)}\nstderr: ${out.stderr.slice(-2000)}`);
  return out;
}

/** Writes `count` synthetic plate images (256 px PNG) to `dir/sub`, no masks needed by callers. */
export async function writePlates(dir: string, sub: string, count = 6, seed = 7): Promise<string> {
  const target = path.join(dir, `.${sub}-batch`);
  await writeSyntheticBatch(target, { count, seed, defectRate: 0.2 });
  // Flatten test/<kind>/NNN.png into dir/sub/<kind>_NNN.png.
  const dest = path.join(dir, sub);
  await mkdir(dest, { recursive: true });
  for (const kind of await readdir(path.join(target, 'test'))) {
    for (const f of await readdir(path.join(target, 'test', kind))) await rename(path.join(target, 'test', kind, f), path.join(dest, `${kind}_${f}`));
  }
  await rm(target, { recursive: true, force: true });
  return dest;
}

/** A bank every case can copy: built once per test process with `musc bank build` from synthetic plates. */
export interface BankFixture {
  /** Reference images (default 6). */
  readonly images?: number;
  readonly reference?: 'unlabeled' | 'good';
}

const bankCache = new Map<string, Promise<string>>();
let bankCacheDir: Promise<string> | null = null;

/** Path of a cached bank (read-only: copy it into the case folder, e.g. with `copyBank`). */
export function bankFixture(f: BankFixture = {}): Promise<string> {
  const images = f.images ?? 6;
  const reference = f.reference ?? 'unlabeled';
  const key = `${reference}-${images}`;
  let built = bankCache.get(key);
  if (!built) {
    built = (async () => {
      bankCacheDir ??= mkdtemp(path.join(os.tmpdir(), 'musc-robust-banks-'));
      const dir = await bankCacheDir;
      await writePlates(dir, key, images, 7);
      const out = await runMusc(['bank', 'build', key, '--reference', reference, '--out', `${key}.mbank`], dir);
      if (out.code !== 0) throw new Error(`bank fixture ${key} failed (exit ${out.code}): ${out.stderr}`);
      return path.join(dir, `${key}.mbank`);
    })();
    bankCache.set(key, built);
  }
  return built;
}

/** Copies a cached bank to `dir/name` (default `bank.mbank`). */
export async function copyBank(dir: string, f: BankFixture = {}, name = 'bank.mbank'): Promise<string> {
  const target = path.join(dir, name);
  await copyFile(await bankFixture(f), target);
  return target;
}

/** Removes the bank cache when the file's tests are over (registered once per table file). */
export function cleanBankCacheAfterAll(): void {
  after(async () => {
    if (bankCacheDir) await rm(await bankCacheDir, { recursive: true, force: true });
  });
}

/** Registers one `node:test` test per case. */
export function cliCases(area: string, cases: readonly CliCase[]): void {
  cleanBankCacheAfterAll();
  for (const c of cases) {
    test(`${area}: ${c.name}`, { timeout: c.timeout ?? 120_000 }, async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'musc-robust-'));
      try {
        await c.setup?.(dir);
        const runs = Array.from({ length: c.parallel ?? 1 }, (_, i) => (typeof c.args === 'function' ? c.args(dir, i) : c.args));
        const outs = await Promise.all(runs.map((args) => runMusc(args, dir, process.env, c.interrupt && (() => c.interrupt!.when(dir)))));
        const exits: readonly number[] = typeof c.expect.exit === 'number' ? [c.expect.exit] : c.expect.exit;
        for (const [i, out] of outs.entries()) {
          const ctx = `musc ${runs[i].join(' ')}\nstdout: ${out.stdout.slice(-2000)}\nstderr: ${out.stderr.slice(-2000)}`;
          assert.ok(exits.includes(out.code), `exit code ${out.code}, expected ${exits.join(' or ')}\n${ctx}`);
          if (c.expect.stdout) assert.match(out.stdout, c.expect.stdout, ctx);
          if (c.expect.stderr) assert.match(out.stderr, c.expect.stderr, ctx);
          for (const f of c.expect.files ?? []) assert.ok(existsSync(path.join(dir, f)), `${f} should exist\n${ctx}`);
          for (const f of c.expect.absent ?? []) assert.ok(!existsSync(path.join(dir, f)), `${f} should not exist\n${ctx}`);
        }
        await c.expect.check?.(dir, outs[0], outs);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
}

export { httpCases, type HttpCase, type HttpRequestSpec, type HttpExpectation, type HostileClients, type HttpFixtures } from './http-runner.js';
