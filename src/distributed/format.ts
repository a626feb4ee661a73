/**
 * Binary files of the distributed path, written to the shared store (never to Redis):
 *  - operands: one pairwise job's GEMM operands (`GemmOperands`) and layout (a mutual-scoring
 *    set, or the cross job of a refinement), written once per job; its SHA-256 names the set, so a worker can verify what it read;
 *  - partial: one tile's per-row top-K values (`LargestK` content of the rows it touched),
 *    whose SHA-256 the worker returns in the job's result for the coordinator to check.
 * Layout of both: 8-byte magic, u32 header length, JSON header, padding to 8 bytes, arrays.
 * Arrays are copied out on decode (a Buffer's offset need not be aligned for a typed view).
 */
import type { GemmOperands, MsmPrecision } from '../pipeline/gemm-operands.js';
import { LargestK } from '../pipeline/top-k.js';

/** Raised when a file of the store is not what its name or checksum says (the tile is then recomputed). */
export class CorruptFileError extends Error {
  override readonly name = 'CorruptFileError';
}

const OPS_MAGIC = 'MUSCOPS1';
const PART_MAGIC = 'MUSCPRT1';

/** Hex SHA-256 of a buffer: the one the model cache and the bank format use. */
export { sha256 } from '../backbone/model-cache.js';

const pad8 = (n: number) => (n + 7) & ~7;

function pack(magic: string, header: object, arrays: readonly ArrayBufferView[]): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  let size = pad8(12 + json.length);
  for (const a of arrays) size += pad8(a.byteLength);
  const out = Buffer.alloc(size);
  out.write(magic, 0, 'latin1');
  out.writeUInt32LE(json.length, 8);
  json.copy(out, 12);
  let at = pad8(12 + json.length);
  for (const a of arrays) {
    out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), at);
    at += pad8(a.byteLength);
  }
  return out;
}

/** The header and a reader of the arrays that follow it, in order. */
function unpack<H>(magic: string, buf: Uint8Array): { header: H; next: (bytes: number) => Uint8Array } {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 12 || b.toString('latin1', 0, 8) !== magic) throw new CorruptFileError(`not a ${magic} file`);
  const len = b.readUInt32LE(8);
  if (12 + len > b.length) throw new CorruptFileError(`${magic}: truncated header`);
  let header: H;
  try {
    header = JSON.parse(b.toString('utf8', 12, 12 + len)) as H;
  } catch {
    throw new CorruptFileError(`${magic}: unreadable header`);
  }
  let at = pad8(12 + len);
  return {
    header,
    next: (bytes) => {
      if (at + bytes > b.length) throw new CorruptFileError(`${magic}: truncated data`);
      const out = new Uint8Array(bytes);
      out.set(b.subarray(at, at + bytes));
      at += pad8(bytes);
      return out;
    },
  };
}

/** Shape of a pairwise job (pairwise.ts): a batch against itself, or query rows against reference units. */
export type PairwiseKind = 'self' | 'cross';

/**
 * One pairwise job as the workers need it: operands, units and their owners, K.
 * self: the query side holds the same `units` as the reference; cross: it holds `rows` single rows.
 */
export interface SetOperands {
  readonly kind: PairwiseKind;
  readonly ops: GemmOperands;
  /** Reference units (self: also the query units) of `patches` rows each. */
  readonly units: number;
  readonly patches: number;
  /** Image of each reference unit (absent: unit u is image u). */
  readonly owner?: Int32Array;
  /** cross: query rows, and the image owning each (absent: no row is excluded). */
  readonly rows?: number;
  readonly rowOwner?: Int32Array;
  /** Values kept per row (kMax of the interval). */
  readonly k: number;
  /** int8: levels of the reference codes (127 needs a CPU whose u8×s8 GEMM cannot saturate). */
  readonly referenceLevels?: 127 | 63;
}

interface OpsHeader {
  kind: PairwiseKind;
  rows?: number;
  rowOwner: boolean;
  precision: MsmPrecision;
  channels: number;
  center: number;
  ditherNorm: number;
  noiseBias: number;
  factor: number;
  units: number;
  patches: number;
  k: number;
  queryBytes: number;
  referenceBytes: number;
  owner: boolean;
  referenceLevels?: 127 | 63;
}

