/**
 * Writes the small-defect benchmark (issue #13): two high-resolution categories in MVTec
 * AD layout, `flange` (aligned, 1200 x 900 RGB) and `shaft` (elongated, 1600 x 500 grey),
 * defects of 0.1-0.5 % of the image area with exact masks. Deterministic for a seed.
 * Usage: node dist/scripts/gen-small-defects.js <out-dir> [--seed 13] [--count 50] [--defect-rate 0.3] [--train 0] [--categories flange,shaft]
 * Then: npx musc eval <out-dir>/flange --json (and <out-dir>/shaft).
 */
import { parseArgs } from 'node:util';
import { SMALL_DEFECT_CATEGORIES, writeSmallDefectSet, type SmallDefectCategory } from '../src/demo/small-defects.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    seed: { type: 'string', default: '13' },
    count: { type: 'string', default: '50' },
    'defect-rate': { type: 'string', default: '0.3' },
    train: { type: 'string', default: '0' },
    categories: { type: 'string', default: SMALL_DEFECT_CATEGORIES.join(',') },
  },
});
const number = (name: string, text: string, ok: (v: number) => boolean): number => {
  const v = Number(text);
  if (!ok(v)) {
    process.stderr.write(`--${name}: invalid value ${JSON.stringify(text)}\n`);
    process.exit(2);
  }
  return v;
};
if (positionals.length !== 1) {
  process.stderr.write('usage: node dist/scripts/gen-small-defects.js <out-dir> [--seed N] [--count N] [--defect-rate F] [--train N] [--categories flange,shaft]\n');
  process.exit(2);
}
const categories = values.categories.split(',').map((c) => c.trim());
const unknown = categories.filter((c) => !(SMALL_DEFECT_CATEGORIES as readonly string[]).includes(c));
if (unknown.length > 0 || categories.length === 0) {
  process.stderr.write(`--categories: unknown ${JSON.stringify(unknown)}; choose from ${SMALL_DEFECT_CATEGORIES.join(', ')}\n`);
  process.exit(2);
}
const t0 = performance.now();
const written = await writeSmallDefectSet(positionals[0], {
  seed: number('seed', values.seed, (v) => Number.isInteger(v) && v >= 0),
  count: number('count', values.count, (v) => Number.isInteger(v) && v >= 2),
  defectRate: number('defect-rate', values['defect-rate'], (v) => v >= 0 && v <= 1),
  trainGood: number('train', values.train, (v) => Number.isInteger(v) && v >= 0),
  categories: categories as SmallDefectCategory[],
});
for (const c of written) {
  const fr = c.defects.map((d) => d.areaFraction * 100);
  const span = fr.length ? `, defect area ${Math.min(...fr).toFixed(3)}-${Math.max(...fr).toFixed(3)} % of the image` : '';
  process.stdout.write(`${c.dir}: ${c.images} test images ${c.width}x${c.height} (${c.defects.length} defective${span}), ${c.train} train/good\n`);
}
process.stdout.write(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
