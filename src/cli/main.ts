/**
 * The `musc` command line: `run`, `eval`, `demo`, `models inspect`.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import type { Backbone } from '../backbone/backbone.js';
import { listTensorCandidates } from '../backbone/graph-surgery.js';
import { openBackbone, RESNET50_IMAGE_SIZE } from '../backbone/open.js';
import { defaultVitLayers, detectVitFamily, VIT_FAMILIES, type GeluMode, type VitFamily } from '../backbone/vit.js';
import { analyzeVit } from '../backbone/vit-graph.js';
import type { Normalization } from '../image/normalize.js';
import { writeSyntheticBatch } from '../demo/synthetic.js';
import { MuscError, errorText } from '../errors.js';
import { loadImageRgb } from '../image/io.js';
import { evaluateCategory, meanMetrics, type CategoryResult } from '../eval.js';
import { DEFAULT_CONFIG, extractFeatures, resolveConfig, type MuscConfig } from '../pipeline/musc.js';
import { imageCurves } from '../run/curves.js';
import { ensureWritableDir, runBatch, scoresCsv, writeRunOutputs, type ScoreRow } from '../run/run.js';
import { chooseThreshold, type ThresholdRule } from '../run/threshold.js';
import { createProgress } from './progress.js';
import { buildBank } from '../bank/bank.js';
import { writeBank, type BankEncoding, type BankReference } from '../bank/format.js';
import { Musc, bankBackboneOf } from '../bank/scorer.js';
import { bankHeatScale } from '../bank/score.js';
import { collectImages, outputStems } from '../run/files.js';
import { renderOverlay } from '../run/overlay.js';
import { strongestRegion } from '../run/region.js';
import { writeAtomic } from '../run/atomic.js';
import { addServeCommand } from './serve.js';

import { fraction, gridSpec, interval, intList, positiveInt, sizeSpec, triple } from './parsers.js';

/** Options shared by the scoring commands. */
function addScoringOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--backbone <model.onnx>', 'a ViT export (CLIP, DINO, DINOv2, ViT) instead of the bundled ResNet50; see README "Using the paper\'s backbones"'))
    .addOption(new Option('--backbone-type <family>', 'ViT family of --backbone (default: detected from module names)').choices([...VIT_FAMILIES, 'auto']))
    .addOption(new Option('--clip-gelu <mode>', 'CLIP activation: auto = erf GELU at non-native sizes like the paper, quick = keep QuickGELU, erf = always erf').choices(['auto', 'quick', 'erf']).default('auto'))
    .addOption(new Option('--mean <r,g,b>', 'override the ViT input normalisation mean (e.g. 0.5,0.5,0.5)').argParser(triple))
    .addOption(new Option('--std <r,g,b>', 'override the ViT input normalisation std').argParser(triple))
    .addOption(new Option('--image-size <S|WxH>', `working resolution: S (images resized to S x S; default ${RESNET50_IMAGE_SIZE} for ResNet50, 518 for patch-14 ViTs, 512 for others), or a fixed WxH`).argParser(sizeSpec))
    .addOption(new Option('--keep-aspect', 'keep the aspect ratio: long side S, the other side from the batch (median aspect of its images)'))
    .addOption(new Option('--tiles <RxC>', 'cut each image into R x C overlapping tiles of S x S px, each a unit of mutual scoring').argParser(gridSpec).conflicts('tileSize'))
    .addOption(new Option('--tile-size <px>', 'square tiles of px pixels at the images\' native resolution').argParser(positiveInt))
    .addOption(new Option('--tile-overlap <fraction>', 'share of a tile\'s side overlapping its neighbour').argParser(fraction(0, 0.75)).default(0.25))
    .addOption(new Option('--tile-match <mode>', 'position: tile t against tile t of the other images (aligned parts); any: against every tile of the other images (surfaces)').choices(['position', 'any']).default('position'))
    .addOption(new Option('--refine <q>', 'coarse-to-fine: re-score the top fraction q of patches at --refine-size against all patches').argParser(fraction(0, 1, true)))
    .addOption(new Option('--refine-size <px>', 'S of the fine pass (default 2 S)').argParser(positiveInt))
    .addOption(new Option('--resolution <mode>', 'auto: keep the aspect of elongated batches and refine detailed ones (see README); fixed: exactly the size options given').choices(['auto', 'fixed']).default('fixed'))
    .addOption(new Option('--layers <names>', `backbone layers, comma-separated (ResNet50: layer1..layer4, default ${DEFAULT_CONFIG.layers.join(',')}; ViT: 0-based blocks, default four evenly spaced, e.g. 5,11,17,23)`))
    .addOption(new Option('--r-list <degrees>', 'LNAMD aggregation degrees').argParser(intList('--r-list')).default([...DEFAULT_CONFIG.rList]))
    .addOption(new Option('--interval <low,high>', 'MSM interval of sorted minima, fractions of N-1').argParser(interval).default([...DEFAULT_CONFIG.interval]))
    .addOption(new Option('--k-list <windows>', 'RsCIN window sizes (default: by dataset, [1,2,3] or VisA [1,8,9])').argParser(intList('--k-list')))
    .addOption(new Option('--divide-num <n>', 'split each category into n subsets for mutual scoring').argParser(positiveInt).default(1))
    .addOption(new Option('--batch-size <n>', 'images per backbone pass').argParser(positiveInt).default(DEFAULT_CONFIG.batchSize))
    .addOption(new Option('--precision <p>', 'mutual-scoring arithmetic: int8 (~2x faster, within 0.5 points) or fp32 (the reference)').choices(['fp32', 'int8']).default(DEFAULT_CONFIG.precision))
    .addOption(new Option('--threads <n>', 'ONNX Runtime intra-op threads (default: all cores)').argParser(positiveInt));
}

