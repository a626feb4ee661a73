/** `musc demo`: a synthetic inspection batch, scored and evaluated end to end. */
import { join } from 'node:path';
import type { Command } from 'commander';
import { openScoring } from '../../api/options.js';
import { writeSyntheticBatch } from '../../demo/synthetic.js';
import { loadImageRgb } from '../../image/io.js';
import { addDecisionOptions, addScoringOptions, scoringFrom, type DecisionOpts, type ScoringOpts } from '../options.js';
import { runEval } from './eval.js';

export function addDemoCommand(program: Command): void {
  addDecisionOptions(
    addScoringOptions(
      program
        .command('demo')
        .description('generate a synthetic inspection batch (40 plates, 25 % defective, with masks) and run the full pipeline on it')
        .option('--out <dir>', 'output folder for the batch and the report', 'musc-demo'),
    ),
  ).action(async (o: ScoringOpts & DecisionOpts & { out: string }) => {
    const t0 = performance.now();
    const data = join(o.out, 'plates');
    const batch = await writeSyntheticBatch(data);
    process.stderr.write(`wrote ${batch.images} synthetic images (${batch.defective} with defects, masks in ground_truth/) to ${data}\n`);
    // One image through the backbone first: shows what the model gives before the long part.
    const { backbone, cfg } = await openScoring(scoringFrom(o));
    try {
      const t1 = performance.now();
      const probe = await loadImageRgb(join(data, 'test', 'good', `${String(batch.defective).padStart(3, '0')}.png`), cfg.imageSize, backbone.resizeKernel);
      const out = await backbone.extract([probe]);
      process.stderr.write(
        `backbone ${backbone.id}: ${cfg.layers.map((l, i) => `${l} [${out.layers[i].dims.join('x')}]`).join(', ')}, ` +
          `embedding [${out.embedding.dims.join('x')}], ${(performance.now() - t1).toFixed(0)} ms for one image\n`,
      );
    } finally {
      await backbone.dispose();
    }
    await runEval([data], { ...o, report: join(o.out, 'report') });
    process.stderr.write(`demo finished in ${((performance.now() - t0) / 1000).toFixed(1)} s; open ${join(o.out, 'report', 'report.html')}\n`);
  });
}
