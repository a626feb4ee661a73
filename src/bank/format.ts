/**
 * The `.mbank` file: a feature bank of reference images, versioned and checksummed.
 *
 * ```
 * "MUSCBANK"  u32 LE version  u32 LE header length H  header JSON (H bytes, UTF-8)
 * zero padding to 8 bytes, then the payload sections at the offsets the header gives
 * (relative to the payload start, each 8-byte aligned):
 *   per (layer, r) set: patch vectors [N, P, C] as int8 codes (one scale per set), fp16 or fp32
 *   embeddings [N, D] fp32
 *   with image score `excess`: the typical map [height, width] fp32
 * SHA-256 of every preceding byte (32 bytes)
 * ```
 * Hand-written: a few typed-array sections do not need a container library, and the
 * layout can be read from any language.
 */
import { open, readFile } from 'node:fs/promises';
import { MuscError } from '../errors.js';
import { sha256 } from '../backbone/model-cache.js';
import writeFileAtomic from 'write-file-atomic';
import type { BatchGeometry } from '../pipeline/geometry.js';
import type { ImageScoreRule, TileStitching } from '../pipeline/maps.js';

export const BANK_MAGIC = 'MUSCBANK';
/**
 * The format versions this musc-ts reads: 2 adds the typical map (image score `excess`). A bank is
 * written with the oldest version that holds it (`formatVersion`), so banks scored by the max stay
 * readable by musc-ts before version 2, and those do not silently score an `excess` bank by the max.
 */
export const BANK_VERSIONS_READ: readonly number[] = [1, 2];

/** How a bank takes image scores: its config's rule; banks written before the rule existed score by the max. */
export function bankImageScore(config: Pick<BankConfig, 'imageScore'>): ImageScoreRule {
  return config.imageScore ?? 'max';
}

/** How a bank stitches tiles: its config's rule; tiled banks written before blending averaged. */
export function bankStitching(config: Pick<BankConfig, 'stitching'>): TileStitching {
  return config.stitching ?? 'average';
}

/** The format version a bank is written with: 2 when it scores by `excess` (it holds a typical map), else 1. */
export function formatVersion(config: Pick<BankConfig, 'imageScore'>): number {
  return config.imageScore === 'excess' ? 2 : 1;
}

/**
 * The typical map new images are scored against: the bank's own with image score `excess`, null
 * with `max`. @throws BankError when the rule and the map disagree (excess without a map of the
 * bank's map size, or a map in a bank scored by the max): such a bank would be scored by the wrong rule.
 */
export function typicalOf(bank: Pick<Bank, 'config' | 'typical' | 'heatScale'>, source = 'bank'): Float32Array | null {
  if (bank.config.imageScore !== 'excess') {
    if (bank.typical) throw new BankError(`${source} holds a typical map but scores by the max (config.imageScore ${bank.config.imageScore ?? 'absent'})`);
    return null;
  }
  const problem = typicalMapProblem(bank.config, bank.typical?.byteLength, formatVersion(bank.config), bank.heatScale);
  if (problem) throw new BankError(`${source}: ${problem}`);
  return bank.typical!;
}

/**
 * What is wrong with a bank's typical map section of `byteLength` bytes under its config and
 * format `version`, or null. An excess bank also needs its heat scale (its raw scores are not map values).
 */
function typicalMapProblem(config: BankConfig, byteLength: number | undefined, version: number, heatScale: Bank['heatScale']): string | null {
  if (config.imageScore !== 'excess') return byteLength === undefined ? null : 'a typical map in a bank that scores by the max';
  const map = config.geometry?.map;
  if (version < formatVersion(config)) return `format version ${version} cannot hold image score excess`;
  if (!heatScale) return 'image score excess without its heat scale (written by a development build)';
  if (byteLength === undefined) return 'image score excess without its typical map';
  if (!map || byteLength !== map.width * map.height * 4) return `the typical map has ${byteLength} bytes; the ${map ? `${map.width}x${map.height}` : 'unknown'} map needs ${map ? map.width * map.height * 4 : '?'}`;
  return null;
}

/** Whether this musc-ts reads a bank of format `version`. */
export function readsVersion(version: number): boolean {
  return BANK_VERSIONS_READ.includes(version);
}

