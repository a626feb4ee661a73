/**
 * The blockwise pairwise-max routine behind every scoring mode (batch mutual
 * scoring, scoring against a bank, coarse-to-fine refinement, distributed tiles).
 * Hand-written orchestration around the ONNX Runtime kernel (similarity-kernel.ts).
 *
 * Vectors come in units (an image, or a tile of an image) of P patches, each unit
 * owned by an image. For every query row and every reference unit owned by ANOTHER
 * image, the best similarity max_q s(row, q) is offered to a running top-K
 * (`LargestK`, row = query row). Two shapes of job:
 *  - self (a batch): query = reference; each unordered unit pair is used once, the
 *    lower unit on the query side: row maxima serve its direction, column maxima the other;
 *  - cross (a bank, a refinement): query rows against reference units, row maxima only.
 * Work is cut into blocks of ~1.5k × 1.5k patches so the similarity block stays in
 * cache for the reductions (measured, see BENCHMARKS.md); a block plan is a plain
 * list, so a subset of it is a unit of distributed work.
 */
import type { GemmOperands } from './gemm-operands.js';
import type { SimilarityKernel } from './similarity-kernel.js';
import type { TopKSink } from './top-k.js';

/** Query rows (patches) per GEMM call by default. */
export const DEFAULT_QUERY_ROWS = 1568;
/** Reference patches per GEMM call by default. */
export const DEFAULT_REFERENCE_COLUMNS = 1568;

/** One GEMM call: query units (self) or rows (cross) [q0, q1) against reference units [r0, r1). */
export interface Block {
  readonly q0: number;
  readonly q1: number;
  readonly r0: number;
  readonly r1: number;
}

/** Block sizes. */
export interface BlockSizes {
  /** Query rows (patches) per GEMM call. */
  readonly queryRows?: number;
  /** Widest reference block (in patches) per GEMM call. */
  readonly maxBlockColumns?: number;
}

/** Units of P patches and the image that owns each unit (default: unit u is image u). */
export interface UnitLayout {
  readonly units: number;
  readonly patches: number;
  readonly owner?: Int32Array;
}

/** Query rows and the image that owns each row (default: no row is excluded). */
export interface RowLayout {
  readonly rows: number;
  readonly owner?: Int32Array;
}

/** Options of the pairwise routines. */
export interface PairwiseOptions extends BlockSizes {
  /** Only these blocks of the plan (distributed tiles, partial benchmark runs). */
  readonly blocks?: readonly Block[];
  readonly signal?: AbortSignal;
  /** Called after each block with the fraction of the GEMM work done. */
  readonly onProgress?: (done: number) => void;
}

/** Unit pairs a self-plan block computes (the diagonal block: its upper triangle), for progress. */
export function blockWork(b: Block): number {
  return b.q0 === b.r0 ? ((b.q1 - b.q0) * (b.q1 - b.q0 + 1)) / 2 : (b.q1 - b.q0) * (b.r1 - b.r0);
}

/** Reference units of `patches` patches per GEMM call (at least one). */
export function referenceChunk(patches: number, sizes: BlockSizes = {}): number {
  return Math.max(1, Math.floor(Math.max(patches, sizes.maxBlockColumns ?? DEFAULT_REFERENCE_COLUMNS) / patches));
}

/**
 * Blocks of a self job: query groups of units, each against itself (the diagonal block,
 * whose upper triangle is used) and against the reference units after it.
 */
export function selfBlockPlan(units: number, patches: number, sizes: BlockSizes = {}): Block[] {
  const group = Math.max(1, Math.min(units, Math.floor((sizes.queryRows ?? DEFAULT_QUERY_ROWS) / patches)));
  const chunk = referenceChunk(patches, sizes);
  const plan: Block[] = [];
  for (let q0 = 0; q0 < units; q0 += group) {
    const q1 = Math.min(units, q0 + group);
    plan.push({ q0, q1, r0: q0, r1: q1 });
    for (let r0 = q1; r0 < units; r0 += chunk) plan.push({ q0, q1, r0, r1: Math.min(units, r0 + chunk) });
  }
  return plan;
}

/** Blocks of a cross job: groups of query rows against chunks of reference units. */
export function crossBlockPlan(rows: number, reference: UnitLayout, sizes: BlockSizes = {}): Block[] {
  const group = Math.max(1, sizes.queryRows ?? DEFAULT_QUERY_ROWS);
  const chunk = referenceChunk(reference.patches, sizes);
  const plan: Block[] = [];
  for (let q0 = 0; q0 < rows; q0 += group) {
    for (let r0 = 0; r0 < reference.units; r0 += chunk) plan.push({ q0, q1: Math.min(rows, q0 + group), r0, r1: Math.min(reference.units, r0 + chunk) });
  }
  return plan;
}

