/**
 * Vision Transformer backbones (CLIP, DINO, DINOv2, plain ViT) from the user's own
 * ONNX exports (HF Optimum, `torch.onnx.export` of open_clip / timm / torch.hub).
 * What MuSc takes from each family (spec §1.1, §2):
 *
 * | family  | input norm   | resize   | block tokens        | RsCIN embedding                        |
 * |---------|--------------|----------|---------------------|----------------------------------------|
 * | clip    | CLIP mean/std| bicubic  | raw residual stream | graph's projected image output, L2-normed |
 * | dino    | ImageNet     | bilinear | after the final norm| final-normed CLS, raw dot products      |
 * | dinov2  | ImageNet     | bilinear | after the final norm| final-normed CLS, raw dot products      |
 * | vit     | ImageNet     | bilinear | after the final norm| final-normed CLS, cosine (not in the paper) |
 *
 * At an input size whose patch grid differs from the export's positional embedding,
 * the model is re-baked in memory when it is opened (bicubic-resized table, see vit-graph.ts):
 * the file is decoded once, analysed, rewritten and encoded once for ONNX Runtime, which
 * costs less than reading and checksumming a cached copy would.
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { ConfigError, ModelError, errorText } from '../errors.js';
import type { ResizeKernel } from '../image/io.js';
import { CLIP_MEAN_STD, IMAGENET_MEAN_STD, normalizeBatch, type Normalization } from '../image/normalize.js';
import type { FeatureMap, LayerBatch } from '../tensor.js';
import type { Backbone, BackboneOutput } from './backbone.js';
import { resolveTensorRule } from './graph-surgery.js';
import { sha256 } from './model-cache.js';
import { OnnxFeatureExtractor, type SessionOptions } from './onnx-backbone.js';
import { OnnxGraph } from './onnx-graph.js';
import { analyzeVit, rewriteVit, type LayerNormParams, type VitGraphInfo } from './vit-graph.js';

/** ViT families MuSc knows how to read. */
export const VIT_FAMILIES = ['clip', 'dino', 'dinov2', 'vit'] as const;
/** One of `VIT_FAMILIES`. */
export type VitFamily = (typeof VIT_FAMILIES)[number];

/** How MuSc reads one family (see the table in the module doc). */
export interface VitFamilyDescriptor {
  readonly family: VitFamily;
  readonly normalization: Normalization;
  readonly resizeKernel: ResizeKernel;
  /** `raw`: residual stream as is (CLIP); `final-norm`: passed through the model's last LayerNorm. */
  readonly blockTokens: 'raw' | 'final-norm';
  /** `projection`: the graph's `[B, D]` image output (CLIP); `normed-cls`: final-normed CLS token. */
  readonly embedding: 'projection' | 'normed-cls';
  readonly embeddingSimilarity: 'cosine' | 'dot';
}

export const VIT_FAMILY_DESCRIPTORS: Readonly<Record<VitFamily, VitFamilyDescriptor>> = {
  clip: { family: 'clip', normalization: CLIP_MEAN_STD, resizeKernel: 'cubic', blockTokens: 'raw', embedding: 'projection', embeddingSimilarity: 'cosine' },
  dino: { family: 'dino', normalization: IMAGENET_MEAN_STD, resizeKernel: 'linear', blockTokens: 'final-norm', embedding: 'normed-cls', embeddingSimilarity: 'dot' },
  dinov2: { family: 'dinov2', normalization: IMAGENET_MEAN_STD, resizeKernel: 'linear', blockTokens: 'final-norm', embedding: 'normed-cls', embeddingSimilarity: 'dot' },
  // Not in the paper: plain ViTs are read like DINO, but with cosine RsCIN, which cannot divide by a ≤ 0 row sum.
  vit: { family: 'vit', normalization: IMAGENET_MEAN_STD, resizeKernel: 'linear', blockTokens: 'final-norm', embedding: 'normed-cls', embeddingSimilarity: 'cosine' },
};

/**
 * CLIP activation at non-native sizes (spec §2.2): `auto` does what the reference does
 * (OpenAI QuickGELU becomes exact erf GELU when the input size differs from the export's
 * native size), `quick` keeps the exported QuickGELU, `erf` always uses erf GELU.
 */
export type GeluMode = 'auto' | 'quick' | 'erf';

