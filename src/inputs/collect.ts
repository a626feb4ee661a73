/**
 * Turning the user's folders, files and globs into a sorted list of image files.
 * Output folders are never inputs: folders marked as musc outputs (`.musc-output.json`)
 * and the folders the current command writes to are skipped, so a re-run with `--out`
 * inside the input folder does not score its own overlays.
 */
import { existsSync } from 'node:fs';
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { glob } from 'tinyglobby';
import { DatasetError } from '../errors.js';
import { IMAGE_EXTENSIONS, isImageFileName as isImageName } from '../image/io.js';
import { MANIFEST_NAME } from '../outputs/manifest.js';

/** Options of `collectImages`. */
export interface CollectOptions {
  /** Folders to leave out besides marked output folders (e.g. this run's `--out`). */
  readonly exclude?: readonly string[];
}

/** The images found, and the output folders that were skipped. */
export interface CollectedImages {
  /** Absolute paths, sorted. */
  readonly files: string[];
  /** Output folders left out (absolute paths), for a note to the user. */
  readonly skippedOutputs: string[];
}

class Walker {
  private readonly seen = new Set<string>();
  private readonly outputCache = new Map<string, boolean>();
  readonly skipped = new Set<string>();
  constructor(private readonly excluded: ReadonlySet<string>) {}

  /** Whether `dir` is an output folder (marked, or excluded by the caller). */
  private isOutput(dir: string): boolean {
    let v = this.outputCache.get(dir);
    if (v === undefined) {
      v = this.excluded.has(dir) || existsSync(join(dir, MANIFEST_NAME));
      this.outputCache.set(dir, v);
    }
    if (v) this.skipped.add(dir);
    return v;
  }

  /** Whether `path` lies inside an output folder (checked up to the root). */
  insideOutput(path: string): boolean {
    for (let d = dirname(path); ; d = dirname(d)) {
      if (this.isOutput(d)) return true;
      if (dirname(d) === d) return false;
    }
  }

  async walk(dir: string, out: string[]): Promise<void> {
    if (this.isOutput(dir)) return;
    // Symlinked folders are followed once (real path), so link cycles cannot loop forever.
    const real = await realpath(dir);
    if (this.seen.has(real)) return;
    this.seen.add(real);
    const entries = await readdir(dir, { withFileTypes: true });
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      const kind = e.isSymbolicLink() ? await stat(p).catch(() => null) : e;
      // A dangling link named like an image is kept: decoding reports it as a broken link, in the error rows.
      if (!kind) {
        if (isImageName(e.name)) out.push(p);
      } else if (kind.isDirectory()) await this.walk(p, out);
      else if (kind.isFile() && isImageName(e.name)) out.push(p);
    }
  }
}

/**
 * Expands inputs: a folder contributes its image files recursively, a file itself
 * (whatever its extension: the decoder decides), anything else is a glob pattern.
 * Files inside output folders are left out (see the module doc).
 * @throws DatasetError when nothing matches.
 */
export async function collectImages(inputs: readonly string[], opts: CollectOptions = {}): Promise<CollectedImages> {
  const walker = new Walker(new Set((opts.exclude ?? []).map((d) => resolve(d))));
  const found = new Set<string>();
  for (const input of inputs) {
    const abs = resolve(input);
    const st = await stat(input).catch(() => null);
    if (st?.isDirectory()) {
      if (walker.insideOutput(abs)) continue;
      const files: string[] = [];
      await walker.walk(abs, files);
      files.forEach((f) => found.add(f));
    } else if (st?.isFile() || (!st && (await lstat(input).catch(() => null))?.isSymbolicLink())) {
      // A named file is used whatever its extension; a dangling link becomes an error row.
      if (!walker.insideOutput(abs)) found.add(abs);
    } else {
      const matches = await glob(input, { absolute: true, onlyFiles: true, dot: false });
      if (matches.length === 0) throw new DatasetError(`${input} is not a file or folder and matches no files`);
      matches.filter((m) => isImageName(m.split(sep).pop() ?? m) && !walker.insideOutput(resolve(m))).forEach((m) => found.add(resolve(m)));
    }
  }
  const skippedOutputs = [...walker.skipped].sort();
  if (found.size === 0) {
    const why = skippedOutputs.length ? `; skipped musc output folders: ${skippedOutputs.join(', ')}` : '';
    throw new DatasetError(`no images found in ${inputs.join(', ')} (looked for ${IMAGE_EXTENSIONS.join(' ')}${why})`);
  }
  return { files: [...found].sort(), skippedOutputs };
}
