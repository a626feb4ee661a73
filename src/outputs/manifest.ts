/**
 * The marker of a musc output folder: `.musc-output.json` lists the files the last
 * run wrote there. It lets the next run replace exactly those files (and nothing of
 * the user's), and lets input collection skip output folders so overlays never
 * become product images.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import writeFileAtomic from 'write-file-atomic';

/** File name of the marker inside an output folder. */
export const MANIFEST_NAME = '.musc-output.json';

/** Contents of the marker. */
export interface OutputManifest {
  readonly tool: 'musc-ts';
  /** Format version of this file. */
  readonly format: 1;
  /** The command that wrote the folder (`run`, `eval`, `score`). */
  readonly command: string;
  /** When the files were written, ISO 8601. */
  readonly writtenAt: string;
  /** `complete`, or `replacing` while a run moves its files in (then `files` also lists the previous run's). */
  readonly state: 'complete' | 'replacing';
  /** Files written by musc, relative to the folder, `/`-separated. */
  readonly files: readonly string[];
}

/**
 * The folder's marker, or `null` when there is none. A marker that cannot be parsed
 * still marks the folder as musc's, with no files known.
 */
export async function readManifest(dir: string): Promise<OutputManifest | null> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST_NAME), 'utf8');
  } catch {
    return null;
  }
  try {
    const m = JSON.parse(text) as Partial<OutputManifest>;
    const files = Array.isArray(m.files) ? m.files.filter((f): f is string => typeof f === 'string' && isInsidePath(f)) : [];
    return { tool: 'musc-ts', format: 1, command: String(m.command ?? 'unknown'), writtenAt: String(m.writtenAt ?? ''), state: m.state === 'complete' ? 'complete' : 'replacing', files };
  } catch {
    return { tool: 'musc-ts', format: 1, command: 'unknown', writtenAt: '', state: 'replacing', files: [] };
  }
}

/**
 * Whether a listed file is a plain relative path inside the folder. The next run deletes what
 * the marker lists, and a folder may come from someone else (shared, unzipped): an absolute path,
 * a `..` segment or a backslash could name a file outside it, so such entries are ignored.
 */
export function isInsidePath(rel: string): boolean {
  if (rel === '' || rel.startsWith('/') || rel.includes('\\') || rel.includes('\0') || /^[A-Za-z]:/.test(rel)) return false;
  return rel.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
}

/** Writes the marker atomically. */
export async function writeManifest(dir: string, m: Omit<OutputManifest, 'tool' | 'format'>): Promise<void> {
  const full: OutputManifest = { tool: 'musc-ts', format: 1, ...m };
  await writeFileAtomic(join(dir, MANIFEST_NAME), `${JSON.stringify(full, null, 1)}\n`);
}