interface ScoringOpts {
  keepAspect?: boolean;
  tiles?: { rows: number; cols: number };
  tileSize?: number;
  tileOverlap: number;
  tileMatch: 'position' | 'any';
  refine?: number;
  refineSize?: number;
  resolution: 'auto' | 'fixed';
  backbone?: string;
  backboneType?: VitFamily | 'auto';
  clipGelu: GeluMode;
  mean?: [number, number, number];
  std?: [number, number, number];
  imageSize?: number | { width: number; height: number };
  layers?: string;
  rList: number[];
  interval: [number, number];
  kList?: number[];
  divideNum: number;
  batchSize: number;
  precision: 'fp32' | 'int8';
  threads?: number;
}

/** S of `--image-size` (the long side of a fixed WxH). */
function sideOf(o: ScoringOpts): number | undefined {
  return typeof o.imageSize === 'object' ? Math.max(o.imageSize.width, o.imageSize.height) : o.imageSize;
}

function configFrom(o: ScoringOpts): MuscConfig {
  const S = sideOf(o) ?? RESNET50_IMAGE_SIZE;
  const tiles = o.tiles ? { grid: o.tiles } : o.tileSize ? { size: o.tileSize } : null;
  return resolveConfig({
    imageSize: S,
    imageShape: typeof o.imageSize === 'object' ? o.imageSize : null,
    keepAspect: o.keepAspect ?? false,
    tiles: tiles && { ...tiles, overlap: o.tileOverlap, match: o.tileMatch },
    refine: o.refine !== undefined ? { fraction: o.refine, imageSize: o.refineSize ?? 2 * S } : null,
    auto: o.resolution === 'auto',
    layers: o.layers ? o.layers.split(',').map((s) => s.trim()) : DEFAULT_CONFIG.layers,
    rList: o.rList,
    interval: o.interval,
    kList: o.kList ?? DEFAULT_CONFIG.kList,
    divideNum: o.divideNum,
    batchSize: o.batchSize,
    precision: o.precision,
  });
}