/** A bank file that cannot be used: corrupt, truncated, another version, or built with another config. */
export class BankError extends MuscError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('BANK', message, options);
    this.name = 'BankError';
  }
}

/** How patch vectors are stored. */
export type BankEncoding = 'int8' | 'fp16' | 'fp32';

/** What the reference images are: an unlabeled batch (zero-shot MuSc) or known-good images (few-shot). */
export type BankReference = 'unlabeled' | 'good';

/**
 * Fewest images a bank can be scored against, by kind: an unlabeled bank averages the smallest
 * 30 % of a new image's N minima (MuSc's interval is empty below N = 4), a good bank takes the
 * nearest image. An update that would leave fewer is refused.
 */
export const MIN_BANK_IMAGES: Readonly<Record<BankReference, number>> = { unlabeled: 4, good: 1 };

/** Everything that must match between the bank and the images scored against it. */
export interface BankConfig {
  readonly imageSize: number;
  /**
   * The geometry new images are cut with (canvas, tiles); absent in banks written before
   * geometries existed (an imageSize x imageSize square).
   */
  readonly geometry?: BatchGeometry;
  /** Tiles: how they are matched (absent: untiled). */
  readonly tileMatch?: 'position' | 'any';
  readonly layers: readonly string[];
  readonly rList: readonly number[];
  readonly interval: readonly [number, number];
  readonly kList: readonly number[];
  readonly embeddingSimilarity: 'cosine' | 'dot';
  /** How a map gives its image score (absent in banks written before `excess`: `max`). */
  readonly imageScore?: ImageScoreRule;
  /**
   * Tiles: how overlapping tiles' maps are combined (absent in banks written before blending:
   * `average`, so their stored scores, typical map and threshold stay comparable).
   */
  readonly stitching?: TileStitching;
}

/** How to reopen the backbone the bank was built with. */
export type BankBackbone =
  | { readonly kind: 'resnet50'; readonly id: string }
  | {
      readonly kind: 'vit';
      readonly id: string;
      readonly model: string;
      readonly modelSha256: string;
      readonly family: string;
      readonly gelu: string;
      readonly normalization?: { readonly mean: readonly number[]; readonly std: readonly number[] };
    };

/** One reference image. */
export interface BankImage {
  readonly name: string;
  readonly width: number;
  readonly height: number;
  /** Raw image score (by `config.imageScore`) against the rest of the bank when it was added. */
  readonly score: number;
}

/** Patch vectors of all bank images for one (layer, r). */
export interface BankSet {
  readonly layer: string;
  readonly r: number;
  readonly patches: number;
  readonly channels: number;
  readonly gridHeight: number;
  readonly gridWidth: number;
  /** Largest |component| over the set; int8 codes are round(z · 127 / maxAbs + d_c). */
  readonly maxAbs: number;
  /**
   * int8 only: codes carry the channel dither d_c of `channelDither` (pipeline/quantize.ts), as
   * mutual scoring's own codes do; absent in banks written before it (d = 0).
   */
  readonly int8Dither?: boolean;
  /** `[N, P, C]`: Int8Array (int8), Uint16Array of fp16 bits (fp16) or Float32Array (fp32). */
  readonly data: Int8Array | Uint16Array | Float32Array;
}

/** Units (tiles) stored per bank image: 1 unless the bank was built with tiles. */
export function unitsPerImage(bank: { readonly config: BankConfig }): number {
  return bank.config.geometry?.coarse.boxes.length ?? 1;
}