const identityOwner = (n: number) => Int32Array.from({ length: n }, (_, i) => i);

/** Converts kernel values to similarities (see gemm-operands.ts). */
function converter(ops: GemmOperands): (v: number) => number {
  const { center, factor, ditherNorm, noiseBias } = ops;
  // Same arithmetic as similarityOf: (center − v) is exact, so equal codes give equal similarities.
  return ops.precision === 'fp32' ? (v) => v : (v) => 1 - (center - v - ditherNorm) * factor + noiseBias;
}

/**
 * Self job: every patch of every unit gets, for every unit of another owner, its best
 * similarity in that unit (row `unit·P + p` of `best`). Each unordered unit pair is
 * computed once.
 */
export async function selfBestMatches(kernel: SimilarityKernel, ops: GemmOperands, layout: UnitLayout, best: TopKSink, opts: PairwiseOptions = {}): Promise<void> {
  const { units: U, patches: P } = layout;
  const W = ops.channels;
  const owner = layout.owner ?? identityOwner(U);
  const sim = converter(ops);
  const plan = opts.blocks ?? selfBlockPlan(U, P, opts);
  const total = plan.reduce((s, b) => s + blockWork(b), 0);
  let done = 0;
  for (const blk of plan) {
    opts.signal?.throwIfAborted();
    const { q0, q1, r0, r1 } = blk;
    const I = q1 - q0;
    const J = r1 - r0;
    const diagonal = q0 === r0;
    const { rowMax, colMax } = await kernel.blockMax(
      ops.query.subarray(q0 * P * W, q1 * P * W),
      ops.reference.subarray(r0 * P * W, r1 * P * W),
      { rows: I * P, J, Q: P, C: W, I, P },
      // One session (rows and columns) for every block: alternating with a rows-only session
      // left the idle pool's threads spinning against the working one on small machines
      // (measured 1.5x slower int8).
      true,
    );
    for (let ii = 0; ii < I; ii++) {
      const qu = q0 + ii;
      for (let jj = 0; jj < J; jj++) {
        const ru = r0 + jj;
        // Every unordered pair is used once, the lower unit on the query side, also in the
        // diagonal block (which holds both orders): int8 sides are quantised with different
        // dithers, so this keeps the scores independent of the block plan.
        if (owner[qu] === owner[ru] || (diagonal && ru <= qu)) continue;
        for (let p = 0; p < P; p++) best.push(qu * P + p, sim(rowMax[(ii * P + p) * J + jj]));
        const col = (ii * J + jj) * P;
        for (let q = 0; q < P; q++) best.push(ru * P + q, sim(colMax![col + q]));
      }
    }
    done += blockWork(blk);
    opts.onProgress?.(done / total);
  }
}

/**
 * Cross job: every query row gets, for every reference unit of another owner, its best
 * similarity in that unit (row r of `best`).
 */
export async function crossBestMatches(
  kernel: SimilarityKernel,
  ops: GemmOperands,
  query: RowLayout,
  reference: UnitLayout,
  best: TopKSink,
  opts: PairwiseOptions = {},
): Promise<void> {
  const { units: U, patches: Q } = reference;
  const W = ops.channels;
  const rowOwner = query.owner;
  const refOwner = reference.owner ?? identityOwner(U);
  const sim = converter(ops);
  const plan = opts.blocks ?? crossBlockPlan(query.rows, reference, opts);
  const total = plan.reduce((s, b) => s + (b.q1 - b.q0) * (b.r1 - b.r0), 0);
  let done = 0;
  for (const blk of plan) {
    opts.signal?.throwIfAborted();
    const { q0, q1, r0, r1 } = blk;
    const rows = q1 - q0;
    const J = r1 - r0;
    const { rowMax } = await kernel.blockMax(ops.query.subarray(q0 * W, q1 * W), ops.reference.subarray(r0 * Q * W, r1 * Q * W), { rows, J, Q, C: W }, false);
    for (let i = 0; i < rows; i++) {
      const row = q0 + i;
      const own = rowOwner ? rowOwner[row] : -1;
      for (let jj = 0; jj < J; jj++) if (refOwner[r0 + jj] !== own) best.push(row, sim(rowMax[i * J + jj]));
    }
    done += rows * J;
    opts.onProgress?.(done / total);
  }
}
