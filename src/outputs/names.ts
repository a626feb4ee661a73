/**
 * Names of a batch's files in outputs: display names for the report and tables,
 * and unique file stems for overlays and maps.
 */
import { sep } from 'node:path';

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
