/**
 * A faithful port of CPython's `random.Random` for integer seeds (Modules/_randommodule.c
 * and Lib/random.py): MT19937 seeded with `init_by_array` over the 32-bit words of
 * |seed|, `getrandbits`, `_randbelow_with_getrandbits`, `randrange`, `random` and
 * `shuffle`. Hand-written because no JS library reproduces Python's stream, and
 * MuSc's subset split (spec §1.3) depends on the exact shuffle.
 */

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;

/** Python's `random.Random(seed)` restricted to integer seeds. */
export class PythonRandom {
  private readonly mt = new Uint32Array(N);
  private mti = N + 1;

  /** @param seed integer seed (number must be a safe integer; sign is ignored as in CPython) */
  constructor(seed: number | bigint = 0) {
    this.seed(seed);
  }

  /**
   * Re-seeds like `random.seed(seed)` for an int: the key is the little-endian
   * 32-bit words of |seed| (one zero word for 0).
   */
  seed(seed: number | bigint): void {
    if (typeof seed === 'number' && !Number.isSafeInteger(seed)) {
      throw new RangeError(`PythonRandom seed must be a safe integer or a bigint, got ${seed}`);
    }
    let n = BigInt(seed);
    if (n < 0n) n = -n;
    const key: number[] = [];
    while (n > 0n) {
      key.push(Number(n & 0xffffffffn));
      n >>= 32n;
    }
    if (key.length === 0) key.push(0);
    this.initByArray(key);
  }

  private initGenrand(s: number): void {
    const mt = this.mt;
    mt[0] = s >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = mt[i - 1];
      mt[i] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + i) >>> 0;
    }
    this.mti = N;
  }

  private initByArray(key: readonly number[]): void {
    const mt = this.mt;
    this.initGenrand(19650218);
    let i = 1;
    let j = 0;
    for (let k = Math.max(N, key.length); k > 0; k--) {
      const prev = mt[i - 1];
      // ToUint32 (>>> 0) reduces the signed XOR plus addends modulo 2^32, as C's uint32 arithmetic does.
      mt[i] = ((mt[i] ^ Math.imul(prev ^ (prev >>> 30), 1664525)) + key[j] + j) >>> 0;
      i++;
      j++;
      if (i >= N) {
        mt[0] = mt[N - 1];
        i = 1;
      }
      if (j >= key.length) j = 0;
    }
    for (let k = N - 1; k > 0; k--) {
      const prev = mt[i - 1];
      mt[i] = ((mt[i] ^ Math.imul(prev ^ (prev >>> 30), 1566083941)) - i) >>> 0;
      i++;
      if (i >= N) {
        mt[0] = mt[N - 1];
        i = 1;
      }
    }
    mt[0] = 0x80000000;
  }

  /** Next tempered 32-bit output (CPython's `genrand_uint32`). */
  private genrandUint32(): number {
    const mt = this.mt;
    if (this.mti >= N) {
      let kk = 0;
      for (; kk < N - M; kk++) {
        const y = (mt[kk] & UPPER_MASK) | (mt[kk + 1] & LOWER_MASK);
        mt[kk] = mt[kk + M] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      }
      for (; kk < N - 1; kk++) {
        const y = (mt[kk] & UPPER_MASK) | (mt[kk + 1] & LOWER_MASK);
        mt[kk] = mt[kk + (M - N)] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      }
      const y = (mt[N - 1] & UPPER_MASK) | (mt[0] & LOWER_MASK);
      mt[N - 1] = mt[M - 1] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      this.mti = 0;
    }
    let y = mt[this.mti++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** `getrandbits(k)` for k <= 53 as a plain number (same word order as the bigint version). */
  private bitsNumber(k: number): number {
    if (k <= 32) return k === 0 ? 0 : this.genrandUint32() >>> (32 - k);
    const low = this.genrandUint32();
    const high = this.genrandUint32() >>> (64 - k);
    return high * 0x100000000 + low;
  }

  /**
   * `random.getrandbits(k)`: k random bits, filled from the least significant
   * 32-bit word up; the last word keeps its top bits.
   */
  getrandbits(k: number): bigint {
    if (!Number.isInteger(k) || k < 0) throw new RangeError(`number of bits must be a non-negative integer, got ${k}`);
    if (k <= 53) return BigInt(this.bitsNumber(k));
    let result = 0n;
    let shift = 0n;
    for (let left = k; left > 0; left -= 32, shift += 32n) {
      let r = this.genrandUint32();
      if (left < 32) r >>>= 32 - left;
      result |= BigInt(r) << shift;
    }
    return result;
  }

  /**
   * `_randbelow_with_getrandbits(n)`: rejection sampling with k = n.bit_length()
   * bits (not bit_length(n - 1), so powers of two waste draws exactly as CPython does).
   * @param n exclusive upper bound, a positive safe integer below 2^53
   */
  randbelow(n: number): number {
    if (!Number.isSafeInteger(n) || n <= 0) throw new RangeError(`randbelow bound must be a positive safe integer, got ${n}`);
    const k = bitLength(n);
    let r = this.bitsNumber(k);
    while (r >= n) r = this.bitsNumber(k);
    return r;
  }

  /**
   * `random.randrange(stop)` / `randrange(start, stop[, step])` for safe integers.
   * @throws RangeError for an empty range or step 0, as CPython's ValueError.
   */
  randrange(start: number, stop?: number, step = 1): number {
    for (const v of [start, stop ?? 0, step]) {
      if (!Number.isSafeInteger(v)) throw new RangeError(`randrange arguments must be safe integers, got ${v}`);
    }
    if (stop === undefined) {
      if (step !== 1) throw new RangeError('randrange: missing a non-None stop argument');
      if (start > 0) return this.randbelow(start);
      throw new RangeError(`empty range in randrange(${start})`);
    }
    const width = stop - start;
    if (step === 1) {
      if (width > 0) return start + this.randbelow(width);
      throw new RangeError(`empty range in randrange(${start}, ${stop})`);
    }
    let n: number;
    if (step > 0) n = Math.floor((width + step - 1) / step);
    else if (step < 0) n = Math.floor((width + step + 1) / step);
    else throw new RangeError('zero step for randrange()');
    if (n <= 0) throw new RangeError(`empty range in randrange(${start}, ${stop}, ${step})`);
    return start + step * this.randbelow(n);
  }

  /** `random.random()`: a double in [0, 1) from 53 bits (27 + 26) of two outputs. */
  random(): number {
    const a = this.genrandUint32() >>> 5;
    const b = this.genrandUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** `random.shuffle(x)` in place: for i = n-1 down to 1, j = randbelow(i + 1), swap x[i], x[j]. */
  shuffle<T>(x: T[]): void {
    for (let i = x.length - 1; i > 0; i--) {
      const j = this.randbelow(i + 1);
      const t = x[i];
      x[i] = x[j];
      x[j] = t;
    }
  }
}

function bitLength(n: number): number {
  // Math.clz32 only sees 32 bits; split larger values so bounds up to 2^53 work.
  if (n < 0x100000000) return 32 - Math.clz32(n);
  return 32 + (32 - Math.clz32(Math.floor(n / 0x100000000)));
}
