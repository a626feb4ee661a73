/** Shared paths for tests: compiled tests run from dist/test, sources live in test/. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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

/** `../shared/data` beside the checkout: real evaluation images, never copied into the repo. */
export const SHARED_DATA = path.resolve(repoRoot(), '../shared/data');

/** The CLI entry point. */
export const MUSC_BIN = path.join(repoRoot(), 'bin', 'musc.js');
