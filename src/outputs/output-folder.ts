/**
 * Owning an output folder. A run checks the folder before any work (no side effects),
 * writes everything into a hidden staging folder inside it, and only when all files are
 * written replaces the previous run's files with them. So the folder always holds one
 * run's outputs: an interrupted or failed run leaves it exactly as it was (and removes
 * it if the run created it), and scores.csv and report.html always describe the same run.
 *
 * A folder is the run's to write when it is new, empty, or marked as musc's (manifest.ts);
 * a non-empty folder of other files is refused unless `overwrite` is set, and even then
 * only musc's own file names are replaced.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { MuscError, errorText } from '../errors.js';
import { readManifest, writeManifest, type OutputManifest } from './manifest.js';

const STAGING_PREFIX = '.musc-staging-';

/** Staging folders this process has open (so a second run in this process never removes one). */
const ownStaging = new Set<string>();

/** What `checkOutputFolder` found: where the run may write and what it will replace. */
export interface OutputFolderPlan {
  /** Absolute path of the folder. */
  readonly dir: string;
  /** Whether the folder exists now. */
  readonly exists: boolean;
  /** The previous musc run's marker, when the folder has one. */
  readonly previous: OutputManifest | null;
}

const outputError = (dir: string, why: string, cause?: unknown) => new MuscError('OUTPUT', `cannot write to output folder ${dir}: ${why}`, { cause });

async function assertWritableDir(dir: string, shown: string): Promise<void> {
  const st = await stat(dir);
  if (!st.isDirectory()) throw outputError(shown, `${dir} is a file, not a folder`);
  await access(dir, constants.W_OK | constants.X_OK).catch((err: unknown) => {
    throw outputError(shown, `no permission to write in ${dir}`, err);
  });
}

/**
 * Checks, without creating or changing anything, that a run can write its outputs to `dir`.
 * @throws MuscError `OUTPUT` when the folder (or the nearest existing parent) is not a
 *   writable folder, `OUTPUT_NOT_EMPTY` when it holds files musc did not write (unless `overwrite`).
 */
export async function checkOutputFolder(dir: string, opts: { overwrite?: boolean } = {}): Promise<OutputFolderPlan> {
  const abs = resolve(dir);
  const st = await stat(abs).catch(() => null);
  if (!st) {
    // A new folder: its nearest existing ancestor must be a writable folder.
    let up = dirname(abs);
    for (;;) {
      const s = await stat(up).catch((err: { code?: string }) => (err.code === 'ENOENT' ? null : Promise.reject(outputError(dir, errorText(err), err))));
      if (s) break;
      const next = dirname(up);
      if (next === up) break;
      up = next;
    }
    await assertWritableDir(up, dir);
    return { dir: abs, exists: false, previous: null };
  }
  await assertWritableDir(abs, dir);
  const previous = await readManifest(abs);
  if (!previous && !opts.overwrite) {
    const entries = (await readdir(abs)).filter((n) => !n.startsWith(STAGING_PREFIX));
    if (entries.length > 0) {
      throw new MuscError(
        'OUTPUT_NOT_EMPTY',
        `output folder ${dir} is not empty and was not written by musc (${entries.length} entries, e.g. ${entries.slice(0, 3).join(', ')}): choose a new or empty folder, or pass --overwrite to write into it anyway`,
      );
    }
  }
  return { dir: abs, exists: true, previous };
}

/** A run's files on their way into an output folder; see the module doc. */
export class OutputStaging {
  private readonly written = new Set<string>();
  private done = false;

  private constructor(
    private readonly plan: OutputFolderPlan,
    /** The first folder this run created (removed again if the run fails), or undefined. */
    private readonly created: string | undefined,
    /** The hidden folder new files are written to. */
    readonly staging: string,
  ) {}

  /** Creates the folder if needed and a fresh staging folder inside it; removes staging folders of runs that died. */
  static async open(plan: OutputFolderPlan): Promise<OutputStaging> {
    let created: string | undefined;
    try {
      created = await mkdir(plan.dir, { recursive: true });
    } catch (err) {
      throw outputError(plan.dir, errorText(err), err);
    }
    for (const name of await readdir(plan.dir)) {
      const pid = Number(/^\.musc-staging-(\d+)-/.exec(name)?.[1]);
      // A staging folder with this process's own id that this process did not make is from an
      // earlier life of the id (in a container, node is often pid 1 on every start).
      const stale = pid === process.pid ? !ownStaging.has(join(plan.dir, name)) : !processAlive(pid);
      if (pid && stale) await rm(join(plan.dir, name), { recursive: true, force: true });
    }
    const staging = join(plan.dir, `${STAGING_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`);
    await mkdir(staging);
    ownStaging.add(staging);
    return new OutputStaging(plan, created, staging);
  }

  /** The staging path of `rel` (a `/`-separated path inside the output folder); its folder is created. */
  async path(rel: string): Promise<string> {
    const p = join(this.staging, ...rel.split('/'));
    await mkdir(dirname(p), { recursive: true });
    this.written.add(rel);
    return p;
  }

  /**
   * Replaces the previous run's files with the staged ones: the old files go first (so no
   * old report sits next to new scores), then the new ones are moved in, report last, and
   * the marker lists them. Not interruptible by the run's abort signal: it only renames.
   * @param last files to move last, in this order (e.g. scores, then the report)
   */
  async commit(command: string, last: readonly string[] = []): Promise<void> {
    const dir = this.plan.dir;
    const files = [...this.written];
    const previous = await readManifest(dir); // now, not at planning time: another run may have written since
    const old = previous?.files ?? [];
    await writeManifest(dir, { command, writtenAt: new Date().toISOString(), state: 'replacing', files: [...new Set([...old, ...files])] });
    for (const rel of old) if (!this.written.has(rel)) await rm(join(dir, ...rel.split('/')), { force: true });
    for (const rel of last) await rm(join(dir, ...rel.split('/')), { force: true });
    await removeEmptyFolders(dir, old);
    const ordered = [...files.filter((f) => !last.includes(f)), ...last.filter((f) => this.written.has(f))];
    for (const rel of ordered) {
      const target = join(dir, ...rel.split('/'));
      await mkdir(dirname(target), { recursive: true });
      await rename(join(this.staging, ...rel.split('/')), target);
    }
    await writeManifest(dir, { command, writtenAt: new Date().toISOString(), state: 'complete', files: ordered });
    await rm(this.staging, { recursive: true, force: true });
    ownStaging.delete(this.staging);
    this.done = true;
  }

  /** Drops everything staged; removes the output folder (and parents) this run created if they are empty. */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await rm(this.staging, { recursive: true, force: true });
    ownStaging.delete(this.staging);
    if (!this.created) return;
    // Remove the folders this run created, innermost first, while they are empty.
    for (let d = this.plan.dir; ; d = dirname(d)) {
      if (!(await rmdir(d).then(() => true, () => false))) break;
      if (resolve(d) === resolve(this.created)) break;
    }
  }
}

/** Whether a process exists (a staging folder of a live run is not stale). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

/** Removes folders that held `files` once they are empty (e.g. `overlays/` of a previous run). */
async function removeEmptyFolders(dir: string, files: readonly string[]): Promise<void> {
  const folders = new Set<string>();
  for (const rel of files) for (let d = dirname(rel); d !== '.' && d !== '/'; d = dirname(d)) folders.add(d);
  for (const f of [...folders].sort((a, b) => b.length - a.length)) await rmdir(join(dir, ...f.split('/'))).catch(() => undefined);
}
