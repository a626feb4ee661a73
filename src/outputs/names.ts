/**
 * Names of a batch's files in outputs: display names for the report and tables,
 * and unique file stems for overlays and maps.
 */
import { createHash } from 'node:crypto';
import { sep } from 'node:path';

/**
 * Longest output stem in UTF-8 bytes. File systems allow 255 bytes per name, and a stem gets
 * suffixes (`.npy`, `~n`); deeply nested inputs can make the joined path far longer, and one name
 * the file system refuses would lose the whole run's outputs.
 */
const MAX_STEM_BYTES = 160;

/** A stem shortened to MAX_STEM_BYTES: a hash of the whole stem, then its end (the file name part). */
function boundedStem(stem: string): string {
  if (Buffer.byteLength(stem) <= MAX_STEM_BYTES) return stem;
  const hash = createHash('sha256').update(stem).digest('hex').slice(0, 8);
  const chars = [...stem];
  let tail = '';
  for (let i = chars.length - 1; i >= 0 && Buffer.byteLength(chars[i] + tail) <= MAX_STEM_BYTES - hash.length - 2; i--) tail = chars[i] + tail;
  return `${hash}__${tail}`;
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
  const stems = displayNames(files).map((n) => boundedStem(n.replace(/\.[^./]*$/, '').split('/').join('__').replace(/[^\p{L}\p{N}._ -]/gu, '_')));
  // Names can still collide after sanitising, or differ only in case (one file on macOS/Windows): number repeats.
  const seen = new Map<string, number>();
  return stems.map((s) => {
    const key = s.toLowerCase();
    const n = seen.get(key) ?? 0;
    seen.set(key, n + 1);
    return n === 0 ? s : `${s}~${n}`;
  });
}
