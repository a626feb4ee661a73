/** `musc eval`: metrics of labelled categories, optionally with the outputs and report. */
import type { Command } from 'commander';
import { Option } from 'commander';
import { evaluate, type EvaluationResult } from '../../api/evaluate.js';
import { meanMetrics, type CategoryResult } from '../../eval.js';
import { MuscError } from '../../errors.js';
import { addQueueOptions, withQueue, type QueueOpts } from '../distributed.js';
import { interruptSignal } from '../interrupt.js';
import { addDecisionOptions, addOverwriteOption, addScoringOptions, ruleFrom, scoringFrom, type DecisionOpts, type ScoringOpts } from '../options.js';
import { integer } from '../parsers.js';
import { createProgress, type Progress } from '../progress.js';
import { MIN_IMAGES } from '../../pipeline/msm.js';

/** Parsed options of `musc eval`. */
export type EvalOpts = ScoringOpts & DecisionOpts & QueueOpts & { json?: boolean; maxImages?: number; report?: string; overwrite?: boolean };

const pct = (x: number) => (Number.isFinite(x) ? (100 * x).toFixed(2) : '  n/a');

function printTable(results: readonly Pick<CategoryResult, 'name' | 'n' | 'image' | 'pixel' | 'seconds'>[]): void {
  const head = ['category', 'n', 'I-AUROC', 'I-AP', 'I-F1max', 'P-AUROC', 'P-AP', 'P-F1max', 'PRO', 'AUPRO@.3', 'seconds'];
  const metricCells = (m: Pick<CategoryResult, 'image' | 'pixel'>) => [m.image.auroc, m.image.ap, m.image.f1max, m.pixel.auroc, m.pixel.ap, m.pixel.f1max, m.pixel.pro, m.pixel.aupro_mvtec].map(pct);
  const rows = results.map((r) => [r.name, String(r.n), ...metricCells(r), r.seconds.toFixed(1)]);
  if (results.length > 1) rows.push(['mean', '', ...metricCells(meanMetrics(results)), '']);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  process.stdout.write(`${line(head)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${rows.map(line).join('\n')}\n`);
}

function printJson(res: EvaluationResult): void {
  const strip = (r: CategoryResult) => ({ image: r.image, pixel: r.pixel, n: r.n, seconds: r.seconds, times: r.times });
  const categories = Object.fromEntries(res.categories.map((r) => [r.name, strip(r)]));
  process.stdout.write(`${JSON.stringify({ categories, mean: res.mean, config: res.config, backbone: res.backbone, ...(res.failed.length ? { failed: res.failed } : {}) })}\n`);
}

/** Runs `musc eval` (also the second half of `musc demo`). */
export async function runEval(dirs: string[], o: EvalOpts): Promise<EvaluationResult> {
  let bar: Progress | null = null;
  const res = await withQueue(o, (executors) => evaluate(dirs, {
    ...executors,
    ...scoringFrom(o, {
      signal: interruptSignal(o.report ? 'reports of the categories finished before were kept; the current one was not written' : 'nothing was written'),
      onProgress: (s, f) => bar?.update(s, f),
    }),
    maxImages: o.maxImages,
    report: o.report,
    overwrite: o.overwrite,
    threshold: ruleFrom(o),
    onCategory: (e) => {
      if (e.kind === 'start') bar = createProgress(e.name);
      else {
        bar?.stop();
        bar = null;
      }
      if (e.kind === 'failed') process.stderr.write(`musc: ${e.dir}: ${e.error}\n`);
      if (e.kind === 'done') {
        for (const f of e.result.failures) process.stderr.write(`skipped ${f.file}: ${f.error}\n`);
        if (e.reportDir) process.stderr.write(`report: ${e.reportDir}/report.html\n`);
      }
    },
  })).finally(() => bar?.stop());
  if (o.json) printJson(res);
  else printTable(res.categories);
  if (res.failed.length > 0) {
    throw new MuscError('EVAL_FAILED', `${res.failed.length} of ${dirs.length} categories could not be evaluated: ${res.failed.map((f) => f.dir).join(', ')}`);
  }
  return res;
}

export function addEvalCommand(program: Command): void {
  addQueueOptions(addOverwriteOption(
    addDecisionOptions(
      addScoringOptions(
        program
          .command('eval')
          .description('score labelled categories (MVTec AD / BTAD / VisA layout) zero-shot and report metrics')
          .argument('<category-dir...>', 'category folders, e.g. data/mvtec_ad/bottle')
          .option('--json', 'print one JSON object on stdout instead of a table')
          .option('--report <dir>', 'also write scores, overlays and report.html (with metrics and curves) to <dir>')
          .addOption(new Option('--max-images <n>', `score a stratified subset of at most n images per category (≥ ${MIN_IMAGES})`).argParser(integer(MIN_IMAGES))),
      ),
    ),
  )).action(async (dirs: string[], o: EvalOpts) => {
    await runEval(dirs, o);
  });
}
