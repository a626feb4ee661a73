/** `musc bank build` and `musc score`: feature banks, and new images scored against them. */
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { buildBankFromImages, scoreWithBank } from '../../api/bank.js';
import { readBankHeader, type BankEncoding, type BankReference } from '../../bank/format.js';
import { checkMaxBank } from '../../bank/scorer.js';
import { addBankInfoCommand } from '../bank-info.js';
import { MuscError } from '../../errors.js';
import { interruptSignal } from '../interrupt.js';
import { addDecisionOptions, addOverwriteOption, addScoringOptions, ruleFrom, scoringFrom, type DecisionOpts, type ScoringOpts } from '../options.js';
import { numberIn, positiveInt } from '../parsers.js';
import { createProgress } from '../progress.js';

export function addBankCommands(program: Command): void {
  const bank = program.command('bank').description('feature banks of reference images, for scoring new images one at a time');
  addBankInfoCommand(bank);
  addDecisionOptions(
    addScoringOptions(
      bank
        .command('build')
        .description('extract and store the features of reference images (an unlabeled batch, or known-good images with --reference good)')
        .argument('<inputs...>', 'image folders (searched recursively), files or quoted globs')
        .requiredOption('--out <file.mbank>', 'bank file to write')
        .addOption(new Option('--reference <kind>', 'unlabeled: zero-shot MuSc against the bank; good: few-shot nearest neighbour against known-good images').choices(['unlabeled', 'good']).default('unlabeled'))
        .addOption(new Option('--encoding <e>', 'storage of patch vectors: int8 (1 byte/value), fp16 or fp32').choices(['int8', 'fp16', 'fp32']).default('int8')),
    ),
    2,
    'otsu; mad with --reference good',
  ).action(async (inputs: string[], o: ScoringOpts & DecisionOpts & { out: string; reference: BankReference; encoding: BankEncoding }, cmd: Command) => {
    // Good banks default to median + 3·MAD (buildBank) unless a rule is given. `otsu` is commander's
    // default, so only its source tells an explicit `--threshold-method otsu` from no flag.
    const ruleGiven = o.threshold !== undefined || o.defectRate !== undefined || cmd.getOptionValueSource('thresholdMethod') !== 'default';
    const bar = createProgress('bank');
    try {
      const t0 = performance.now();
      const built = await buildBankFromImages(inputs, {
        ...scoringFrom(o, { signal: interruptSignal(`the bank ${o.out} was not written`), onProgress: (st, f) => bar.update(st, f) }),
        out: o.out,
        reference: o.reference,
        encoding: o.encoding,
        threshold: o.reference === 'good' && !ruleGiven ? undefined : ruleFrom(o),
      });
      bar.stop();
      for (const f of built.failures) process.stderr.write(`skipped ${f.file}: ${f.error}\n`);
      const b = built.bank;
      process.stdout.write(
        `bank ${o.out}: ${b.images.length} ${o.reference} images, ${((built.bytes ?? 0) / 2 ** 20).toFixed(1)} MiB (${o.encoding}), ` +
          `threshold ${b.threshold.value.toFixed(4)} (${b.threshold.method}), ${built.failures.length} skipped, ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
      );
    } finally {
      bar.stop();
    }
  });

  addOverwriteOption(
    program
      .command('score')
      .description('score new images against a bank (each image costs O(bank size), not a full re-run)')
      .argument('<inputs...>', 'image folders (searched recursively), files or quoted globs')
      .requiredOption('--bank <file.mbank>', 'bank built with `musc bank build`')
      .option('--out <dir>', 'also write scores.csv, scores.json, overlays/, maps/ and report.html to <dir> (as `musc run`)')
      .option('--json', 'print one JSON object on stdout')
      .option('--update', 'add the scored images to the bank (a rolling window, see --max-bank) and save it')
      .addOption(new Option('--max-bank <n>', 'with --update: keep at most n images (oldest leave first)').argParser(positiveInt))
      .addOption(new Option('--threshold <score>', "override the bank's decision threshold (RsCIN score 0..1 for unlabeled banks, raw score 0..2 for good banks)").argParser(numberIn(0, 2, 'RsCIN score 0..1, or raw score 0..2 for good banks')))
      .addOption(new Option('--backbone <model.onnx>', "path of the bank's ViT export if it moved (checked by SHA-256)"))
      .addOption(new Option('--precision <p>', 'GEMM arithmetic (default: int8 for int8 banks, else fp32)').choices(['fp32', 'int8']))
      .addOption(new Option('--threads <n>', 'ONNX Runtime intra-op threads (default: all cores)').argParser(positiveInt)),
  ).action(async (inputs: string[], o: { bank: string; out?: string; overwrite?: boolean; json?: boolean; update?: boolean; maxBank?: number; threshold?: number; backbone?: string; precision?: 'fp32' | 'int8'; threads?: number }) => {
    if (o.maxBank !== undefined && !o.update) throw new MuscError('CONFIG', '--max-bank applies to --update (the rolling window of images the bank keeps)');
    if (o.update) checkMaxBank((await readBankHeader(o.bank)).reference, o.maxBank, '--max-bank'); // before loading the model
    const kept = [o.update ? `the bank ${o.bank} was not changed` : '', o.out ? `${o.out} was left as it was` : ''].filter(Boolean).join('; ') || 'nothing was written';
    const bar = createProgress('score', o.json);
    try {
      const res = await scoreWithBank(inputs, {
        bank: o.bank,
        out: o.out,
        overwrite: o.overwrite,
        update: o.update,
        maxBank: o.maxBank,
        threshold: o.threshold,
        backboneModel: o.backbone,
        precision: o.precision,
        threads: o.threads,
        signal: interruptSignal(kept),
        onProgress: (s, f) => bar.update(s, f),
        log: (m) => process.stderr.write(`${m}\n`),
      });
      bar.stop();
      for (const f of res.failures) process.stderr.write(`skipped ${f.file}: ${f.error}\n`);
      // Saved under the bank's lock on top of what other writers saved meanwhile: the file's count after this update.
      const saved = res.saved;
      if (saved) process.stderr.write(`bank ${o.bank} now holds ${saved.images} images (${saved.added} added${saved.dropped ? `, ${saved.dropped} oldest dropped` : ''})\n`);
      if (o.json) {
        const results = res.images.map((r) => ({ path: r.file, score: r.score, imageScore: r.imageScore, decision: r.decision, threshold: res.threshold.value }));
        process.stdout.write(`${JSON.stringify({ bank: o.bank, reference: res.bank.reference, bankImages: res.bankImages, ...(saved ? { bankImagesAfterUpdate: saved.images } : {}), seconds: res.seconds, results, failures: res.failures, ...(res.outDir ? { out: res.outDir } : {}) })}\n`);
      } else {
        for (const r of res.images) process.stdout.write(`${r.decision.padEnd(9)}  ${r.score.toFixed(4)}  ${r.file}\n`);
        process.stdout.write(`${res.images.length} scored against ${res.bankImages} bank images in ${res.seconds.toFixed(2)} s (threshold ${res.threshold.value.toFixed(4)}), ${res.failures.length} skipped\n`);
        if (res.outDir) process.stdout.write(`results: ${join(o.out!, 'scores.csv')}\nreport:  ${join(o.out!, 'report.html')}\n`);
      }
      if (res.images.length === 0 && res.failures.length > 0) throw new MuscError('NO_IMAGES', 'no image could be scored');
    } finally {
      bar.stop();
    }
  });
}
