/**
 * Worker-thread side of parallel.ts: LNAMD of a few images of a set, or the int8 codes of a range
 * of rows, read from and written into the caller's shared memory (no copies between threads).
 * Each task runs the same functions the calling thread would, per image or per row, so any split
 * gives the same bits.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { lnamdStackWithRange, stackSize, standardisation, type Standardisation } from './lnamd.js';
import { quantizeRowsBothSides, quantizeRowsWithNorms, type CodesWithNorms, type SideSpec } from './quantize.js';
import type { FeatureGrid } from '../tensor.js';

/** LNAMD of images `grids` of a set (one grid shape), written from `offset` of `out`. */
export interface LnamdTask {
  readonly kind: 'lnamd';
  readonly grids: readonly FeatureGrid[];
  /** Each grid's standardisation when the calling thread knows it (from an earlier degree r), else null. */
  readonly known: readonly (Standardisation | null)[];
  readonly r: number;
  readonly out: Float32Array;
  readonly offset: number;
}

/** The largest |component| written and each grid's standardisation (for the next degree r). */
export interface LnamdResult {
  readonly range: number;
  readonly std: readonly Standardisation[];
}

/** int8 codes and norm terms of rows [r0, r1) of `z` for one GEMM side, or both sides of a self job. */
export interface QuantizeTask {
  readonly kind: 'quantize';
  readonly z: Float32Array;
  readonly r0: number;
  readonly r1: number;
  readonly sides: readonly SideSpec[];
  readonly outs: readonly CodesWithNorms[];
}

export type WorkerTask = LnamdTask | QuantizeTask;

function lnamdTask({ grids, known, r, out, offset }: LnamdTask): LnamdResult {
  const { range } = lnamdStackWithRange(grids, r, out.subarray(offset, offset + grids.length * stackSize(grids)), known);
  // Computed (and cached) inside lnamdInto where not known.
  return { range, std: grids.map((g, i) => known[i] ?? standardisation(g)) };
}

/**
 * A full garbage collection of this worker's (small) heap. A SharedArrayBuffer is freed only when
 * every thread that saw it has collected its handle, and a worker that allocates almost nothing
 * never collects on its own: without this, every set's vectors stayed alive until the pool closed
 * (RSS +1 GB on bottle; flat with it). The flag exposes `gc` to contexts created after it is set.
 */
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;

export default function runTask(task: WorkerTask): LnamdResult | null {
  // Drops the handles of earlier tasks' buffers (~1 ms).
  collect();
  if (task.kind === 'lnamd') return lnamdTask(task);
  const { z, r0, r1, sides, outs } = task;
  if (sides.length === 2) quantizeRowsBothSides(z, r0, r1, sides[0], sides[1], outs[0], outs[1]);
  else quantizeRowsWithNorms(z, r0, r1, sides[0], outs[0]);
  return null;
}