/** A bank in memory. */
export interface Bank {
  /** File format version (`formatVersion` when written). */
  readonly version: number;
  /** When the bank was built, ISO 8601. */
  readonly createdAt: string;
  /** When images were last added, ISO 8601. */
  readonly updatedAt: string;
  /** The backbone its features come from, and how to reopen it. */
  readonly backbone: BankBackbone;
  /** The settings new images must be scored with. */
  readonly config: BankConfig;
  /** Unlabeled batch (zero-shot) or known-good images (few-shot). */
  readonly reference: BankReference;
  /** Storage of the patch vectors. */
  readonly encoding: BankEncoding;
  /** Decision threshold on scores of this bank's kind (RsCIN for unlabeled, raw for good), chosen at build. */
  readonly threshold: { readonly value: number; readonly method: string };
  /** The reference images, oldest first. */
  readonly images: readonly BankImage[];
  /** Patch vectors, one set per (layer, r). */
  readonly sets: readonly BankSet[];
  /** `[N, D]` image embeddings for RsCIN. */
  readonly embeddings: Float32Array;
  /** D. */
  readonly embeddingDim: number;
  /**
   * Image score `excess`: the typical map `[height, width]` of the bank's images at build
   * (`typicalMap`), kept like the threshold when images are added.
   */
  readonly typical?: Float32Array;
  /**
   * The map values heatmaps of new images are drawn between (`bankHeatScale`): half the lowest
   * and the highest map maximum of the bank's images at build. Absent in banks written before it.
   */
  readonly heatScale?: { readonly low: number; readonly high: number };
}

/** What a bank's header says: everything but the vectors. */
export interface BankHeader extends Omit<Bank, 'sets' | 'embeddings' | 'typical'> {
  readonly sets: readonly Omit<BankSet, 'data'>[];
}

interface HeaderSet extends Omit<BankSet, 'data'> {
  readonly offset: number;
  readonly byteLength: number;
}
interface Header extends Omit<Bank, 'sets' | 'embeddings' | 'version' | 'typical'> {
  readonly format: 'musc-bank';
  readonly sets: readonly HeaderSet[];
  readonly embeddingsOffset: number;
  readonly embeddingsByteLength: number;
  /** The typical map's section (image score `excess`). */
  readonly typicalOffset?: number;
  readonly typicalByteLength?: number;
}

const align8 = (n: number) => (n + 7) & ~7;

/** Serialises a bank (see the module doc for the layout). */
export function encodeBank(bank: Bank): Uint8Array {
  let offset = 0;
  const sets: HeaderSet[] = bank.sets.map((s) => {
    const { data, ...meta } = s;
    const h = { ...meta, offset, byteLength: data.byteLength };
    offset = align8(offset + data.byteLength);
    return h;
  });
  const embeddingsOffset = offset;
  offset = align8(offset + bank.embeddings.byteLength);
  const typical = typicalOf(bank); // the rule and the map agree, or nothing is written
  const typicalOffset = offset;
  if (typical) offset = align8(offset + typical.byteLength);
  const { sets: _s, embeddings: _e, version: _v, typical: _t, ...rest } = bank;
  const header: Header = {
    format: 'musc-bank',
    ...rest,
    sets,
    embeddingsOffset,
    embeddingsByteLength: bank.embeddings.byteLength,
    ...(typical ? { typicalOffset, typicalByteLength: typical.byteLength } : {}),
  };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const payloadStart = align8(16 + json.length);
  const out = new Uint8Array(payloadStart + offset + 32);
  out.set(new TextEncoder().encode(BANK_MAGIC), 0);
  const dv = new DataView(out.buffer);
  dv.setUint32(8, formatVersion(bank.config), true);
  dv.setUint32(12, json.length, true);
  out.set(json, 16);
  const put = (a: ArrayBufferView, at: number) => out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), payloadStart + at);
  bank.sets.forEach((s, i) => put(s.data, sets[i].offset));
  put(bank.embeddings, embeddingsOffset);
  if (typical) put(typical, typicalOffset);
  out.set(Buffer.from(sha256(out.subarray(0, out.length - 32)), 'hex'), out.length - 32);
  return out;
}

/**
 * Parses and verifies a bank.
 * @throws BankError for a non-bank file, another format version, a checksum mismatch or truncation.
 */
