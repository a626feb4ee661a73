/** Options shared by the CLI commands, and their mapping to the library's options. */
import { Option, type Command } from 'commander';
import type { ScoringOptions } from '../api/options.js';
import { RESNET50_IMAGE_SIZE } from '../backbone/open.js';
import { VIT_FAMILIES, type GeluMode, type VitFamily } from '../backbone/vit.js';
import type { ImageScoreRule } from '../pipeline/maps.js';
import { DEFAULT_CONFIG } from '../pipeline/musc.js';
import { ConfigError } from '../errors.js';
import type { ThresholdRule } from '../outputs/thresholds.js';
import { gridSpec, interval, intList, numberIn, positiveInt, sizeSpec, triple } from './parsers.js';

/** Options of the scoring commands (`run`, `eval`, `demo`, `bank build`). */
export function addScoringOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--backbone <model.onnx>', 'a ViT export (CLIP, DINO, DINOv2, ViT) instead of the bundled ResNet50; see README "Using the paper\'s backbones"'))
    .addOption(new Option('--backbone-type <family>', 'ViT family of --backbone (default: detected from module names)').choices([...VIT_FAMILIES, 'auto']))
    .addOption(new Option('--clip-gelu <mode>', 'CLIP activation: auto = erf GELU at non-native sizes like the paper, quick = keep QuickGELU, erf = always erf').choices(['auto', 'quick', 'erf']).default('auto'))
    .addOption(new Option('--mean <r,g,b>', 'override the ViT input normalisation mean (e.g. 0.5,0.5,0.5)').argParser(triple()))
    .addOption(new Option('--std <r,g,b>', 'override the ViT input normalisation std (positive)').argParser(triple(true)))
    .addOption(new Option('--image-size <S|WxH>', `working resolution: S in 32..2048 (images resized to S x S; default ${RESNET50_IMAGE_SIZE} for ResNet50, 518 for patch-14 ViTs, 512 for others), or a fixed WxH`).argParser(sizeSpec))
    .addOption(new Option('--keep-aspect', 'keep the aspect ratio: long side S, the other side from the batch (median aspect of its images)'))
    .addOption(new Option('--tiles <RxC>', 'cut each image into R x C overlapping tiles of S x S px, each a unit of mutual scoring').argParser(gridSpec).conflicts('tileSize'))
    .addOption(new Option('--tile-size <px>', "square tiles of px pixels at the images' native resolution").argParser(positiveInt))
    // No commander defaults for the two tile options: set without tiles they are refused (scoringFrom), not ignored.
    .addOption(new Option('--tile-overlap <fraction>', "with tiles: share of a tile's side overlapping its neighbour, in [0, 0.75] (default: 0.25)").argParser(numberIn(0, 0.75)))
    .addOption(new Option('--tile-match <mode>', 'with tiles: position = tile t against tile t of the other images (aligned parts); any = against every tile of the other images (surfaces) (default: position)').choices(['position', 'any']))
    .addOption(new Option('--refine <q>', 'coarse-to-fine: re-score the top fraction q, in (0, 1], of patches at --refine-size against all patches').argParser(numberIn(0, 1, 'a fraction of the patches', { min: true })))
    .addOption(new Option('--refine-size <px>', 'S of the fine pass (default 2 S)').argParser(positiveInt))
    .addOption(new Option('--resolution <mode>', 'auto (default unless --image-size is given): keep the aspect of elongated batches and refine detailed ones (see README); fixed: exactly the size options given').choices(['auto', 'fixed']))
    .addOption(new Option('--image-score <rule>', "excess: the max of a map's excess over the batch's typical map (per-pixel median); max: the map's max (the paper's)").choices(['excess', 'max']).default('excess'))
    .addOption(new Option('--layers <names>', `backbone layers, comma-separated (ResNet50: layer1..layer4, default ${DEFAULT_CONFIG.layers.join(',')}; ViT: 0-based blocks, default four evenly spaced, e.g. 5,11,17,23)`))
    .addOption(new Option('--r-list <degrees>', 'LNAMD aggregation degrees, odd and ≥ 1').argParser(intList('odd and ≥ 1', (r) => r >= 1 && r % 2 === 1)).default([...DEFAULT_CONFIG.rList]))
    .addOption(new Option('--interval <low,high>', 'MSM interval of sorted minima, fractions of N-1 (0 ≤ low < high ≤ 1)').argParser(interval).default([...DEFAULT_CONFIG.interval]))
    .addOption(new Option('--k-list <windows>', 'RsCIN window sizes, each ≥ 1 (default: 1, each image\'s own score, with --image-score excess; with max by dataset, [1,2,3] or VisA [1,8,9])').argParser(intList('each ≥ 1', (k) => k >= 1)))
    .addOption(new Option('--divide-num <n>', 'split each category into n subsets for mutual scoring').argParser(positiveInt).default(1))
    .addOption(new Option('--batch-size <n>', 'images per backbone pass').argParser(positiveInt).default(DEFAULT_CONFIG.batchSize))
    .addOption(new Option('--precision <p>', 'mutual-scoring arithmetic: int8 (2.3–3.3× faster, within 0.1 points of fp32) or fp32 (the reference)').choices(['fp32', 'int8']).default(DEFAULT_CONFIG.precision))
    .addOption(new Option('--threads <n>', 'ONNX Runtime intra-op threads (default: all cores)').argParser(positiveInt));
}