/** Opens the backbone the options name and the config that goes with it (image size, layers, RsCIN similarity). */
async function prepare(o: ScoringOpts): Promise<{ backbone: Backbone; cfg: MuscConfig; vit: { family: string; modelSha256: string } | null; normalization?: Normalization }> {
  const base = configFrom(o); // fail on bad values before loading a (possibly large) model
  if ((o.mean || o.std) && !o.backbone) throw new MuscError('CONFIG', '--mean/--std apply to ViT backbones (--backbone); the bundled ResNet50 has a fixed normalisation');
  const normalization =
    o.mean || o.std
      ? { kind: 'mean-std' as const, mean: o.mean ?? ([0.485, 0.456, 0.406] as const), std: o.std ?? ([0.229, 0.224, 0.225] as const) }
      : undefined;
  const { backbone, imageSize, vit } = await openBackbone({
    model: o.backbone,
    family: o.backboneType,
    layers: o.layers ? base.layers : undefined,
    imageSize: sideOf(o),
    gelu: o.clipGelu,
    normalization,
    session: { threads: o.threads },
    log: (m) => process.stderr.write(`${m}\n`),
  });
  const refine = base.refine && o.refineSize === undefined ? { ...base.refine, imageSize: 2 * imageSize } : base.refine;
  return { backbone, vit, normalization, cfg: resolveConfig({ ...base, imageSize, refine, layers: backbone.layers, embeddingSimilarity: backbone.embeddingSimilarity }) };
}

const pct = (x: number) => (Number.isFinite(x) ? (100 * x).toFixed(2) : '  n/a');

function printTable(results: readonly Pick<CategoryResult, 'name' | 'n' | 'image' | 'pixel' | 'seconds'>[]): void {
  const head = ['category', 'n', 'I-AUROC', 'I-AP', 'I-F1max', 'P-AUROC', 'P-AP', 'P-F1max', 'PRO', 'AUPRO@.3', 'seconds'];
  const rows = results.map((r) => [
    r.name,
    String(r.n),
    pct(r.image.auroc),
    pct(r.image.ap),
    pct(r.image.f1max),
    pct(r.pixel.auroc),
    pct(r.pixel.ap),
    pct(r.pixel.f1max),
    pct(r.pixel.pro),
    pct(r.pixel.aupro_mvtec),
    r.seconds.toFixed(1),
  ]);
  if (results.length > 1) {
    const m = meanMetrics(results);
    rows.push(['mean', '', pct(m.image.auroc), pct(m.image.ap), pct(m.image.f1max), pct(m.pixel.auroc), pct(m.pixel.ap), pct(m.pixel.f1max), pct(m.pixel.pro), pct(m.pixel.aupro_mvtec), '']);
  }
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  process.stdout.write(`${line(head)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${rows.map(line).join('\n')}\n`);
}