/** Serialises a set (the query and reference sides are stored even when they share codes: workers map them as they come). */
export function encodeOperands(s: SetOperands): Buffer {
  const { ops } = s;
  const header: OpsHeader = {
    kind: s.kind,
    rows: s.rows,
    rowOwner: s.rowOwner !== undefined,
    precision: ops.precision,
    channels: ops.channels,
    center: ops.center,
    ditherNorm: ops.ditherNorm,
    noiseBias: ops.noiseBias,
    factor: ops.factor,
    units: s.units,
    patches: s.patches,
    k: s.k,
    queryBytes: ops.query.byteLength,
    referenceBytes: ops.reference.byteLength,
    owner: s.owner !== undefined,
    referenceLevels: s.referenceLevels,
  };
  return pack(OPS_MAGIC, header, [ops.query, ops.reference, ...(s.owner ? [s.owner] : []), ...(s.rowOwner ? [s.rowOwner] : [])]);
}

/** Parses a set written by `encodeOperands`. */
export function decodeOperands(buf: Uint8Array): SetOperands {
  const { header: h, next } = unpack<OpsHeader>(OPS_MAGIC, buf);
  const q = next(h.queryBytes);
  const r = next(h.referenceBytes);
  const fp32 = h.precision === 'fp32';
  const query = fp32 ? new Float32Array(q.buffer) : q;
  const reference = fp32 ? new Float32Array(r.buffer) : new Int8Array(r.buffer);
  const owner = h.owner ? new Int32Array(next(h.units * 4).buffer) : undefined;
  const rowOwner = h.rowOwner ? new Int32Array(next((h.rows ?? 0) * 4).buffer) : undefined;
  const ops: GemmOperands = { precision: h.precision, channels: h.channels, query, reference, center: h.center, ditherNorm: h.ditherNorm, noiseBias: h.noiseBias, factor: h.factor };
  return { kind: h.kind, ops, units: h.units, patches: h.patches, k: h.k, owner, rows: h.rows, rowOwner, referenceLevels: h.referenceLevels };
}

/** Disjoint global row ranges [start, end), ascending, that a tile touches. */
export type RowRanges = readonly (readonly [number, number])[];

interface PartialHeader {
  set: string;
  tile: number;
  k: number;
  ranges: [number, number][];
}

/** A tile's result: the top-K values of each row it touched (rows in range order). */
export interface Partial {
  readonly set: string;
  readonly tile: number;
  readonly ranges: RowRanges;
  readonly best: LargestK;
}

/** Serialises a tile's result; only the held values are written (rows far from the diagonal hold few). */
export function encodePartial(p: Partial): Buffer {
  const { best } = p;
  const held = best.counts.reduce((s, c) => s + c, 0);
  const values = new Float32Array(held);
  let at = 0;
  for (let row = 0; row < best.rows; row++) {
    const n = best.counts[row];
    values.set(best.values.subarray(row * best.k, row * best.k + n), at);
    at += n;
  }
  const header: PartialHeader = { set: p.set, tile: p.tile, k: best.k, ranges: p.ranges.map(([a, b]) => [a, b]) };
  return pack(PART_MAGIC, header, [best.counts, values]);
}

/** Parses a tile's result written by `encodePartial`. */
export function decodePartial(buf: Uint8Array): Partial {
  const { header: h, next } = unpack<PartialHeader>(PART_MAGIC, buf);
  const rows = h.ranges.reduce((s, [a, b]) => s + (b - a), 0);
  const best = new LargestK(rows, h.k);
  best.counts.set(new Uint32Array(next(rows * 4).buffer));
  const held = best.counts.reduce((s, c) => s + c, 0);
  const values = new Float32Array(next(held * 4).buffer);
  let at = 0;
  for (let row = 0; row < rows; row++) {
    const n = best.counts[row];
    if (n > h.k) throw new CorruptFileError('partial: a row holds more than k values');
    best.values.set(values.subarray(at, at + n), row * h.k);
    at += n;
  }
  return { set: h.set, tile: h.tile, ranges: h.ranges, best };
}
