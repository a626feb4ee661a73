/**
 * The reference's split of a category into `divide_num` subsets (spec §1.3).
 * Mutual scoring runs within a subset only, so membership must match the
 * reference exactly to reproduce its numbers; that needs Python's RNG stream.
 */
import path from 'node:path';
import { ConfigError } from '../errors.js';
import type { DatasetItem } from './dataset.js';
import { PythonRandom } from './python-random.js';

/**
 * Splits item indices into `divideNum` subsets as MuSc does: group indices by
 * anomaly type (the image's parent folder name) in order of first appearance;
 * for subset t, re-seed Python's RNG with `seed`, shuffle each group in turn with
 * the continuing stream, and take shuffled positions t, t+d, t+2d, ... of every
 * group, concatenated in group order. The subsets are disjoint and cover all items.
 *
 * @param items dataset items in dataset order
 * @param divideNum number of subsets d (1 = one subset with all indices in order)
 * @param seed RNG seed (`examples/musc_main.py` hard-codes 42)
 * @returns one index list per subset
 * @throws ConfigError if divideNum is not a positive integer, or a subset would be empty
 *   (the reference would then run MSM on no images).
 */
export function splitSubsets(items: readonly DatasetItem[], divideNum: number, seed: number | bigint = 42): number[][] {
  if (!Number.isInteger(divideNum) || divideNum < 1) throw new ConfigError(`divide_num must be a positive integer, got ${divideNum}`);
  if (divideNum === 1) return [items.map((_, i) => i)];
  // Map iteration order is insertion order, i.e. first appearance, like the reference's dict.
  const groups = new Map<string, number[]>();
  items.forEach((item, i) => {
    const type = path.basename(path.dirname(item.imagePath));
    const g = groups.get(type);
    if (g) g.push(i);
    else groups.set(type, [i]);
  });
  const rng = new PythonRandom(seed);
  const subsets: number[][] = [];
  for (let t = 0; t < divideNum; t++) {
    rng.seed(seed);
    const subset: number[] = [];
    for (const indices of groups.values()) {
      // The reference shuffles its stored lists in place, but re-shuffling an already shuffled
      // list would change later subsets; it rebuilds the groups per subset, so copy here.
      const shuffled = indices.slice();
      rng.shuffle(shuffled);
      for (let p = t; p < shuffled.length; p += divideNum) subset.push(shuffled[p]);
    }
    subsets.push(subset);
  }
  const empty = subsets.findIndex((s) => s.length === 0);
  if (empty >= 0) {
    const largest = Math.max(0, ...[...groups.values()].map((g) => g.length));
    throw new ConfigError(`divide_num ${divideNum} leaves subset ${empty} empty: the largest anomaly-type group has only ${largest} image(s)`);
  }
  return subsets;
}
