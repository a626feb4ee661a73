/**
 * The JavaScript stages of mutual scoring on all cores: LNAMD and int8 quantisation are plain
 * JavaScript (one core), and while they run nothing else does (backbone passes come before,
 * GEMMs after), so their images or rows are split over a pool of worker threads (piscina). Each
 * image's vectors and each row's codes come from the same functions as in the calling thread,
 * so results are bit-identical to `lnamdStackWithRange`, `quantizeWithNorms` and
 * `quantizeBothSides`.
 *
 * Memory: results are written straight into SharedArrayBuffers the caller keeps using (the
 * vectors `[N, P, C]`, the codes): copying them out measured slower than the work saved on this
 * machine, and so did buffers moved back from each worker. A worker collects its garbage before
 * each task, so it releases its handles on earlier sets (parallel-worker.ts); the pool lives for
 * one batch.
 */
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { knownStandardisation, lnamdStackWithRange, rememberStandardisation, stackSize } from './lnamd.js';
import type { LnamdResult, WorkerTask } from './parallel-worker.js';
import { allocateCodesWithNorms, quantizeBothSides, quantizeWithNorms, rowsOfSides, type CodesWithNorms, type SideSpec } from './quantize.js';
import type { FeatureGrid } from '../tensor.js';

/** A float32 copy of `src` in shared memory (what worker threads read without copying). */
export function sharedFloat32(src: Float32Array): Float32Array {
  const out = new Float32Array(new SharedArrayBuffer(src.byteLength));
  out.set(src);
  return out;
}

/**
 * `v` outside shared memory: a copy of vectors the worker threads wrote, else `v` itself. For
 * what leaves the pipeline or goes to ONNX Runtime, which refuses shared tensors ("Invalid argument").
 */
export function unshared(v: Float32Array): Float32Array {
  return v.buffer instanceof SharedArrayBuffer ? v.slice() : v;
}

/**
 * Spare vector buffers a pool keeps: a refined set uses two (coarse and fine); more would keep
 * memory for sizes that do not come back (measured with four sizes kept: Magnetic Tile's peak RSS
 * 2.75 → 3.56 GB; with two, 2.78 → 2.69 GB).
 */
const MAX_SPARE_BUFFERS = 2;

/** Below this many values a set is done in the calling thread (a task round trip costs ~0.1 ms). */
const MIN_PARALLEL_VALUES = 1 << 18;

/** [a, b) bounds of `parts` near-equal, non-empty chunks of `n` items. */
function chunks(n: number, parts: number): [number, number][] {
  const k = Math.max(1, Math.min(n, parts));
  return Array.from({ length: k }, (_, i) => [Math.floor((i * n) / k), Math.floor(((i + 1) * n) / k)]);
}

/** Worker threads for the JavaScript stages of one batch (LNAMD, int8 quantisation). */
export class WorkerPool {
  /** Started on the first task: batches too small to split never start threads. */
  private pool: Piscina<WorkerTask, LnamdResult | null> | null = null;
  /** Buffers handed back by `release` (at most {@link MAX_SPARE_BUFFERS}), and those handed out. */
  private readonly spare: SharedArrayBuffer[] = [];
  private readonly issued = new WeakSet<SharedArrayBuffer>();

  private constructor(
    /** Number of worker threads. */
    readonly threads: number,
  ) {}

  /** A pool of `threads` workers (default: the machine's parallelism), or null for one thread. */
  static open(threads = availableParallelism()): WorkerPool | null {
    return threads < 2 ? null : new WorkerPool(threads);
  }

  /** Splits work into two chunks per thread (chunks finish unevenly on a shared machine). */
  chunks(n: number): [number, number][] {
    return chunks(n, 2 * this.threads);
  }

  run<T extends LnamdResult | null>(task: WorkerTask): Promise<T> {
    this.pool ??= new Piscina({ filename: new URL('./parallel-worker.js', import.meta.url).href, minThreads: this.threads, maxThreads: this.threads });
    return this.pool.run(task) as Promise<T>;
  }

