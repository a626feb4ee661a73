/**
 * Tiles: the unit of distributed work. A tile is a run of consecutive blocks of a
 * block plan that share one query group. In a self plan (`selfBlockPlan`) it touches
 * the query units [q0, q1) and one contiguous range of reference units (column maxima
 * serve the reference rows); in a cross plan (`crossBlockPlan`) only its query rows. Its result is the
 * top-K of every row it touched (`Partial`). Merging partials is exact: the K largest
 * of a union are the K largest of the parts' K largest, as a multiset, and
 * `LargestK.meanOfRanks` sorts, so the merged scores are bit-identical to one process's
 * whatever the tiling, the number of workers or the order tiles finish in.
 */
import { blockWork, crossBestMatches, referenceChunk, selfBestMatches, selfBlockPlan, type Block, type BlockSizes } from '../pipeline/pairwise.js';
import type { SimilarityKernel } from '../pipeline/similarity-kernel.js';
import { LargestK, type TopKSink } from '../pipeline/top-k.js';
import type { PairwiseKind, Partial, RowRanges, SetOperands } from './format.js';

/** One tile: its blocks and the global row ranges they write. */
export interface Tile {
  readonly index: number;
  readonly blocks: readonly Block[];
  readonly ranges: RowRanges;
  /** GEMM work (unit pairs), for progress. */
  readonly work: number;
}

/**
 * Cuts a plan into tiles of at most `blocksPerTile` consecutive blocks of one query group.
 * @param patches P, to turn unit ranges into row ranges
 */
export function tilePlan(plan: readonly Block[], patches: number, blocksPerTile: number, kind: PairwiseKind = 'self'): Tile[] {
  if (!Number.isInteger(blocksPerTile) || blocksPerTile < 1) throw new RangeError(`tiles need at least one block (got ${blocksPerTile})`);
  const tiles: Tile[] = [];
  let run: Block[] = [];
  const flush = () => {
    if (run.length === 0) return;
    const { q0, q1 } = run[0];
    if (kind === 'cross') {
      // Row maxima only: the tile writes its query rows.
      tiles.push({ index: tiles.length, blocks: run, ranges: [[q0, q1]], work: run.reduce((s, b) => s + (b.q1 - b.q0) * (b.r1 - b.r0), 0) });
      run = [];
      return;
    }
    const r0 = Math.min(...run.map((b) => b.r0));
    const r1 = Math.max(...run.map((b) => b.r1));
    // With the diagonal block the reference range starts at q0: one range of rows.
    const units: [number, number][] = r0 <= q1 ? [[q0, Math.max(q1, r1)]] : [[q0, q1], [r0, r1]];
    tiles.push({ index: tiles.length, blocks: run, ranges: units.map(([a, b]) => [a * patches, b * patches] as const), work: run.reduce((s, b) => s + blockWork(b), 0) });
    run = [];
  };
  for (const b of plan) {
    if (run.length > 0 && (run[0].q0 !== b.q0 || run.length >= blocksPerTile)) flush();
    run.push(b);
  }
  flush();
  return tiles;
}

/**
 * Tiles of a self set in which each tile owns the rows of one query group (`rows` mode): the
 * group's pairs with every other unit, each measured as the self plan measures it (the earlier
 * unit on the query side, which matters in int8): the group's own blocks (diagonal, later units)
 * and every earlier group's block against it (its rows then come from column maxima). Each pair
 * is computed by both owners (2× the GEMM work), but a partial holds at most K values per owned
 * row, whatever N. Values for rows the tile does not own are dropped (`computeTile`).
 */
export function rowTilePlan(units: number, patches: number, sizes: BlockSizes, blocksPerTile: number): Tile[] {
  if (!Number.isInteger(blocksPerTile) || blocksPerTile < 1) throw new RangeError(`tiles need at least one block (got ${blocksPerTile})`);
  const own = selfBlockPlan(units, patches, sizes);
  const groups = own.filter((b) => b.q0 === b.r0);
  const chunk = referenceChunk(patches, sizes);
  const tiles: Tile[] = [];
  for (const g of groups) {
    const blocks = own.filter((b) => b.q0 === g.q0);
    for (const h of groups) {
      if (h.q0 >= g.q0) break;
      for (let r0 = g.q0; r0 < g.q1; r0 += chunk) blocks.push({ q0: h.q0, q1: h.q1, r0, r1: Math.min(g.q1, r0 + chunk) });
    }
    for (let i = 0; i < blocks.length; i += blocksPerTile) {
      const run = blocks.slice(i, i + blocksPerTile);
      tiles.push({ index: tiles.length, blocks: run, ranges: [[g.q0 * patches, g.q1 * patches]], work: run.reduce((s, b) => s + blockWork(b), 0) });
    }
  }
  return tiles;
}

/** Rows in `ranges`, in order. */
export function rangeRows(ranges: RowRanges): number {
  return ranges.reduce((s, [a, b]) => s + (b - a), 0);
}

/**
 * A `TopKSink` over the global rows of `ranges`, backed by a compact `LargestK` of those rows
 * only; values for other rows are dropped (a `rows` tile's blocks also touch rows it does not own).
 */
function rangeSink(best: LargestK, ranges: RowRanges): TopKSink {
  if (ranges.length === 1) {
    const [a, b] = ranges[0];
    return {
      push: (row, v) => {
        if (row >= a && row < b) best.push(row - a, v);
      },
    };
  }
  const [[a0, b0], [a1, b1]] = ranges;
  const shift = b0 - a0 - a1;
  return {
    push: (row, v) => {
      if (row >= a0 && row < b0) best.push(row - a0, v);
      else if (row >= a1 && row < b1) best.push(row + shift, v);
    },
  };
}

/** Runs one tile of a set (what a worker does) and returns its partial result. */
export async function computeTile(kernel: SimilarityKernel, set: SetOperands, setKey: string, tile: Pick<Tile, 'index' | 'blocks' | 'ranges'>): Promise<Partial> {
  if (tile.ranges.length > 2) throw new RangeError('a tile touches at most two row ranges');
  const best = new LargestK(rangeRows(tile.ranges), set.k);
  const sink = rangeSink(best, tile.ranges);
  const reference = { units: set.units, patches: set.patches, owner: set.owner };
  if (set.kind === 'self') await selfBestMatches(kernel, set.ops, reference, sink, { blocks: tile.blocks });
  else await crossBestMatches(kernel, set.ops, { rows: set.rows ?? 0, owner: set.rowOwner }, reference, sink, { blocks: tile.blocks });
  return { set: setKey, tile: tile.index, ranges: tile.ranges, best };
}

/** Offers every value of a partial to the set's running top-K (order independent, exact). */
export function mergePartial(into: LargestK, part: Partial): void {
  if (part.best.k !== into.k) throw new RangeError(`partial keeps ${part.best.k} values per row, the set ${into.k}`);
  const { values, counts, k } = part.best;
  // Checked before the first value is offered: a bad partial never half-merges.
  for (const [a, b] of part.ranges) if (!(a >= 0 && a <= b && b <= into.rows)) throw new RangeError(`partial rows [${a}, ${b}) outside the set's ${into.rows}`);
  if (rangeRows(part.ranges) !== part.best.rows) throw new RangeError(`partial ranges cover ${rangeRows(part.ranges)} rows, its values ${part.best.rows}`);
  let local = 0;
  for (const [a, b] of part.ranges) {
    for (let row = a; row < b; row++, local++) {
      const base = local * k;
      for (let i = 0; i < counts[local]; i++) into.push(row, values[base + i]);
    }
  }
}
