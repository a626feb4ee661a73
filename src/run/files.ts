/**
 * Turning the user's folders, files and globs into a sorted list of image files.
 */
import { readdir, realpath, stat } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { glob } from 'tinyglobby';
import { DatasetError } from '../errors.js';
import { IMAGE_EXTENSIONS, isImageFileName } from '../image/io.js';

async function walk(dir: string, out: string[], seen: Set<string>): Promise<void> {
  // Symlinked folders are followed once (real path), so link cycles cannot loop forever.
  const real = await realpath(dir);
  if (seen.has(real)) return;
  seen.add(real);
  const entries = await readdir(dir, { withFileTypes: true });
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    const kind = e.isSymbolicLink() ? await stat(p).catch(() => null) : e;
    if (!kind) continue; // dangling link
    if (kind.isDirectory()) await walk(p, out, seen);
    else if (kind.isFile() && isImageFileName(e.name)) out.push(p);
  }
}

/**
 * Expands inputs: a folder contributes its image files recursively, a file itself
 * (whatever its extension: the decoder decides), anything else is a glob pattern.
 * @throws DatasetError when nothing matches.
 */
export async function collectImages(inputs: readonly string[]): Promise<string[]> {
  const found = new Set<string>();
  for (const input of inputs) {
    const st = await stat(input).catch(() => null);
    if (st?.isDirectory()) {
      const files: string[] = [];
      await walk(resolve(input), files, new Set());
      files.forEach((f) => found.add(f));
    } else if (st?.isFile()) {
      found.add(resolve(input));
    } else {
      const matches = await glob(input, { absolute: true, onlyFiles: true, dot: false });
      if (matches.length === 0) throw new DatasetError(`${input} is not a file or folder and matches no files`);
      matches.filter((m) => isImageFileName(m.split(sep).pop() ?? m)).forEach((m) => found.add(resolve(m)));
    }
  }
  if (found.size === 0) throw new DatasetError(`no images found in ${inputs.join(', ')} (looked for ${IMAGE_EXTENSIONS.join(' ')})`);
  return [...found].sort();
}

/** Paths relative to the files' common folder, with `/` separators, for display. */
export function displayNames(files: readonly string[]): string[] {
  const parts = files.map((f) => f.split(sep));
  let common = parts.length === 1 ? parts[0].length - 1 : 0;
  if (parts.length > 1) {
    const first = parts[0];
    while (common < first.length - 1 && parts.every((p) => p.length - 1 > common && p[common] === first[common])) common++;
  }
  return parts.map((p) => p.slice(common).join('/'));
}

/**
 * Short unique output names: each file's path relative to the files' common folder,
 * with separators replaced, so `good/000.png` and `broken/000.png` do not collide.
 */
export function outputStems(files: readonly string[]): string[] {
  const stems = displayNames(files).map((n) => n.replace(/\.[^./]*$/, '').split('/').join('__').replace(/[^\p{L}\p{N}._ -]/gu, '_'));
  // Names can still collide after sanitising, or differ only in case (one file on macOS/Windows): number repeats.
  const seen = new Map<string, number>();
  return stems.map((s) => {
    const key = s.toLowerCase();
    const n = seen.get(key) ?? 0;
    seen.set(key, n + 1);
    return n === 0 ? s : `${s}~${n}`;
  });
}