/** Options of `createVitBackbone`. */
export interface VitBackboneOptions {
  /** Path of the ONNX export (one image input `[B, 3, H, W]`, dynamic H/W for other sizes). */
  readonly model: string;
  /** Family; `auto` (default) guesses from module names and fails with a clear message when it cannot. */
  readonly family?: VitFamily | 'auto';
  /** 0-based block indices as strings (`'5'`) or tensor names; default: four evenly spaced blocks. */
  readonly layers?: readonly string[];
  /** Working resolution S; the grid is floor(S / patch). Default: `defaultVitImageSize(patch)` (the paper's 518 / 512). */
  readonly imageSize?: number;
  readonly gelu?: GeluMode;
  /** Overrides the family's input normalisation (e.g. mean = std = 0.5 for some HF ViTs). */
  readonly normalization?: Normalization;
  readonly session?: SessionOptions;
  readonly log?: (msg: string) => void;
}

/** What `createVitBackbone` found and decided, for logs, reports and banks. */
export interface VitBackboneInfo {
  readonly family: VitFamily;
  readonly familyDetected: boolean;
  readonly patchSize: number;
  readonly width: number;
  readonly depth: number;
  readonly nativeSize: number | null;
  /** Working resolution S the model was prepared for. */
  readonly imageSize: number;
  readonly grid: number;
  readonly blocks: readonly string[];
  readonly rebaked: boolean;
  readonly erfGelu: boolean;
  readonly modelSha256: string;
  /** The export that was opened (re-baking happens in memory, see `rebaked`). */
  readonly modelPath: string;
}

/** The reference's block choice: four evenly spaced blocks, e.g. 24 → [5, 11, 17, 23], 12 → [2, 5, 8, 11]. */
export function defaultVitLayers(depth: number): string[] {
  const ks = [1, 2, 3, 4].map((i) => Math.max(0, Math.round((depth * i) / 4) - 1));
  return [...new Set(ks)].map(String);
}

/** The paper's working resolution: 518 for patch-14 models, 512 otherwise (spec §2.5). */
export function defaultVitImageSize(patchSize: number): number {
  return patchSize === 14 ? 518 : 512;
}

/** Guesses the family from module and parameter names; `null` when nothing is telling. */
export function detectVitFamily(info: Pick<VitGraphInfo, 'namesText' | 'quickGeluCount'>): VitFamily | null {
  const t = info.namesText;
  if (info.quickGeluCount > 0 || /(^|[/._])(ln_pre|pre_layrnorm|resblocks|visual_projection|class_embedding)([/._]|$)/m.test(t)) return 'clip';
  if (/dinov2|(^|[/._])(ls1|ls2|lambda1|layer_scale\d?|register_tokens)([/._]|$)/im.test(t)) return 'dinov2';
  if (/(^|[/._])dino([/._]|$)/im.test(t)) return 'dino';
  if (/(^|[/._])(vit|encoder_layer_\d+)([/._]|$)/m.test(t)) return 'vit';
  return null;
}

function layerNormRows(data: Float32Array, rows: number, norm: LayerNormParams, out: Float32Array): void {
  const C = norm.scale.length;
  for (let r = 0; r < rows; r++) {
    const o = r * C;
    let mean = 0;
    for (let c = 0; c < C; c++) mean += data[o + c];
    mean /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (data[o + c] - mean) ** 2;
    const inv = 1 / Math.sqrt(v / C + norm.epsilon);
    for (let c = 0; c < C; c++) out[o + c] = (data[o + c] - mean) * inv * norm.scale[c] + norm.bias[c];
  }
}

/** Token tensor of one block as `[B, T, C]`, whichever of BTC / TBC (open_clip LND) the export uses. */
function tokensBtc(map: FeatureMap, B: number, C: number, name: string): { data: Float32Array; T: number } {
  const d = map.dims;
  if (d.length !== 3 || d[2] !== C) throw new ModelError(`block output ${name} has shape [${d.join(', ')}], expected [batch, tokens, ${C}]`);
  if (d[0] === B) return { data: map.data, T: d[1] };
  if (d[1] !== B) throw new ModelError(`block output ${name} has shape [${d.join(', ')}] for a batch of ${B}`);
  const T = d[0];
  const out = new Float32Array(map.data.length);
  for (let t = 0; t < T; t++) for (let b = 0; b < B; b++) out.set(map.data.subarray((t * B + b) * C, (t * B + b + 1) * C), (b * T + t) * C);
  return { data: out, T };
}