async function runEval(dirs: string[], o: ScoringOpts & DecisionOpts & { json?: boolean; maxImages?: number; report?: string }): Promise<CategoryResult[]> {
  configFrom(o);
  const rule = ruleFrom(o);
  if (o.report) await ensureWritableDir(o.report);
  const signal = interruptSignal();
  const { backbone, cfg } = await prepare(o);
  const results: CategoryResult[] = [];
  const failed: { dir: string; error: string }[] = [];
  let interrupted: unknown = null;
  try {
    for (const dir of dirs) {
      const bar = createProgress(dir.split('/').filter(Boolean).pop() ?? dir);
      try {
        const r = await evaluateCategory(dir, backbone, cfg, {
          onProgress: (s, f) => bar.update(s, f),
          maxImages: o.maxImages,
          kList: o.kList,
          signal,
          threads: o.threads,
        });
        results.push(r);
        if (o.report) {
          const out = dirs.length > 1 ? join(o.report, r.name) : o.report;
          const labels = r.dataset.items.map((it) => it.label);
          await writeRunOutputs(out, r.dataset.items.map((it) => it.imagePath), r.features, r.scores, r.failures, rule, {
            config: r.config,
            backbone: backbone.id,
            title: `musc eval: ${r.name}`,
            signal,
            extras: {
              labels,
              defectTypes: r.dataset.items.map((it) => it.defectType),
              metrics: { image: r.image, pixel: r.pixel, ...imageCurves(r.scores.rscinScores, labels) },
            },
            onImage: (d, t) => bar.update('outputs', d / t),
          });
          process.stderr.write(`report: ${join(out, 'report.html')}\n`);
        }
        for (const f of r.failures) process.stderr.write(`skipped ${f.file}: ${f.error}\n`);
      } catch (err) {
        // One broken category must not throw away the others: report it and go on (Ctrl-C stops the loop).
        if (signal.aborted) {
          interrupted = err;
          break;
        }
        if (!(err instanceof MuscError)) throw err;
        failed.push({ dir, error: err.message });
        process.stderr.write(`musc: ${dir}: ${err.message}\n`);
      } finally {
        bar.stop();
      }
    }
  } finally {
    await backbone.dispose();
  }
  if (results.length > 0) {
    if (o.json) {
      const strip = (r: CategoryResult) => ({ image: r.image, pixel: r.pixel, n: r.n, seconds: r.seconds, times: r.times });
      const categories = Object.fromEntries(results.map((r) => [r.name, strip(r)]));
      const config = results.length === 1 ? results[0].config : cfg;
      const backboneId = backbone.id;
      process.stdout.write(`${JSON.stringify({ categories, mean: meanMetrics(results), config, backbone: backboneId, ...(failed.length ? { failed } : {}) })}\n`);
    } else {
      printTable(results);
    }
  }
  if (interrupted) throw interrupted;
  if (failed.length > 0) {
    throw new MuscError('EVAL_FAILED', `${failed.length} of ${dirs.length} categories could not be evaluated: ${failed.map((f) => f.dir).join(', ')}`);
  }
  return results;
}

/** Decision options shared by `run` and `eval --report`. */
function addDecisionOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--threshold <score>', 'fixed decision threshold on the RsCIN score (0..1)').argParser(Number).conflicts('defectRate'))
    .addOption(new Option('--defect-rate <fraction>', 'expected share of defective images; flags that many top scores').argParser(Number).conflicts('threshold'))
    .addOption(new Option('--threshold-method <method>', 'automatic threshold without labels').choices(['otsu', 'mad']).default('otsu'));
}

interface DecisionOpts {
  threshold?: number;
  defectRate?: number;
  thresholdMethod: 'otsu' | 'mad';
}

/** The decision rule, validated now so a bad value fails before any scoring work. */
function ruleFrom(o: DecisionOpts): ThresholdRule {
  const rule: ThresholdRule =
    o.threshold !== undefined
      ? { method: 'fixed', value: o.threshold }
      : o.defectRate !== undefined
        ? { method: 'rate', defectRate: o.defectRate }
        : { method: o.thresholdMethod };
  chooseThreshold([0, 1], rule);
  return rule;
}

/** An AbortSignal that fires on the first Ctrl-C (a second one exits at once). */
function interruptSignal(): AbortSignal {
  const ctrl = new AbortController();
  process.once('SIGINT', () => {
    process.stderr.write('\ninterrupted: stopping after the current step (Ctrl-C again to quit now)\n');
    ctrl.abort(new MuscError('INTERRUPTED', 'interrupted by the user; complete outputs were kept, nothing half-written'));
    process.once('SIGINT', () => process.exit(130));
  });
  process.once('SIGTERM', () => ctrl.abort(new MuscError('INTERRUPTED', 'terminated; complete outputs were kept, nothing half-written')));
  return ctrl.signal;
}