  /**
   * `length` float32 values in shared memory for a set's vectors: the start of the smallest buffer
   * handed back by {@link WorkerPool.release} that holds them (contents undefined), else a new buffer.
   * Why: fresh memory is paid in page faults (1–5 s of system time per bottle auto run on the
   * development VM), and the sets of a batch need a few sizes (each layer's, coarse and fine, two
   * subset sizes at most).
   */
  sharedVectors(length: number): Float32Array {
    const bytes = length * 4;
    let best = -1;
    this.spare.forEach((b, i) => {
      if (b.byteLength >= bytes && (best < 0 || b.byteLength < this.spare[best].byteLength)) best = i;
    });
    const buffer = best >= 0 ? this.spare.splice(best, 1)[0] : new SharedArrayBuffer(bytes);
    this.issued.add(buffer);
    return new Float32Array(buffer, 0, length);
  }

  /**
   * Hands back the buffer of vectors from {@link WorkerPool.sharedVectors} that nothing reads any
   * more (other arrays are ignored). The largest {@link MAX_SPARE_BUFFERS} are kept for later sets.
   */
  release(z: Float32Array): void {
    const { buffer } = z;
    if (!(buffer instanceof SharedArrayBuffer) || !this.issued.delete(buffer)) return;
    this.spare.push(buffer);
    this.spare.sort((x, y) => y.byteLength - x.byteLength);
    this.spare.length = Math.min(this.spare.length, MAX_SPARE_BUFFERS);
  }

  /** Ends the workers and drops the spare buffers. */
  async close(): Promise<void> {
    this.spare.length = 0;
    await this.pool?.destroy();
    this.pool = null;
  }
}

/**
 * `lnamdStackWithRange` over the workers of `pool`: `[N, P, C]` and the largest |component|.
 * Runs in this thread without a pool, for small sets, or for grids outside shared memory.
 * The vectors come from `pool.sharedVectors`: hand them back with `pool.release` once read.
 */
export async function lnamdStackParallel(grids: readonly FeatureGrid[], r: number, pool: WorkerPool | null | undefined): Promise<{ z: Float32Array; range: number }> {
  const N = grids.length;
  const size = stackSize(grids);
  if (!pool || N < 2 || N * size < MIN_PARALLEL_VALUES || !grids.every((g) => g.data.buffer instanceof SharedArrayBuffer)) return lnamdStackWithRange(grids, r);
  const out = pool.sharedVectors(N * size);
  const parts = pool.chunks(N);
  const results = await Promise.all(
    parts.map(([a, b]) => {
      const part = grids.slice(a, b);
      return pool.run<LnamdResult>({ kind: 'lnamd', grids: part, known: part.map(knownStandardisation), r, out, offset: a * size });
    }),
  );
  let range = 0;
  results.forEach((res, k) => {
    range = Math.max(range, res.range);
    res.std.forEach((s, i) => rememberStandardisation(grids[parts[k][0] + i], s));
  });
  return { z: out, range };
}

/**
 * int8 codes and norm terms of the rows of `z` (`[rows, C]`) for one GEMM side, or for both sides
 * of a self job (two specs, each the other's dither): what `quantizeWithNorms` /
 * `quantizeBothSides` give, computed over the workers of `pool` when there is one.
 */
export async function quantizeSides(z: Float32Array, sides: readonly SideSpec[], pool: WorkerPool | null | undefined): Promise<CodesWithNorms[]> {
  if (sides.length !== 1 && sides.length !== 2) throw new RangeError('quantize: one side, or the two sides of a self job');
  const rows = rowsOfSides(z, sides);
  const C = sides[0].dither.length;
  if (!pool || z.length < MIN_PARALLEL_VALUES) {
    const [a, b] = sides;
    return b ? quantizeBothSides(z, a.scale, a.levels, a.dither, b.scale, b.levels, b.dither) : [quantizeWithNorms(z, a.scale, a.levels, a.dither, a.otherDither)];
  }
  // A set outside shared memory (e.g. refinement's gathered rows) is copied in first.
  const zs = z.buffer instanceof SharedArrayBuffer ? z : sharedFloat32(z);
  const outs = sides.map(() => allocateCodesWithNorms(rows, C, true));
  await Promise.all(pool.chunks(rows).map(([r0, r1]) => pool.run({ kind: 'quantize', z: zs, r0, r1, sides, outs })));
  return outs;
}
