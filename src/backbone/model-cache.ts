/**
 * Where models live on disk, and how a cached file is trusted: every cached
 * artefact has a sidecar `<file>.json` with its size and SHA-256, written only
 * after the artefact itself was renamed into place. A file without a matching
 * sidecar is treated as absent (partial download, crash mid-write) and rebuilt.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

/** The cache directory: `$MUSC_CACHE_DIR`, else `$XDG_CACHE_HOME/musc-ts`, else `~/.cache/musc-ts`. */
export function cacheDir(): string {
  if (process.env.MUSC_CACHE_DIR) return process.env.MUSC_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'musc-ts');
}

/** Hex SHA-256 of a buffer. */
export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

interface Sidecar {
  readonly size: number;
  readonly sha256: string;
  readonly version: string;
}

/** Writes `bytes` to `file` atomically (temp + rename), then its sidecar. */
export async function writeVerified(file: string, bytes: Uint8Array, version: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, bytes);
  await rename(tmp, file);
  const side: Sidecar = { size: bytes.length, sha256: sha256(bytes), version };
  const sideTmp = `${file}.json.${process.pid}.tmp`;
  await writeFile(sideTmp, JSON.stringify(side));
  await rename(sideTmp, `${file}.json`);
}

/**
 * Reads a cached file if it and its sidecar agree (size, SHA-256 and version);
 * otherwise removes both and returns `null` so the caller rebuilds it.
 */
export async function readVerified(file: string, version: string): Promise<Uint8Array | null> {
  let side: Sidecar;
  try {
    side = JSON.parse(await readFile(`${file}.json`, 'utf8')) as Sidecar;
  } catch {
    await rm(file, { force: true });
    return null;
  }
  try {
    const st = await stat(file);
    if (st.size !== side.size || side.version !== version) throw new Error('stale');
    const bytes = await readFile(file);
    if (sha256(bytes) !== side.sha256) throw new Error('checksum');
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  } catch {
    await rm(file, { force: true });
    await rm(`${file}.json`, { force: true });
    return null;
  }
}