export function decodeBank(bytes: Uint8Array, source = 'bank'): Bank {
  const version = versionOf(bytes, source);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (!readsVersion(version)) {
    throw new BankError(`${source} is bank format version ${version}; this musc-ts reads versions ${BANK_VERSIONS_READ.join(' and ')}. Rebuild it with \`musc bank build\`.`);
  }
  const expected = Buffer.from(bytes.subarray(bytes.length - 32)).toString('hex');
  if (sha256(bytes.subarray(0, bytes.length - 32)) !== expected) {
    throw new BankError(`${source} is corrupt or truncated (checksum mismatch); rebuild it with \`musc bank build\``);
  }
  const hlen = dv.getUint32(12, true);
  let header: Header;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + hlen))) as Header;
  } catch (err) {
    throw new BankError(`${source} has an unreadable header`, { cause: err });
  }
  const payloadStart = align8(16 + hlen);
  const copy = (at: number, len: number) => {
    const start = payloadStart + at;
    if (start + len > bytes.length - 32) throw new BankError(`${source} is truncated`);
    return bytes.slice(start, start + len).buffer; // a copy: aligned and independent of the file buffer
  };
  const sets: BankSet[] = header.sets.map(({ offset, byteLength, ...meta }) => {
    const buf = copy(offset, byteLength);
    const data = header.encoding === 'int8' ? new Int8Array(buf) : header.encoding === 'fp16' ? new Uint16Array(buf) : new Float32Array(buf);
    if (data.length !== header.images.length * unitsPerImage(header) * meta.patches * meta.channels) throw new BankError(`${source}: set ${meta.layer}/r${meta.r} has the wrong size`);
    return { ...meta, data };
  });
  const embeddings = new Float32Array(copy(header.embeddingsOffset, header.embeddingsByteLength));
  const { format: _f, sets: _s, embeddingsOffset: _o, embeddingsByteLength: _l, typicalOffset, typicalByteLength, ...rest } = header;
  const problem = typicalMapProblem(header.config, typicalByteLength, version, header.heatScale);
  if (problem) throw new BankError(`${source}: ${problem}; rebuild it with \`musc bank build\``);
  const typical = typicalOffset !== undefined && typicalByteLength !== undefined ? new Float32Array(copy(typicalOffset, typicalByteLength)) : undefined;
  return { ...rest, version, sets, embeddings, ...(typical ? { typical } : {}) };
}

/** The format version of a bank's bytes. @throws BankError when they are not a bank at all. */
function versionOf(bytes: Uint8Array, source: string): number {
  if (bytes.length < 16 + 32 || new TextDecoder().decode(bytes.subarray(0, 8)) !== BANK_MAGIC) {
    throw new BankError(`${source} is not a musc-ts feature bank (.mbank)`);
  }
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(8, true);
}

/** The SHA-256 trailer of encoded bank bytes, hex: identifies a bank file's content. */
export function bankChecksum(bytes: Uint8Array): string {
  return Buffer.from(bytes.subarray(bytes.length - 32)).toString('hex');
}

