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
