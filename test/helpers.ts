/** Shared paths and inputs for tests: compiled tests run from dist/test, sources live in test/. */
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after } from 'node:test';
import { writeSyntheticBatch, type SyntheticOptions } from '../src/demo/synthetic.js';

/** The repository root (the folder holding package.json). */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('package.json not found above the test file');
    dir = up;
  }
  return dir;
}

/** The CLI entry point. */
export const MUSC_BIN = path.join(repoRoot(), 'bin', 'musc.js');

/** Chromium for the browser tests (`npm test` installs Debian's when it can; see scripts/test.mjs). */
export const CHROMIUM = process.env.MUSC_CHROMIUM ?? '/usr/bin/chromium';

/** Debian darknet's sample photos (eagle.jpg, dog.jpg, giraffe.jpg), real photos for the backbone tests. */
export const DARKNET_PHOTOS = process.env.MUSC_DARKNET_DATA ?? '/usr/share/darknet/data';

/**
 * The real evaluation data (MVTec AD bottle, Magnetic Tile) for the data tier (`npm run test:data`):
 * `$MUSC_DATA`, else `../shared/data` beside the checkout. Never copied into the repository.
 * Throws (so the test file fails, never skips) when the data is not there.
 */
export function evaluationData(): string {
  const root = process.env.MUSC_DATA ? path.resolve(process.env.MUSC_DATA) : path.resolve(repoRoot(), '../shared/data');
  const probes = ['mvtec_ad/bottle/test/good', 'magnetic_tile/test/good'];
  const missing = probes.filter((p) => !existsSync(path.join(root, p)));
  if (missing.length > 0) {
    throw new Error(`the data tier needs the evaluation data at ${root} (missing ${missing.join(', ')}): put ../shared/data beside the checkout or set MUSC_DATA`);
  }
  return root;
}

/** A synthetic batch of brushed-metal plates in MVTec layout (`musc demo`'s generator), as file lists. */
export interface Plates {
  /** The category folder (`test/<good|kind>/NNN.png`, `ground_truth/<kind>/NNN_mask.png`). */
  readonly dir: string;
  readonly good: string[];
  readonly defective: string[];
}

/**
 * Writes synthetic plates to `dir` and lists them: real-looking images without `../shared`.
 * The defects are drawn strongly enough that MuSc separates them perfectly (`musc demo`: image AUROC 1.0).
 */
export async function writePlates(dir: string, opts: SyntheticOptions = {}): Promise<Plates> {
  await writeSyntheticBatch(dir, opts);
  const good: string[] = [];
  const defective: string[] = [];
  for (const kind of (await readdir(path.join(dir, 'test'))).sort()) {
    const files = (await readdir(path.join(dir, 'test', kind))).sort().map((f) => path.join(dir, 'test', kind, f));
    (kind === 'good' ? good : defective).push(...files);
  }
  return { dir, good, defective };
}

/** Every file below `dir` (recursively), as paths. */
export async function listRecursive(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => !e.isDirectory()).map((e) => path.join(e.parentPath, e.name));
}

/** A factory of temporary folders that the calling test file removes when it ends. */
export function tempDirs(prefix: string): () => Promise<string> {
  const roots: string[] = [];
  after(async () => {
    for (const d of roots) await rm(d, { recursive: true, force: true });
  });
  return async () => {
    const d = await mkdtemp(path.join(os.tmpdir(), prefix));
    roots.push(d);
    return d;
  };
}