/** Writes a bank atomically (a crash leaves the previous file intact). Concurrent writers: see lock.ts. */
export async function writeBank(file: string, bank: Bank): Promise<number> {
  const bytes = encodeBank(bank);
  await writeFileAtomic(file, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  return bytes.length;
}

async function readBytes(file: string): Promise<Uint8Array> {
  try {
    const b = await readFile(file);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch (err) {
    throw new BankError(`cannot read bank ${JSON.stringify(file)}: ${(err as Error).message}`, { cause: err });
  }
}

/** Reads and verifies a bank file. */
export async function readBank(file: string): Promise<Bank> {
  return (await readBankFile(file)).bank;
}

/** Reads and verifies a bank file; also returns its checksum (to tell later whether someone else rewrote it). */
export async function readBankFile(file: string): Promise<{ bank: Bank; checksum: string; bytes: number }> {
  const bytes = await readBytes(file);
  return { bank: decodeBank(bytes, file), checksum: bankChecksum(bytes), bytes: bytes.length };
}

/** The checksum a bank file ends with (reads 32 bytes), or null when there is no such file. */
export async function readBankChecksum(file: string): Promise<string | null> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new BankError(`cannot read bank ${JSON.stringify(file)}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const { size } = await fh.stat();
    if (size < 16 + 32) return '';
    const tail = new Uint8Array(32);
    await fh.read(tail, 0, 32, size - 32);
    return bankChecksum(tail);
  } finally {
    await fh.close();
  }
}

/** What `musc bank info` reports: as much as can be read, and whether the checksum holds. */
export interface BankInspection {
  readonly sizeBytes: number;
  readonly version: number;
  /** The header's content, or null when the header itself is cut or unreadable. */
  readonly summary: BankHeader | null;
  /** `truncated`: shorter than the header says; `mismatch`: the bytes are damaged. */
  readonly checksum: 'ok' | 'mismatch' | 'truncated';
  /** Everything wrong with the file, one sentence each (empty for a healthy bank). */
  readonly problems: readonly string[];
}

/**
 * Reads what a bank file holds without requiring it to be intact.
 * @throws BankError only when the bytes are not a bank at all (no magic).
 */
export function inspectBank(bytes: Uint8Array, source = 'bank'): BankInspection {
  const version = versionOf(bytes, source);
  const problems: string[] = [];
  if (!readsVersion(version)) problems.push(`format version ${version}; this musc-ts reads versions ${BANK_VERSIONS_READ.join(' and ')}`);
  const hlen = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(12, true);
  let header: Header | null = null;
  if (16 + hlen > bytes.length) {
    problems.push(`truncated: ${bytes.length} bytes, shorter than its ${hlen}-byte header`);
    return { sizeBytes: bytes.length, version, summary: null, checksum: 'truncated', problems };
  }
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + hlen))) as Header;
  } catch {
    problems.push('the header is unreadable');
  }
  let summary: BankHeader | null = null;
  let expected = -1;
  if (header) {
    const { format: _f, sets, embeddingsOffset, embeddingsByteLength, typicalOffset, typicalByteLength, ...rest } = header;
    summary = { ...rest, version, sets: sets.map(({ offset: _o, byteLength: _b, ...meta }) => meta) };
    const end = Math.max(embeddingsOffset + embeddingsByteLength, (typicalOffset ?? 0) + (typicalByteLength ?? 0), ...sets.map((s) => s.offset + s.byteLength));
    const problem = typicalMapProblem(header.config, typicalByteLength, version, header.heatScale);
    if (problem) problems.push(problem);
    expected = align8(16 + hlen) + align8(end) + 32;
  }
  let checksum: BankInspection['checksum'];
  if (expected > bytes.length) {
    checksum = 'truncated';
    problems.push(`truncated: ${bytes.length} of ${expected} bytes`);
  } else {
    checksum = sha256(bytes.subarray(0, bytes.length - 32)) === bankChecksum(bytes) ? 'ok' : 'mismatch';
    if (checksum === 'mismatch') problems.push('corrupt: the SHA-256 checksum does not match the content');
    if (expected >= 0 && expected < bytes.length) problems.push(`${bytes.length - expected} unexpected bytes after the content`);
  }
  return { sizeBytes: bytes.length, version, summary, checksum, problems };
}

/** `inspectBank` of a file. */
export async function inspectBankFile(file: string): Promise<BankInspection> {
  return inspectBank(await readBytes(file), file);
}

/** The header of a bank file (reads only the header, checks nothing else): for checks before loading a bank. */
export async function readBankHeader(file: string): Promise<BankHeader> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    throw new BankError(`cannot read bank ${JSON.stringify(file)}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const head = new Uint8Array(16 + 32);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    versionOf(head.subarray(0, bytesRead), file);
    const hlen = new DataView(head.buffer).getUint32(12, true);
    if (16 + hlen > (await fh.stat()).size) throw new BankError(`${file} is truncated`);
    const json = new Uint8Array(hlen);
    const got = (await fh.read(json, 0, hlen, 16)).bytesRead;
    const h = got === hlen ? (JSON.parse(new TextDecoder().decode(json)) as Header) : null;
    if (!h) throw new BankError(`${file} is truncated`);
    const { format: _f, sets, embeddingsOffset: _o, embeddingsByteLength: _l, typicalOffset: _t, typicalByteLength: _tl, ...rest } = h;
    return { ...rest, version: new DataView(head.buffer).getUint32(8, true), sets: sets.map(({ offset: _s, byteLength: _b, ...meta }) => meta) };
  } catch (err) {
    if (err instanceof BankError) throw err;
    throw new BankError(`${file} has an unreadable header`, { cause: err });
  } finally {
    await fh.close();
  }
}

/** IEEE half-precision bits of a float (round to nearest even). Node 20 has no Float16Array. */
const halfScratch = new Float32Array(1);
const halfBits = new Uint32Array(halfScratch.buffer);
export function toHalf(v: number): number {
  halfScratch[0] = v;
  const x = halfBits[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  e = h >>> 10;
  return sign | h;
}

/** Float value of half-precision bits. */
export function fromHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}
