/**
 * How often the label-free decision rules are right: reads a `scores.json` written by
 * `musc run` / `musc eval --report` on MVTec-layout data (label = folder is not `good`)
 * and prints accuracy / F1 of each rule next to the best possible threshold.
 * Usage: node dist/scripts/decision-quality.js <scores.json> [...]
 */
import { readFile } from 'node:fs/promises';
import { sep } from 'node:path';
import { decisionQuality } from '../src/outputs/decisions.js';
import { chooseThreshold, type ThresholdRule } from '../src/outputs/thresholds.js';

interface Row {
  path: string;
  rscinScore: number | null;
}

const pct = (x: number) => (100 * x).toFixed(1);
for (const file of process.argv.slice(2)) {
  const rows = (JSON.parse(await readFile(file, 'utf8')) as { images: Row[] }).images.filter((r) => r.rscinScore !== null);
  const scores = rows.map((r) => r.rscinScore as number);
  const labels = rows.map((r) => (r.path.split(sep).slice(-2, -1)[0] === 'good' ? 0 : 1));
  const rate = labels.reduce((a: number, b) => a + b, 0) / labels.length;
  const rules: [string, ThresholdRule][] = [
    ['otsu (default)', { method: 'otsu' }],
    ['mad (z = 3)', { method: 'mad' }],
    [`rate = true share ${pct(rate)} %`, { method: 'rate', defectRate: rate }],
  ];
  process.stdout.write(`\n${file}: ${rows.length} images, ${pct(rate)} % defective\n\n| rule | threshold | accuracy % | F1 % | best accuracy % (threshold) | best F1 % |\n|---|---:|---:|---:|---:|---:|\n`);
  for (const [name, rule] of rules) {
    const t = chooseThreshold(scores, rule);
    const q = decisionQuality(scores, labels, t.value);
    process.stdout.write(`| ${name} | ${t.value.toFixed(3)} | ${pct(q.accuracy)} | ${pct(q.f1)} | ${pct(q.bestAccuracy)} (${q.bestThreshold.toFixed(3)}) | ${pct(q.bestF1)} |\n`);
  }
}
