/**
 * Running selection of the K largest values per row (bounded min-heaps in one
 * Float32Array), so mutual scoring keeps O(rows·K) memory instead of every
 * per-pair value. Hand-written: typed-array heaps, no allocation per value.
 */
/** Where the pairwise routines offer their per-row values: a `LargestK`, or a view of one (distributed tiles). */
export interface TopKSink {
  push(row: number, v: number): void;
}

export class LargestK implements TopKSink {
  /** Heap storage `[rows, k]`; each row's first `counts[row]` slots form a min-heap. */
  readonly values: Float32Array;
  readonly counts: Uint32Array;

  constructor(
    readonly rows: number,
    readonly k: number,
  ) {
    if (!Number.isInteger(k) || k < 1) throw new RangeError(`LargestK needs k >= 1 (got ${k})`);
    this.values = new Float32Array(rows * k);
    this.counts = new Uint32Array(rows);
  }

  /** Offers `v` to `row`: kept when fewer than k are held or when larger than the smallest held. */
  push(row: number, v: number): void {
    const k = this.k;
    const base = row * k;
    const h = this.values;
    const n = this.counts[row];
    if (n < k) {
      // Sift up.
      let i = n;
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if (h[base + parent] <= v) break;
        h[base + i] = h[base + parent];
        i = parent;
      }
      h[base + i] = v;
      this.counts[row] = n + 1;
      return;
    }
    if (v <= h[base]) return; // the common case once the heap is full
    // Replace the root and sift down.
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= k) break;
      const r = l + 1;
      const c = r < k && h[base + r] < h[base + l] ? r : l;
      if (h[base + c] >= v) break;
      h[base + i] = h[base + c];
      i = c;
    }
    h[base + i] = v;
  }

  /**
   * For each row: sorts the held values in descending order, maps each through `f`
   * and averages positions [from, to).
   */
  meanOfRanks(from: number, to: number, f: (v: number) => number): Float32Array {
    const out = new Float32Array(this.rows);
    const scratch = new Float32Array(this.k);
    for (let r = 0; r < this.rows; r++) {
      const n = this.counts[r];
      const row = scratch.subarray(0, n);
      row.set(this.values.subarray(r * this.k, r * this.k + n));
      row.sort(); // ascending; rank t (descending) is row[n - 1 - t]
      // Fewer than `to` values only happen in deliberately partial (benchmark) runs.
      const hi = Math.min(to, n);
      let s = 0;
      for (let t = from; t < hi; t++) s += f(row[n - 1 - t]);
      out[r] = hi > from ? s / (hi - from) : NaN;
    }
    return out;
  }
}