/** What musc-ts reads from a ViT export, printed by `models inspect` (silent for non-ViT models). */
function printVitSummary(bytes: Uint8Array, file: string): void {
  let info: ReturnType<typeof analyzeVit>;
  try {
    info = analyzeVit(bytes, file);
  } catch (err) {
    process.stderr.write(`not usable as a ViT backbone: ${errorText(err).split('\n')[0]}\n`);
    return;
  }
  const family = detectVitFamily(info);
  const pos = info.positionEmbedding;
  const lines = [
    `ViT: family ${family ?? 'unknown (pass --backbone-type)'}, patch ${info.patchSize}, width ${info.width}, ${info.blockOutputs.length} blocks`,
    `  positional embedding: ${pos ? `${pos.name} [${pos.dims.join(', ')}], native ${info.nativeSize} px (${pos.grid}x${pos.grid})${pos.interpolatedInGraph ? ', interpolated in the graph' : ', re-baked for other sizes'}` : 'not found (other sizes must be exported as such)'}`,
    `  final norm after the last block: ${info.finalNorm ? `LayerNorm, eps ${info.finalNorm.epsilon}` : 'none found'}; QuickGELU activations: ${info.quickGeluCount}`,
    `  default layers: ${defaultVitLayers(info.blockOutputs.length).join(',')}; block outputs: ${info.blockOutputs.map((b, k) => `${k}=${b}`).join(' ')}`,
  ];
  process.stderr.write(`${lines.join('\n')}\n`);
}