/** Parsed scoring options. */
export interface ScoringOpts {
  keepAspect?: boolean;
  tiles?: { rows: number; cols: number };
  tileSize?: number;
  tileOverlap?: number;
  tileMatch?: 'position' | 'any';
  refine?: number;
  refineSize?: number;
  resolution?: 'auto' | 'fixed';
  imageScore: ImageScoreRule;
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

/** Flags that only mean something beside another one: refused alone rather than silently ignored. */
function checkFlagPairs(o: ScoringOpts): void {
  const tiled = o.tiles !== undefined || o.tileSize !== undefined;
  if (!tiled && (o.tileOverlap !== undefined || o.tileMatch !== undefined)) {
    throw new ConfigError(`${o.tileOverlap !== undefined ? '--tile-overlap' : '--tile-match'} applies to tiles: add --tiles RxC or --tile-size PX`);
  }
  if (o.refineSize !== undefined && o.refine === undefined) {
    throw new ConfigError('--refine-size applies to --refine q (the fine size of coarse-to-fine scoring; --resolution auto picks its own)');
  }
  if (o.tileSize !== undefined && o.imageSize !== undefined) {
    throw new ConfigError("--image-size does not apply to --tile-size (its tiles are cut at the images' native resolution); use --tiles RxC for tiles of --image-size");
  }
}

/** The library's scoring options from the parsed flags. */
export function scoringFrom(o: ScoringOpts, hooks: Pick<ScoringOptions, 'signal' | 'onProgress'> = {}): ScoringOptions {
  checkFlagPairs(o);
  return {
    backbone: { model: o.backbone, family: o.backboneType, gelu: o.clipGelu, mean: o.mean, std: o.std },
    imageSize: o.imageSize,
    keepAspect: o.keepAspect,
    tiles: o.tiles || o.tileSize ? { ...(o.tiles ? { grid: o.tiles } : { size: o.tileSize }), overlap: o.tileOverlap, match: o.tileMatch } : undefined,
    refine: o.refine !== undefined ? { fraction: o.refine, imageSize: o.refineSize } : undefined,
    resolution: o.resolution,
    imageScore: o.imageScore,
    layers: o.layers ? o.layers.split(',').map((s) => s.trim()) : undefined,
    rList: o.rList,
    interval: o.interval,
    kList: o.kList,
    divideNum: o.divideNum,
    batchSize: o.batchSize,
    precision: o.precision,
    threads: o.threads,
    log: (m) => process.stderr.write(`${m}\n`),
    ...hooks,
  };
}

/**
 * Decision options (`run`, `eval --report`, `bank build`); `maxThreshold` is 2 where raw scores of
 * good banks apply, and `methodDefault` says in `--help` what the default method depends on.
 */
export function addDecisionOptions(cmd: Command, maxThreshold = 1, methodDefault?: string): Command {
  const scoreRange = maxThreshold === 1 ? 'the RsCIN score' : 'RsCIN score 0..1, or raw score 0..2 for good banks';
  return cmd
    .addOption(new Option('--threshold <score>', `fixed decision threshold (${scoreRange})`).argParser(numberIn(0, maxThreshold, scoreRange)).conflicts('defectRate'))
    .addOption(new Option('--defect-rate <fraction>', 'expected share of defective images, in (0, 1); flags that many top scores').argParser(numberIn(0, 1, 'a fraction of the images', { min: true, max: true })).conflicts('threshold'))
    .addOption(new Option('--threshold-method <method>', 'automatic threshold without labels').choices(['otsu', 'mad']).default('otsu', methodDefault));
}

/** Parsed decision options. */
export interface DecisionOpts {
  threshold?: number;
  defectRate?: number;
  thresholdMethod: 'otsu' | 'mad';
}

/** The decision rule the flags name. */
export function ruleFrom(o: DecisionOpts): ThresholdRule {
  return o.threshold !== undefined
    ? { method: 'fixed', value: o.threshold }
    : o.defectRate !== undefined
      ? { method: 'rate', defectRate: o.defectRate }
      : { method: o.thresholdMethod };
}

/** `--overwrite` of the commands that write an output folder. */
export function addOverwriteOption(cmd: Command): Command {
  return cmd.option('--overwrite', 'write into a non-empty output folder that musc did not write (its other files are kept)');
}
