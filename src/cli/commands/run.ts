/** `musc run`: a batch of unlabeled images, scored against each other. */
import { join } from 'node:path';
import type { Command } from 'commander';
import { runBatch } from '../../api/run.js';
import { addQueueOptions, withQueue, type QueueOpts } from '../distributed.js';
import { interruptSignal } from '../interrupt.js';
import { addDecisionOptions, addOverwriteOption, addScoringOptions, ruleFrom, scoringFrom, type DecisionOpts, type ScoringOpts } from '../options.js';
import { createProgress } from '../progress.js';

export function addRunCommand(program: Command): void {
  addQueueOptions(addOverwriteOption(
    addDecisionOptions(
      addScoringOptions(
        program
          .command('run')
          .description('score a batch of unlabeled images against each other; write scores, heatmaps and report.html')
          .argument('<inputs...>', 'image folders (searched recursively), files or quoted globs')
          .requiredOption('--out <dir>', 'output folder (new, empty, or written by musc before: its previous outputs are replaced)'),
      ),
    ),
  )).action(async (inputs: string[], o: ScoringOpts & DecisionOpts & QueueOpts & { out: string; overwrite?: boolean }) => {
    const bar = createProgress('run');
    try {
      const res = await withQueue(o, (executors) =>
        runBatch(inputs, {
          ...scoringFrom(o, { signal: interruptSignal(`${o.out} was left as it was (no outputs of this run written)`), onProgress: (s, f) => bar.update(s, f) }),
          out: o.out,
          overwrite: o.overwrite,
          threshold: ruleFrom(o),
          ...executors,
        }),
      );
      bar.stop();
      for (const f of res.failures) process.stderr.write(`skipped ${f.file}: ${f.error}\n`);
      const flagged = res.images.filter((r) => r.decision === 'anomalous').length;
      process.stdout.write(
        `${res.images.length} images scored, ${flagged} anomalous (threshold ${res.threshold.value.toFixed(4)}, ${res.threshold.method}), ${res.failures.length} skipped\n` +
          `results: ${join(o.out, 'scores.csv')}\nreport:  ${join(o.out, 'report.html')}\n`,
      );
    } finally {
      bar.stop();
    }
  });
}
