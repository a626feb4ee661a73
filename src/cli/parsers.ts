/**
 * Argument parsers of the CLI (commander `argParser`s): every numeric flag is checked
 * when parsed, and a bad value fails before any work with commander's message naming
 * the flag, e.g. `option '--threshold <score>' argument 'abc' is invalid. must be a
 * number in [0, 1] (the RsCIN score)`.
 */
import { InvalidArgumentError } from 'commander';

const num = (v: string): number => (v.trim() === '' ? NaN : Number(v));

/** A number in [min, max] (bounds included unless `open`). */
export const numberIn =
  (min: number, max: number, what = '', open: { min?: boolean; max?: boolean } = {}) =>
  (v: string): number => {
    const x = num(v);
    const ok = Number.isFinite(x) && (open.min ? x > min : x >= min) && (open.max ? x < max : x <= max);
    if (!ok) throw new InvalidArgumentError(`must be a number in ${open.min ? '(' : '['}${min}, ${max}${open.max ? ')' : ']'}${what ? ` (${what})` : ''}`);
    return x;
  };

/** An integer ≥ `min` (and ≤ `max`). */
export const integer =
  (min: number, max = Infinity) =>
  (v: string): number => {
    const x = num(v);
    if (!Number.isInteger(x) || x < min || x > max) throw new InvalidArgumentError(max === Infinity ? `must be an integer of at least ${min}` : `must be an integer in ${min}..${max}`);
    return x;
  };

/** A positive integer. */
export const positiveInt = integer(1);

/** A positive number. */
export const positiveNumber = (v: string): number => {
  const x = num(v);
  if (!Number.isFinite(x) || x <= 0) throw new InvalidArgumentError('must be a positive number');
  return x;
};

/** Comma-separated integers, each checked by `check` (whose message is `rule`). */
export const intList =
  (rule: string, check: (x: number) => boolean = () => true) =>
  (v: string): number[] => {
    const xs = v.split(',').map(num);
    if (xs.some((x) => !Number.isInteger(x))) throw new InvalidArgumentError(`must be comma-separated integers, ${rule}`);
    if (!xs.every(check)) throw new InvalidArgumentError(`must be comma-separated integers, ${rule}`);
    return xs;
  };

/** Three comma-separated numbers (R,G,B); with `positive`, each > 0. */
export const triple =
  (positive = false) =>
  (v: string): [number, number, number] => {
    const xs = v.split(',').map(num);
    if (xs.length !== 3 || xs.some((x) => !Number.isFinite(x) || (positive && x <= 0))) {
      throw new InvalidArgumentError(`expects three comma-separated ${positive ? 'positive ' : ''}numbers (R,G,B)`);
    }
    return xs as [number, number, number];
  };

/** The MSM interval "low,high" with 0 ≤ low < high ≤ 1. */
export const interval = (v: string): [number, number] => {
  const xs = v.split(',').map(num);
  if (xs.length !== 2 || xs.some((x) => !Number.isFinite(x)) || !(xs[0] >= 0 && xs[0] < xs[1] && xs[1] <= 1)) {
    throw new InvalidArgumentError('must be "low,high" with 0 ≤ low < high ≤ 1, e.g. 0,0.3');
  }
  return xs as [number, number];
};

/** A TCP port (0 picks a free one). */
export const port = (v: string): number => {
  const x = num(v);
  if (!Number.isInteger(x) || x < 0 || x > 65535) throw new InvalidArgumentError('must be an integer port in 0..65535 (0 picks a free one)');
  return x;
};

/** Sides `resolveConfig` accepts for the working size. */
const SIDE = { min: 32, max: 2048 };

/** `--image-size`: a side S (square, or the long side with --keep-aspect) or a fixed `WxH`, each side in 32..2048. */
export const sizeSpec = (v: string): number | { width: number; height: number } => {
  const m = /^(\d+)x(\d+)$/i.exec(v.trim());
  const sides = m ? [Number(m[1]), Number(m[2])] : [num(v)];
  if (!sides.every((x) => Number.isInteger(x) && x >= SIDE.min && x <= SIDE.max)) {
    throw new InvalidArgumentError(`must be S or WxH with each side an integer in ${SIDE.min}..${SIDE.max}, e.g. 224 or 448x320`);
  }
  return m ? { width: sides[0], height: sides[1] } : sides[0];
};

/** `--tiles RxC`: rows x columns, each ≥ 1. */
export const gridSpec = (v: string): { rows: number; cols: number } => {
  const m = /^(\d+)x(\d+)$/i.exec(v.trim());
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new InvalidArgumentError('must be RxC (rows x columns), e.g. 2x2 or 1x3');
  return { rows: Number(m[1]), cols: Number(m[2]) };
};
