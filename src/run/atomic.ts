/**
 * Atomic file writes: write to a temporary name in the same folder, then rename,
 * so an interrupted run never leaves a file that looks complete but is not.
 */
import { rename, rm, writeFile } from 'node:fs/promises';

let counter = 0;

/** A temporary sibling name for `file`. */
export function tempName(file: string): string {
  return `${file}.tmp-${process.pid}-${counter++}`;
}

/** Writes `data` to `file` atomically. */
export async function writeAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = tempName(file);
  try {
    await writeFile(tmp, data);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Runs `produce(tmp)` which writes a temp file, then renames it to `file`. */
export async function produceAtomic(file: string, produce: (tmp: string) => Promise<unknown>): Promise<void> {
  const tmp = tempName(file);
  try {
    await produce(tmp);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
