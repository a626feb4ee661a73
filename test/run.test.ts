/**
 * `musc run` on synthetic plates (`musc demo`'s generator, no ../shared needed): too few images,
 * empty folder, unwritable output, and Ctrl-C at an observable moment (outputs are being written).
 * The awkward-file batch on real photos: test/data/run.test.ts.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { listRecursive, MUSC_BIN, writePlates, type Plates } from './helpers.js';

const run = promisify(execFile);
let tmp = '';
let plates: Plates;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'musc-run-test-'));
  // Few images (mutual scoring is quick), large ones: overlays at the original size take long enough to interrupt while they are written.
  plates = await writePlates(path.join(tmp, 'plates'), { count: 16, size: 768 });
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('fewer than 5 readable images, an empty folder and an unwritable output folder give clear errors', async () => {
  const few = path.join(tmp, 'few');
  await mkdir(few, { recursive: true });
  for (let i = 0; i < 4; i++) await copyFile(plates.good[i], path.join(few, `${i}.png`));
  await writeFile(path.join(few, 'bad.png'), 'nope');
  const expectFail = async (args: string[], pattern: RegExp) =>
    assert.rejects(run(process.execPath, [MUSC_BIN, 'run', ...args]), (e: { code?: number; stderr?: string }) => {
      assert.equal(e.code, 2, `exit code 2 for ${args.join(' ')}: ${e.stderr}`);
      assert.match(e.stderr ?? '', pattern);
      return true;
    });
  await expectFail([few, '--out', path.join(tmp, 'few-out')], /at least 5 readable images; found 4 \(1 of 5 files could not be read\)/);
  const empty = path.join(tmp, 'empty');
  await mkdir(empty, { recursive: true });
  await expectFail([empty, '--out', path.join(tmp, 'empty-out')], /no images found/);
  const blocker = path.join(tmp, 'a-file');
  await writeFile(blocker, '');
  await expectFail([few, '--out', path.join(blocker, 'out')], /cannot write to output folder/);
});

/**
 * Starts `musc run` on the plates, sends SIGINT as soon as `ready(out)` holds (polled every 20 ms),
 * and returns the exit code and stderr. Fails if the run ends before the moment comes.
 */
async function interruptWhen(name: string, ready: (out: string) => boolean): Promise<{ code: number | null; stderr: string; out: string }> {
  const out = path.join(tmp, name);
  const child = spawn(process.execPath, [MUSC_BIN, 'run', plates.dir, '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  let exitCode: number | null | undefined;
  void exited.then((c) => (exitCode = c));
  while (exitCode === undefined && !ready(out)) await new Promise((r) => setTimeout(r, 20));
  assert.equal(exitCode, undefined, `the run ended (exit ${exitCode}) before the moment to interrupt it came: ${stderr}`);
  child.kill('SIGINT');
  return { code: await exited, stderr, out };
}

test('Ctrl-C while outputs are written into a new folder: exit code 130, and the folder the run created is gone', async () => {
  // Outputs go to a staging folder inside --out and replace the folder's contents only when all are written;
  // the moment: the first overlay has been written there. (A folder with a previous run's files: test/robustness.)
  const staged = (o: string) => (existsSync(o) ? readdirSync(o).filter((n) => n.startsWith('.musc-staging-')).map((n) => path.join(o, n, 'overlays')) : []);
  const { code, stderr, out } = await interruptWhen('interrupted', (o) => staged(o).some((d) => existsSync(d) && readdirSync(d).some((f) => f.endsWith('.png'))));
  assert.equal(code, 130, stderr);
  assert.match(stderr, /interrupted/);
  assert.ok(!existsSync(out), `${out} was created by the interrupted run and must be removed: ${existsSync(out) ? (await listRecursive(out)).join(', ') : ''}`);
});
