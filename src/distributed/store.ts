/**
 * The shared store that carries bulk data between the coordinator and the workers:
 * a folder every machine mounts at some path (NFS, CephFS, EFS, a hostPath on one node).
 * Redis only carries job descriptions and checksums. Files are written atomically
 * (`write-file-atomic`: temporary file + rename), so a worker killed while writing
 * leaves either nothing or a whole file; the checksums catch everything else.
 *
 *   <root>/<job id>/sets/<set>.ops          operands of one set (name = its SHA-256 prefix)
 *   <root>/<job id>/tiles/<set>.<tile>.part  one tile's partial top-K
 *   <root>/<job id>/done/<set>.scores        a finished set's scores (+ SHA-256), for resuming
 */
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import writeFileAtomic from 'write-file-atomic';
import { ConfigError } from '../errors.js';
import { CorruptFileError, sha256 } from './format.js';

/** Where the bulk data of a distributed run lives. */
export interface SharedStore {
  /** Printable location. */
  readonly location: string;
  put(key: string, data: Uint8Array): Promise<void>;
  /** The file's bytes, or null when it is not there. */
  get(key: string): Promise<Buffer | null>;
  /** Size in bytes, or null when the file is not there. */
  size(key: string): Promise<number | null>;
  /** Removes a key prefix (a job's folder) and everything under it. */
  remove(prefix: string): Promise<void>;
}

/** Keys are '/'-separated names made by this module's callers; nothing else may climb out of the root. */
function checkKey(key: string): string {
  if (!/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(key) || key.split('/').some((p) => p === '..' || p === '.')) throw new ConfigError(`store: invalid key ${key}`);
  return key;
}

/** A store on a shared folder. */
export class FolderStore implements SharedStore {
  readonly location: string;

  constructor(readonly root: string) {
    this.location = root;
  }

  private path(key: string): string {
    return join(this.root, ...checkKey(key).split('/'));
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const p = this.path(key);
    await mkdir(join(p, '..'), { recursive: true });
    // No fsync: atomicity comes from the rename, and the checksums catch anything a crash leaves.
    await writeFileAtomic(p, Buffer.from(data.buffer, data.byteOffset, data.byteLength), { fsync: false });
  }

  async get(key: string): Promise<Buffer | null> {
    try {
      return await readFile(this.path(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async size(key: string): Promise<number | null> {
    try {
      return (await stat(this.path(key))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async remove(prefix: string): Promise<void> {
    await rm(this.path(prefix), { recursive: true, force: true });
  }
}

/** Opens `--store`: a folder path or a file: URL (object stores are not implemented yet). */
export function openStore(spec: string): SharedStore {
  if (/^file:/i.test(spec)) return new FolderStore(fileURLToPath(spec));
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec)) throw new ConfigError(`--store ${spec}: only shared folders (a path or file:// URL) are supported`);
  return new FolderStore(resolve(spec));
}

/** Store keys of one job. */
export const keys = {
  set: (job: string, set: string) => `${job}/sets/${set}.ops`,
  partial: (job: string, set: string, tile: number) => `${job}/tiles/${set}.${tile}.part`,
  done: (job: string, set: string) => `${job}/done/${set}.scores`,
};

/** Writes a finished set's scores followed by their SHA-256 (32 bytes), so a resumed run can trust them. */
export async function putScores(store: SharedStore, key: string, scores: Float32Array): Promise<void> {
  const body = new Uint8Array(scores.buffer, scores.byteOffset, scores.byteLength);
  const out = new Uint8Array(body.length + 32);
  out.set(body);
  out.set(Buffer.from(sha256(body), 'hex'), body.length);
  await store.put(key, out);
}

/** A finished set's scores, or null when absent, of another length or corrupt. */
export async function getScores(store: SharedStore, key: string, length: number): Promise<Float32Array | null> {
  const buf = await store.get(key);
  if (!buf || buf.length !== length * 4 + 32) return null;
  const body = buf.subarray(0, length * 4);
  if (sha256(body) !== buf.subarray(length * 4).toString('hex')) return null;
  return new Float32Array(new Uint8Array(body).buffer);
}

/** Reads a file and checks it against the SHA-256 recorded for it. */
export async function getVerified(store: SharedStore, key: string, expected: string): Promise<Buffer> {
  const buf = await store.get(key);
  if (!buf) throw new CorruptFileError(`${key} is missing`);
  if (sha256(buf) !== expected) throw new CorruptFileError(`${key} does not match its checksum`);
  return buf;
}
