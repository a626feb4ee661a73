/**
 * Accuracy and time of the working-size modes (issue #13) on labelled categories,
 * side by side in one process: `musc eval` metrics for each configuration.
 *
 *   node dist/bench/resolution.js [--json] [--divide-num n] <category-dir> <config>...
 *
 * A config is a comma-separated list of key=value over MuscConfig's geometry fields:
 *   size=224                  square S (the reference)
 *   size=224,aspect           long side S, the batch's aspect
 *   size=224,tiles=2x2,overlap=0.25,match=position|any
 *   size=224,tilesize=224,overlap=0.25,match=any
 *   size=224,refine=0.1,fine=448
 *   size=224,auto             --resolution auto
 * Prints one line per config (all metrics in %, seconds per stage) and, with --json,
 * one JSON object.
 */
import { createResNet50Backbone } from '../src/backbone/backbone.js';
import { evaluateCategory } from '../src/eval.js';
import { resolveConfig, type MuscConfig } from '../src/pipeline/musc.js';

const args = process.argv.slice(2);
const json = args.includes('--json');
const di = args.indexOf('--divide-num');
const divideNum = di >= 0 ? Number(args[di + 1]) : 1;
const positional = args.filter((a, i) => !a.startsWith('--') && !(di >= 0 && i === di + 1));
const [dir, ...specs] = positional;
if (!dir || specs.length === 0) throw new Error('usage: resolution.js [--json] [--divide-num n] <category-dir> <config>...');

/** Parses one config spec (see the module comment). */
export function parseSpec(spec: string): Partial<MuscConfig> {
  const kv = new Map<string, string>(spec.split(',').map((p) => { const [k, v = ''] = p.split('='); return [k, v]; }));
  const num = (k: string, d?: number) => (kv.has(k) ? Number(kv.get(k)) : d);
  const S = num('size', 224)!;
  const overlap = num('overlap', 0.25)!;
  const match = (kv.get('match') ?? 'position') as 'position' | 'any';
  const grid = kv.get('tiles')?.split('x').map(Number);
  return {
    imageSize: S,
    keepAspect: kv.has('aspect'),
    tiles: grid ? { grid: { rows: grid[0], cols: grid[1] }, overlap, match } : kv.has('tilesize') ? { size: num('tilesize'), overlap, match } : null,
    refine: kv.has('refine') ? { fraction: num('refine')!, imageSize: num('fine', 2 * S)!, select: (kv.get('select') ?? 'set') as 'image' | 'set' } : null,
    auto: kv.has('auto'),
  };
}

// As `musc eval` opens it (openScoring): without ORT's memory arena, so times compare with the CLI's.
const backbone = await createResNet50Backbone({ layers: ['layer2', 'layer3'], session: { arena: false } });
const rows: Record<string, unknown>[] = [];
const pc = (x: number) => (100 * x).toFixed(2);
try {
  for (const spec of specs) {
    const cfg = resolveConfig({ ...parseSpec(spec), divideNum });
    const t0 = performance.now();
    const r = await evaluateCategory(dir, backbone, cfg);
    const seconds = (performance.now() - t0) / 1000;
    const row = { spec, geometry: r.scores.geometry.rule, map: `${r.scores.width}x${r.scores.height}`, n: r.n, image: r.image, pixel: r.pixel, seconds, times: r.times };
    rows.push(row);
    process.stderr.write(
      `${spec.padEnd(44)} I-AUROC ${pc(r.image.auroc)} I-AP ${pc(r.image.ap)} I-F1 ${pc(r.image.f1max)} | P-AUROC ${pc(r.pixel.auroc)} P-AP ${pc(r.pixel.ap)} P-F1 ${pc(r.pixel.f1max)} PRO ${pc(r.pixel.pro)} | ` +
        `${seconds.toFixed(1)} s (backbone ${r.times.features.toFixed(1)}, msm ${r.times.msm.toFixed(1)}) map ${row.map}\n`,
    );
  }
} finally {
  await backbone.dispose();
}
if (json) process.stdout.write(`${JSON.stringify({ category: dir, divideNum, rows })}\n`);