/**
 * Opens a ViT export as a MuSc backbone.
 * @throws ModelError for non-ViT models, missing blocks or norms; ConfigError for bad layers or sizes.
 * @example
 * const bb = await createVitBackbone({ model: 'dinov2_vitb14.onnx', family: 'dinov2', imageSize: 518 });
 */
export async function createVitBackbone(opts: VitBackboneOptions): Promise<Backbone & { info: VitBackboneInfo }> {
  const log = opts.log ?? (() => {});
  const source = opts.model;
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(source));
  } catch (err) {
    throw new ModelError(`cannot read the backbone model ${JSON.stringify(source)}: ${errorText(err)}`, { cause: err });
  }
  const graph = OnnxGraph.decode(bytes, source);
  const info = analyzeVit(graph);
  const detected = detectVitFamily(info);
  const family = opts.family && opts.family !== 'auto' ? opts.family : detected;
  if (!family) {
    throw new ModelError(`${source}: cannot tell which ViT family this is from its module names; pass --backbone-type ${VIT_FAMILIES.join('|')}`);
  }
  const desc = VIT_FAMILY_DESCRIPTORS[family];
  const depth = info.blockOutputs.length;
  const P = info.patchSize;
  const S = opts.imageSize ?? defaultVitImageSize(P);
  const grid = Math.floor(S / P);
  if (grid < 2) throw new ConfigError(`image size ${S} gives a ${grid}x${grid} patch grid for patch size ${P}; use at least ${2 * P}`);
  const layers = opts.layers ?? defaultVitLayers(depth);
  const blocks = layers.map((l) => {
    if (/^\d+$/.test(l)) {
      const k = Number(l);
      if (k >= depth) throw new ConfigError(`layer ${k} does not exist: ${basename(source)} has ${depth} blocks (0-based indices 0..${depth - 1})`);
      return info.blockOutputs[k];
    }
    return resolveTensorRule(info.candidates, l, source);
  });
  const finalNorm = info.finalNorm;
  if (desc.blockTokens === 'final-norm' && !finalNorm) {
    throw new ModelError(
      `${source}: ${family} tokens are taken after the model's final LayerNorm, but no LayerNorm follows the last block (${info.blockOutputs[depth - 1]}). ` +
        'Export the backbone with its final norm, or use --backbone-type clip to take raw block outputs.',
    );
  }
  const pos = info.positionEmbedding;
  const rebakeGrid = pos && !pos.interpolatedInGraph && pos.grid !== grid ? grid : undefined;
  const gelu = opts.gelu ?? 'auto';
  const erfGelu = info.quickGeluCount > 0 && (gelu === 'erf' || (gelu === 'auto' && family === 'clip' && info.nativeSize !== S));
  const digest = sha256(bytes);
  if (rebakeGrid !== undefined || erfGelu) {
    log(
      `re-baking ${basename(source)} in memory: ${rebakeGrid !== undefined ? `positional embedding ${pos?.grid}² → ${rebakeGrid}² (bicubic)` : ''}` +
        `${rebakeGrid !== undefined && erfGelu ? ', ' : ''}${erfGelu ? `${info.quickGeluCount} QuickGELU → erf GELU` : ''}`,
    );
    rewriteVit(graph, info, { grid: rebakeGrid, erfGelu });
  }

  const lastBlock = info.blockOutputs[depth - 1];
  const rank2Outputs = info.outputs.filter((o) => o.name && o.rank !== 3 && !info.blockOutputs.includes(o.name)).map((o) => o.name);
  const embeddingOutput =
    desc.embedding === 'projection'
      ? (rank2Outputs.find((o) => /image_embeds|image_features|embed|pooled|proj/i.test(o)) ?? rank2Outputs[0] ?? null)
      : null;
  const fetches = [...new Set([...blocks, ...(desc.embedding === 'normed-cls' || !embeddingOutput ? [lastBlock] : []), ...(embeddingOutput ? [embeddingOutput] : [])])];
  let extractor: OnnxFeatureExtractor;
  try {
    extractor = await OnnxFeatureExtractor.create(graph, fetches, { ...opts.session, source });
  } catch (err) {
    throw new ModelError(`${source}: ${errorText(err)}`, { cause: err });
  }
  const normalization = opts.normalization ?? desc.normalization;
  const C = info.width;
  const [gh, gw] = [grid, grid]; // square today; LNAMD and the maps take gh ≠ gw
  const G2 = gh * gw;
  const vitInfo: VitBackboneInfo = {
    family,
    familyDetected: detected === family,
    patchSize: P,
    width: C,
    depth,
    nativeSize: info.nativeSize,
    imageSize: S,
    grid,
    blocks,
    rebaked: rebakeGrid !== undefined,
    erfGelu,
    modelSha256: digest,
    modelPath: source,
  };
  let warnedFallback = false;

  async function extract(images: Parameters<Backbone['extract']>[0]): Promise<BackboneOutput> {
    const B = images.length;
    let out: Record<string, FeatureMap>;
    try {
      out = await extractor.run(normalizeBatch(images, normalization), fetches);
    } catch (err) {
      throw new ModelError(
        `${source} failed at ${S}x${S}: ${errorText(err).split('\n')[0]}. ` +
          'If the export has a fixed input size, re-export it with dynamic height/width axes (torch.onnx.export(..., dynamic_axes=...)).',
        { cause: err },
      );
    }
    // Patch tokens go to LNAMD as they come, token-major [B, gh, gw, C]; only CLS/register rows are dropped.
    const layerMaps: LayerBatch[] = blocks.map((name) => {
      const { data, T } = tokensBtc(out[name], B, C, name);
      if (T < G2) throw new ModelError(`block output ${name} has ${T} tokens, fewer than the ${gh}x${gw} patch grid at ${S} px`);
      const prefix = T - G2; // CLS (+ register tokens); patches come last
      const tokens = new Float32Array(B * G2 * C);
      for (let b = 0; b < B; b++) {
        const src = data.subarray((b * T + prefix) * C, (b + 1) * T * C);
        const dst = tokens.subarray(b * G2 * C, (b + 1) * G2 * C);
        if (desc.blockTokens === 'final-norm') layerNormRows(src, G2, finalNorm!, dst);
        else dst.set(src);
      }
      return { data: tokens, dims: [B, gh, gw, C], layout: 'hwc' };
    });
    let embedding: FeatureMap;
    if (embeddingOutput && out[embeddingOutput].dims.length === 2) {
      const e = out[embeddingOutput];
      const D = e.dims[1];
      const data = new Float32Array(e.data);
      for (let b = 0; b < B; b++) {
        const v = data.subarray(b * D, (b + 1) * D);
        let ss = 0;
        for (let i = 0; i < D; i++) ss += v[i] * v[i];
        const inv = ss > 0 ? 1 / Math.sqrt(ss) : 1;
        for (let i = 0; i < D; i++) v[i] *= inv;
      }
      embedding = { data, dims: [B, D] };
    } else {
      if (desc.embedding === 'projection' && !warnedFallback) {
        warnedFallback = true;
        log(`${basename(source)} has no [batch, dim] image-embedding output; RsCIN uses the last block's CLS token`);
      }
      const { data, T } = tokensBtc(out[lastBlock], B, C, lastBlock);
      const emb = new Float32Array(B * C);
      for (let b = 0; b < B; b++) {
        const cls = data.subarray(b * T * C, b * T * C + C);
        if (desc.blockTokens === 'final-norm') layerNormRows(cls, 1, finalNorm!, emb.subarray(b * C, (b + 1) * C));
        else emb.set(cls, b * C);
      }
      embedding = { data: emb, dims: [B, C] };
    }
    return { layers: layerMaps, embedding };
  }

  return {
    id: `vit-${family}(${basename(source)}#${digest.slice(0, 12)})[${layers.join(',')}]${erfGelu ? '+erf-gelu' : ''}`,
    layers,
    normalization,
    resizeKernel: desc.resizeKernel,
    embeddingSimilarity: desc.embeddingSimilarity,
    // The positional table is prepared for S x S: other inputs would need another table.
    sizeMultiple: P,
    fixedInput: { width: S, height: S },
    info: vitInfo,
    extract,
    dispose: () => extractor.dispose(),
  };
}
