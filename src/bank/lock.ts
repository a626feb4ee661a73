/**
 * Serialised updates of a bank file that several processes share (several `musc score
 * --update`, a scorer in a long-lived program, a script): read-modify-write under an
 * inter-process lock, so no update is lost, and written atomically, so no reader ever
 * sees half a bank.
 *
 * The lock is `proper-lockfile`'s: a `<bank>.lock` directory (mkdir is atomic, also on
 * network file systems) whose mtime the holder refreshes; a lock not refreshed for
 * `staleMs` is taken as left by a crashed process and taken over. Readers take no lock:
 * the rename makes every read see one whole bank.
 */
import { readlink, realpath, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { check, lock } from 'proper-lockfile';
import { setTimeout as sleep } from 'node:timers/promises';
import { BankError, bankChecksum, encodeBank, readBankChecksum, readBankFile, type Bank } from './format.js';

/** How long to wait for another writer, and when a lock counts as abandoned. */
export interface BankLockOptions {
  /** Longest wait for the lock (default 120 s), then a BankError naming the lock. */
  readonly waitMs?: number;
  /** A lock not refreshed for this long was left by a crashed process (default 20 s, at least 2 s). */
  readonly staleMs?: number;
}

export const DEFAULT_LOCK_WAIT_MS = 120_000;
export const DEFAULT_LOCK_STALE_MS = 20_000;

/** The bank file as the update finds it, read only when asked (its checksum is cheap to get). */
export type BankOnDisk =
  | { readonly exists: false }
  | { readonly exists: true; readonly checksum: string; read(): Promise<Bank> };

/** A bank as written. */
export interface WrittenBank {
  readonly bank: Bank;
  readonly checksum: string;
  readonly bytes: number;
}

/**
 * The file a bank path names: a symbolic link is followed, so the lock, the temporary file and
 * the rename act on the bank itself (renaming onto the link would replace the link with a copy,
 * and writers through the link and through the real path would take different locks). A link
 * whose target does not exist yet names that target; any other new file is named as given.
 */
async function bankTarget(file: string): Promise<string> {
  try {
    return await realpath(file);
  } catch {
    return readlink(file).then((target) => resolve(dirname(file), target), () => file);
  }
}

/** Whether another process holds the lock on `file` now (for `musc bank info`). */
export async function isBankLocked(file: string, opts: BankLockOptions = {}): Promise<boolean> {
  return check(await bankTarget(file), { realpath: false, stale: staleOf(opts) }).catch(() => false);
}

const staleOf = (opts: BankLockOptions) => Math.max(2000, opts.staleMs ?? DEFAULT_LOCK_STALE_MS);

/**
 * Runs `update` on the bank file as it is now, under the file's lock, and writes what it
 * returns atomically before releasing the lock. `update` returns null to write nothing.
 * @throws BankError when the lock cannot be had within `waitMs`, or was lost while writing (nothing is written then)
 */
export async function updateBankFile(
  path: string,
  update: (onDisk: BankOnDisk) => Promise<Bank | null> | Bank | null,
  opts: BankLockOptions = {},
): Promise<WrittenBank | null> {
  const file = await bankTarget(path);
  const stale = staleOf(opts);
  const deadline = Date.now() + (opts.waitMs ?? DEFAULT_LOCK_WAIT_MS);
  let lost: Error | null = null;
  let release: () => Promise<void>;
  for (let attempt = 0; ; attempt++) {
    try {
      release = await lock(file, { realpath: false, stale, onCompromised: (err) => void (lost = err) });
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ELOCKED') throw new BankError(`cannot lock bank ${JSON.stringify(file)} for the update: ${(err as Error).message}`, { cause: err });
      if (Date.now() >= deadline) {
        throw new BankError(
          `bank ${JSON.stringify(file)} is being updated by another process (lock ${JSON.stringify(`${file}.lock`)} held for over ${Math.round((opts.waitMs ?? DEFAULT_LOCK_WAIT_MS) / 1000)} s); try again later`,
        );
      }
      // Jittered backoff: writers hold the lock for a read + encode + write only.
      await sleep(Math.min(500, 20 * 1.5 ** Math.min(attempt, 10)) * (0.5 + Math.random()));
    }
  }
  try {
    const checksum = await readBankChecksum(file);
    const onDisk: BankOnDisk = checksum === null ? { exists: false } : { exists: true, checksum, read: async () => (await readBankFile(file)).bank };
    const bank = await update(onDisk);
    if (!bank) return null;
    const bytes = encodeBank(bank);
    // Written beside the bank, then renamed over it; not write-file-atomic, because the lock
    // must be checked between the two: a lost lock aborts the write (another process may own the file now).
    const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
    try {
      await writeFile(tmp, bytes, { flush: true });
      if (lost) throw new BankError(`lost the lock on bank ${JSON.stringify(file)} while updating it (${(lost as Error).message}); nothing was written`);
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true });
      if (err instanceof BankError) throw err;
      throw new BankError(`cannot write bank ${JSON.stringify(file)}: ${(err as Error).message}`, { cause: err });
    }
    return { bank, checksum: bankChecksum(bytes), bytes: bytes.length };
  } finally {
    await release!().catch(() => undefined); // a compromised lock is released already
  }
}
