/** Argument parsers shared by the CLI commands (commander `argParser`s). */
import { InvalidArgumentError } from 'commander';

export const intList = (what: string) => (v: string) => {
  const xs = v.split(',').map((s) => Number(s.trim()));
  if (xs.some((x) => !Number.isInteger(x))) throw new InvalidArgumentError(`${what} must be comma-separated integers`);
  return xs;
};
export const positiveInt = (v: string) => {
  const x = Number(v);
  if (!Number.isInteger(x) || x <= 0) throw new InvalidArgumentError('must be a positive integer');
  return x;
};
export const triple = (v: string) => {
  const xs = v.split(',').map(Number);
  if (xs.length !== 3 || xs.some((x) => !Number.isFinite(x))) throw new InvalidArgumentError('expects three comma-separated numbers (R,G,B)');
  return xs as [number, number, number];
};
export const interval = (v: string) => {
  const xs = v.split(',').map(Number);
  if (xs.length !== 2 || xs.some((x) => !Number.isFinite(x))) throw new InvalidArgumentError('interval is "low,high", e.g. 0,0.3');
  return xs as [number, number];
};
/** `--image-size`: a side S (square, or the long side with --keep-aspect) or a fixed `WxH`. */
export const sizeSpec = (v: string): number | { width: number; height: number } => {
  const m = /^(\d+)x(\d+)$/i.exec(v.trim());
  if (m) return { width: Number(m[1]), height: Number(m[2]) };
  const x = Number(v);
  if (!Number.isInteger(x) || x <= 0) throw new InvalidArgumentError('must be a positive integer S or WxH, e.g. 224 or 448x320');
  return x;
};
/** `--tiles RxC`: rows x columns. */
export const gridSpec = (v: string) => {
  const m = /^(\d+)x(\d+)$/i.exec(v.trim());
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new InvalidArgumentError('must be RxC (rows x columns), e.g. 2x2 or 1x3');
  return { rows: Number(m[1]), cols: Number(m[2]) };
};
/** A fraction in [lo, hi] (both inclusive unless open). */
export const fraction = (lo: number, hi: number, openLow = false) => (v: string) => {
  const x = Number(v);
  if (!Number.isFinite(x) || x > hi || (openLow ? x <= lo : x < lo)) throw new InvalidArgumentError(`must be a number in ${openLow ? '(' : '['}${lo}, ${hi}]`);
  return x;
};
