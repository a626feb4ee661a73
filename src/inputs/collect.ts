/**
 * Turning the user's folders, files and globs into a sorted list of image files.
 * Outputs never become inputs: the files an output folder's marker (`.musc-output.json`)
 * lists, its `overlays/` and `maps/`, and those of the folder the current command writes
 * to are skipped, so a re-run with `--out` inside (or equal to) the input folder scores
 * the same images as the first run.
 */
import { existsSync, readFileSync } from 'node:fs';
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { glob } from 'tinyglobby';
import { DatasetError } from '../errors.js';
import { IMAGE_EXTENSIONS, isImageFileName as isImageName } from '../image/io.js';
import { MANIFEST_NAME } from '../outputs/manifest.js';

/** Sub-folders of an output folder that hold nothing but musc's files. */
const OUTPUT_SUBFOLDERS = ['overlays', 'maps'];

/** Options of `collectImages`. */
export interface CollectOptions {
  /** Output folders of the current command (e.g. `--out`): their musc files are skipped even before they are marked. */
  readonly outputs?: readonly string[];
}

/** The images found, and the output folders whose files were skipped. */
export interface CollectedImages {
  /** Absolute paths, sorted. */
  readonly files: string[];
  /** Output folders (absolute paths) some of whose files were left out, for a note to the user. */
  readonly skippedOutputs: string[];
}

/** What musc wrote in one folder: the files its marker lists (absolute paths). */
interface OutputFiles {
  readonly files: ReadonlySet<string>;
}

class Walker {
  private readonly seen = new Set<string>();
  private readonly outputs = new Map<string, OutputFiles | null>();
  readonly skipped = new Set<string>();
  constructor(private readonly current: ReadonlySet<string>) {}

  /** The musc files of `dir` when it is an output folder (marked, or one the command writes to), else null. */
  private outputOf(dir: string): OutputFiles | null {
    let v = this.outputs.get(dir);
    if (v === undefined) {
      v = null;
      const marker = join(dir, MANIFEST_NAME);
      if (existsSync(marker)) {
        let listed: string[] = [];
        try {
          const m = JSON.parse(readFileSync(marker, 'utf8')) as { files?: unknown };
          if (Array.isArray(m.files)) listed = m.files.filter((f): f is string => typeof f === 'string');
        } catch {
          // An unreadable marker still marks the folder: its overlays/ and maps/ are skipped below.
        }
        v = { files: new Set(listed.map((f) => join(dir, ...f.split('/')))) };
      } else if (this.current.has(dir)) v = { files: new Set() };
      this.outputs.set(dir, v);
    }
    return v;
  }

  /** Whether `path` (a file or folder) is musc's: listed by the marker of a folder above it, or in an output folder's overlays/ or maps/. */
  isOutput(path: string): boolean {
    let child = path;
    for (let d = dirname(path); d !== child; child = d, d = dirname(d)) {
      const out = this.outputOf(d);
      if (out && (out.files.has(path) || OUTPUT_SUBFOLDERS.some((s) => child === join(d, s)))) {
        this.skipped.add(d);
        return true;
      }
    }
    return false;
  }

  async walk(dir: string, out: string[]): Promise<void> {
    // Symlinked folders are followed once (real path), so link cycles cannot loop forever.
    const real = await realpath(dir);
    if (this.seen.has(real)) return;
    this.seen.add(real);
    const entries = await readdir(dir, { withFileTypes: true });
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      if (this.isOutput(p)) continue;
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
  const walker = new Walker(new Set((opts.outputs ?? []).map((d) => resolve(d))));
  const found = new Set<string>();
  for (const input of inputs) {
    const abs = resolve(input);
    const st = await stat(input).catch(() => null);
    if (st?.isDirectory()) {
      if (walker.isOutput(abs)) continue;
      const files: string[] = [];
      await walker.walk(abs, files);
      files.forEach((f) => found.add(f));
    } else if (st?.isFile() || (!st && (await lstat(input).catch(() => null))?.isSymbolicLink())) {
      // A named file is used whatever its extension; a dangling link becomes an error row.
      if (!walker.isOutput(abs)) found.add(abs);
    } else {
      const matches = await glob(input, { absolute: true, onlyFiles: true, dot: false });
      if (matches.length === 0) throw new DatasetError(`${input} is not a file or folder and matches no files`);
      matches.filter((m) => isImageName(m.split(sep).pop() ?? m) && !walker.isOutput(resolve(m))).forEach((m) => found.add(resolve(m)));
    }
  }
  const skippedOutputs = [...walker.skipped].sort();
  if (found.size === 0) {
    const why = skippedOutputs.length ? `; skipped the outputs musc wrote in ${skippedOutputs.join(', ')}` : '';
    throw new DatasetError(`no images found in ${inputs.join(', ')} (looked for ${IMAGE_EXTENSIONS.join(' ')}${why})`);
  }
  return { files: [...found].sort(), skippedOutputs };
}