/** Builds the CLI program (exported for tests). */
export function buildProgram(): Command {
  const program = new Command();
  program.name('musc').description('Zero-shot anomaly classification and segmentation by mutual scoring of unlabeled images (MuSc)');

  addDecisionOptions(
    addScoringOptions(
      program
        .command('eval')
        .description('score labelled categories (MVTec AD / BTAD / VisA layout) zero-shot and report metrics')
        .argument('<category-dir...>', 'category folders, e.g. data/mvtec_ad/bottle')
        .option('--json', 'print one JSON object on stdout instead of a table')
        .option('--report <dir>', 'also write scores, overlays and report.html (with metrics and curves) to <dir>')
        .addOption(new Option('--max-images <n>', 'score a stratified subset of at most n images per category').argParser(positiveInt)),
    ),
  ).action(async (dirs: string[], o: ScoringOpts & DecisionOpts & { json?: boolean; maxImages?: number; report?: string }) => {
    await runEval(dirs, o);
  });

  addDecisionOptions(
    addScoringOptions(
      program
        .command('run')
        .description('score a batch of unlabeled images against each other; write scores, heatmaps and report.html')
        .argument('<inputs...>', 'image folders (searched recursively), files or quoted globs')
        .requiredOption('--out <dir>', 'output folder'),
    ),
  ).action(async (inputs: string[], o: ScoringOpts & DecisionOpts & { out: string }) => {
    configFrom(o);
    const rule = ruleFrom(o);
    const signal = interruptSignal();
    const { backbone, cfg } = await prepare(o);
    const bar = createProgress('run');
    try {
      const res = await runBatch(inputs, o.out, backbone, cfg, rule, {
        signal,
        threads: o.threads,
        onProgress: (s, f) => bar.update(s, f),
        onImage: (d, t) => bar.update('outputs', d / t),
      });
      bar.stop();
      for (const f of res.failures) process.stderr.write(`skipped ${f.file}: ${f.error}\n`);
      const flagged = res.rows.filter((r) => r.decision === 'anomalous').length;
      const scored = res.rows.filter((r) => r.decision !== 'error').length;
      process.stdout.write(
        `${scored} images scored, ${flagged} anomalous (threshold ${res.threshold.value.toFixed(4)}, ${res.threshold.method}), ${res.failures.length} skipped\n` +
          `results: ${join(o.out, 'scores.csv')}\nreport:  ${join(o.out, 'report.html')}\n`,
      );
    } finally {
      bar.stop();
      await backbone.dispose();
    }
  });

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
    const { backbone, cfg } = await prepare(o);
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

  const bank = program.command('bank').description('feature banks of reference images, for scoring new images one at a time');
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
  ).action(async (inputs: string[], o: ScoringOpts & DecisionOpts & { out: string; reference: BankReference; encoding: BankEncoding }) => {
    configFrom(o);
    // Good banks default to median + 3·MAD (buildBank) unless a rule is given; `otsu` is commander's default.
    const ruleGiven = o.threshold !== undefined || o.defectRate !== undefined || o.thresholdMethod !== 'otsu';
    const rule = o.reference === 'good' && !ruleGiven ? undefined : ruleFrom(o);
    const files = await collectImages(inputs);
    const signal = interruptSignal();
    const { backbone, cfg, vit, normalization } = await prepare(o);
    const bar = createProgress('bank');
    try {
      const t0 = performance.now();
      const { features, failures } = await extractFeatures(files, backbone, cfg, { signal, onProgress: (st, f) => bar.update(st, f) });
      for (const f of failures) process.stderr.write(`skipped ${f.file}: ${f.error}\n`);
      const built = await buildBank(features, cfg, {
        backbone: bankBackboneOf(backbone, { model: o.backbone, family: o.backboneType, gelu: o.clipGelu, normalization }, vit),
        reference: o.reference,
        encoding: o.encoding,
        threshold: rule,
        threads: o.threads,
        signal,
      });
      const bytes = await writeBank(o.out, built);
      bar.stop();
      process.stdout.write(
        `bank ${o.out}: ${built.images.length} ${o.reference} images, ${(bytes / 2 ** 20).toFixed(1)} MiB (${o.encoding}), ` +
          `threshold ${built.threshold.value.toFixed(4)} (${built.threshold.method}), ${failures.length} skipped, ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
      );
    } finally {
      bar.stop();
      await backbone.dispose();
    }
  });

  program
    .command('score')
    .description('score new images against a bank (each image costs O(bank size), not a full re-run)')
    .argument('<inputs...>', 'image folders (searched recursively), files or quoted globs')
    .requiredOption('--bank <file.mbank>', 'bank built with `musc bank build`')
    .option('--out <dir>', 'also write scores.csv and heatmap overlays to <dir>')
    .option('--json', 'print one JSON object on stdout')
    .option('--update', 'add the scored images to the bank (a rolling window, see --max-bank) and save it')
    .addOption(new Option('--max-bank <n>', 'with --update: keep at most n images (oldest leave first)').argParser(positiveInt))
    .addOption(new Option('--threshold <score>', "override the bank's decision threshold").argParser(Number))
    .addOption(new Option('--backbone <model.onnx>', "path of the bank's ViT export if it moved (checked by SHA-256)"))
    .addOption(new Option('--precision <p>', 'GEMM arithmetic (default: int8 for int8 banks, else fp32)').choices(['fp32', 'int8']))
    .addOption(new Option('--threads <n>', 'ONNX Runtime intra-op threads (default: all cores)').argParser(positiveInt))
    .action(async (inputs: string[], o: { bank: string; out?: string; json?: boolean; update?: boolean; maxBank?: number; threshold?: number; backbone?: string; precision?: 'fp32' | 'int8'; threads?: number }) => {
      if (o.out) await ensureWritableDir(o.out);
      const files = await collectImages(inputs);
      const signal = interruptSignal();
      const scorer = await Musc.open({ bank: o.bank, backboneModel: o.backbone, precision: o.precision, threshold: o.threshold, threads: o.threads, log: (m) => process.stderr.write(`${m}\n`) });
      try {
        const t0 = performance.now();
        const { results, failures } = await scorer.score(files, { update: o.update, maxBank: o.maxBank, signal });
        const seconds = (performance.now() - t0) / 1000;
        for (const f of failures) process.stderr.write(`skipped ${f.file}: ${f.error}\n`);
        if (o.update) {
          await scorer.save(o.bank);
          process.stderr.write(`bank ${o.bank} now holds ${scorer.bank.images.length} images\n`);
        }
        if (o.out) {
          const stems = outputStems(results.map((r) => r.name));
          const scale = bankHeatScale(scorer.bank);
          const rows: ScoreRow[] = [];
          for (const [i, r] of results.entries()) {
            const overlay = `${stems[i]}_overlay.png`;
            await renderOverlay(r.name, r.map, r, scale, join(o.out, overlay));
            rows.push({ path: r.name, imageScore: r.imageScore, rscinScore: r.score, decision: r.decision, threshold: r.threshold, region: strongestRegion(r.map, r, r.originalWidth, r.originalHeight), overlay, map: null });
          }
          for (const f of failures) rows.push({ path: f.file, imageScore: null, rscinScore: null, decision: 'error', threshold: null, region: null, overlay: null, map: null, error: f.error });
          await writeAtomic(join(o.out, 'scores.csv'), scoresCsv(rows));
        }
        if (o.json) {
          const out = results.map((r) => ({ path: r.name, score: r.score, imageScore: r.imageScore, decision: r.decision, threshold: r.threshold }));
          process.stdout.write(`${JSON.stringify({ bank: o.bank, reference: scorer.bank.reference, bankImages: scorer.bank.images.length, seconds, results: out, failures })}\n`);
        } else {
          for (const r of results) process.stdout.write(`${r.decision.padEnd(9)}  ${r.score.toFixed(4)}  ${r.name}\n`);
          process.stdout.write(`${results.length} scored against ${scorer.bank.images.length} bank images in ${seconds.toFixed(2)} s (threshold ${scorer.threshold.toFixed(4)}), ${failures.length} skipped\n`);
        }
        if (results.length === 0 && failures.length > 0) throw new MuscError('NO_IMAGES', 'no image could be scored');
      } finally {
        await scorer.dispose();
      }
    });

  addServeCommand(program);

  const models = program.command('models').description('inspect ONNX backbones');
  models
    .command('inspect')
    .description('list the tensors of an ONNX model that can be used as feature layers')
    .argument('<model.onnx>')
    .option('--filter <text>', 'only tensors whose name, node name or op contains this text')
    .option('--all', 'list every tensor, not only Add/Relu/LayerNormalization/Conv outputs')
    .action(async (file: string, o: { filter?: string; all?: boolean }) => {
      const bytes = new Uint8Array(await readFile(file));
      printVitSummary(bytes, file);
      const interesting = new Set(['Add', 'Relu', 'LayerNormalization', 'Conv', 'Gelu', 'Concat', 'MatMul', 'Gemm', 'Identity', 'GlobalAveragePool', 'Flatten']);
      const rows = listTensorCandidates(bytes, file).filter(
        (c) => (o.all || interesting.has(c.opType)) && (!o.filter || `${c.name} ${c.nodeName} ${c.opType}`.includes(o.filter)),
      );
      for (const c of rows) {
        process.stdout.write(`${String(c.index).padStart(5)}  ${c.opType.padEnd(18)} ${c.name}${c.shape ? `  [${c.shape.map((d) => d ?? '?').join(', ')}]` : ''}\n`);
      }
      process.stderr.write(`${rows.length} tensors; use these names (or block:K rules) with OnnxFeatureExtractor.create(model, names)\n`);
    });

  return program;
}

/** Entry point: parses argv and maps errors to exit codes (2 for user errors). */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    const program = buildProgram();
    // Usage errors exit 2 like every other user error (commander would exit 1); help/version exit 0.
    program.exitOverride();
    for (const c of program.commands) c.exitOverride();
    for (const c of program.commands.flatMap((x) => x.commands)) c.exitOverride();
    await program.parseAsync([...argv]);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof MuscError) {
      process.stderr.write(`musc: ${err.message}\n`);
      return err.code === 'INTERRUPTED' ? 130 : 2;
    }
    process.stderr.write(`musc: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : errorText(err)}\n`);
    return 1;
  }
}
