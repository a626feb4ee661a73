/**
 * Reads the structure of an exported Vision Transformer from its ONNX graph and
 * rewrites it where MuSc needs a different model than the one exported:
 *
 * - patch embedding: the `Conv` with a 3-channel `[C, 3, p, p]` weight and stride p;
 * - positional embedding: the float constant `[1, T, C]` or `[T, C]` with
 *   T = g² or 1 + g² (CLS row first);
 * - blocks: the last `Add` under each block's module path (see `resolveTensorRule`);
 * - the final norm after the last block (a `LayerNormalization` op, or the
 *   ReduceMean/Sub/Pow/Sqrt/Div/Mul/Add chain of opset < 17 exports);
 * - OpenAI QuickGELU, `x · sigmoid(1.702 x)`, which can be rewritten to exact erf GELU
 *   (what MuSc's open_clip runs at non-native sizes, spec §2.2);
 * - positional-embedding re-baking for another input size (PyTorch bicubic, CLS row kept).
 *
 * Hand-written: no JS library understands ViT exports; the protobuf codec is `onnx-proto`.
 */
import { ModelError } from '../errors.js';
import { bicubicResize } from './bicubic.js';
import { listTensorCandidates, resolveTensorRule, type TensorCandidate } from './graph-surgery.js';
import { asGraph, type OnnxGraph } from './onnx-graph.js';
import { FLOAT, INT64, floatTensor, int64Tensor, type GraphProto, type INodeProto, type ITensorProto } from './onnx-proto.js';

/** Parameters of a LayerNorm over the channel axis. */
export interface LayerNormParams {
  readonly scale: Float32Array;
  readonly bias: Float32Array;
  readonly epsilon: number;
}

/** Where the positional embedding lives and what grid it encodes. */
export interface PositionEmbeddingInfo {
  /** Initializer name, or the output of a `Constant` node. */
  readonly name: string;
  readonly dims: readonly number[];
  /** Rows before the patch grid (1 when a CLS position leads, else 0). */
  readonly prefixRows: number;
  /** Native grid side g0 (T = prefixRows + g0²). */
  readonly grid: number;
  /** True when a `Resize` node downstream interpolates it at run time (HF DINOv2, exports at non-native sizes). */
  readonly interpolatedInGraph: boolean;
}

/** What the graph says about the ViT inside. */
export interface VitGraphInfo {
  readonly inputName: string;
  readonly patchSize: number;
  readonly width: number;
  readonly positionEmbedding: PositionEmbeddingInfo | null;
  /** Native input side (grid × patch), when the positional embedding was found. */
  readonly nativeSize: number | null;
  /** Output tensor of each block, index = 0-based block number. */
  readonly blockOutputs: readonly string[];
  /** Norm applied after the last block, when one was found. */
  readonly finalNorm: LayerNormParams | null;
  /** Number of QuickGELU (`x · sigmoid(1.702 x)`) activations. */
  readonly quickGeluCount: number;
  /** Graph outputs with their rank (`null` when the export did not record a shape). */
  readonly outputs: readonly { readonly name: string; readonly rank: number | null }[];
  /** Every node name and initializer name joined, for family heuristics. */
  readonly namesText: string;
  readonly candidates: readonly TensorCandidate[];
}

/** Float32 values of a tensor proto (raw_data or float_data). */
export function tensorFloats(t: ITensorProto): Float32Array | null {
  if (t.dataType !== FLOAT) return null;
  if (t.rawData && t.rawData.length > 0) {
    const copy = new Uint8Array(t.rawData); // raw_data may be unaligned inside the protobuf buffer
    return new Float32Array(copy.buffer, 0, copy.length / 4);
  }
  return Float32Array.from(t.floatData ?? []);
}

function tensorInt64s(t: ITensorProto): number[] | null {
  if (t.dataType !== INT64) return null;
  if (t.rawData && t.rawData.length > 0) {
    const copy = new Uint8Array(t.rawData);
    return Array.from(new BigInt64Array(copy.buffer, 0, copy.length / 8), Number);
  }
  return (t.int64Data ?? []).map(Number);
}

const dimsOf = (t: ITensorProto): number[] => (t.dims ?? []).map(Number);
const intsAttr = (n: INodeProto, name: string): number[] | undefined => n.attribute?.find((a) => a.name === name)?.ints?.map(Number);
const floatAttr = (n: INodeProto, name: string): number | undefined => n.attribute?.find((a) => a.name === name)?.f ?? undefined;

function scalarOf(graph: OnnxGraph, name: string): number | null {
  const t = graph.constant(name);
  if (!t) return null;
  const v = tensorFloats(t);
  return v && v.length === 1 ? v[0] : null;
}

function findPatchConv(graph: OnnxGraph): { patch: number; width: number } | null {
  for (const n of graph.nodes) {
    if (n.opType !== 'Conv') continue;
    const w = graph.constant(n.input?.[1] ?? '');
    if (!w) continue;
    const d = dimsOf(w);
    const strides = intsAttr(n, 'strides');
    if (d.length === 4 && d[1] === 3 && d[2] === d[3] && d[2] > 1 && strides && strides[0] === d[2] && strides[1] === d[3]) {
      return { patch: d[2], width: d[0] };
    }
  }
  return null;
}

function findPositionEmbedding(graph: OnnxGraph, width: number): PositionEmbeddingInfo | null {
  // A table added to (or gathered into) the token stream; weights of Linear layers feed MatMul/Gemm instead.
  const tokenOps = new Set(['Add', 'Gather', 'Slice', 'Split', 'Concat', 'Reshape', 'Unsqueeze', 'Squeeze', 'Transpose', 'Cast', 'Resize', 'Upsample']);
  let best: { info: PositionEmbeddingInfo; rank: number } | null = null;
  for (const [name, t] of graph.constants()) {
    if (t.dataType !== FLOAT) continue;
    const d = dimsOf(t);
    const rows = d.length === 3 && d[0] === 1 ? d[1] : d.length === 2 ? d[0] : -1;
    if (rows < 4 || d[d.length - 1] !== width) continue;
    const uses = graph.consumers(name);
    if (uses.length === 0 || uses.some((n) => !tokenOps.has(n.opType ?? ''))) continue;
    for (const prefix of [1, 0]) {
      const g = Math.round(Math.sqrt(rows - prefix));
      if (g >= 2 && g * g === rows - prefix) {
        const rank = prefix * 1e9 + rows; // a CLS row is the strongest sign, then the larger table
        if (!best || rank > best.rank) best = { info: { name, dims: d, prefixRows: prefix, grid: g, interpolatedInGraph: reachesResize(graph, name) }, rank };
        break;
      }
    }
  }
  return best?.info ?? null;
}

/** Whether a `Resize` node is reachable from `name` within a few ops (in-graph positional interpolation). */
function reachesResize(graph: OnnxGraph, name: string): boolean {
  let frontier = [name];
  const seen = new Set<string>(frontier);
  for (let depth = 0; depth < 12 && frontier.length; depth++) {
    const next: string[] = [];
    for (const t of frontier) {
      for (const n of graph.consumers(t)) {
        if (n.opType === 'Resize' || n.opType === 'Upsample') return true;
        if (n.opType === 'Add' && depth > 0) continue; // reached the token stream
        for (const o of n.output ?? []) if (o && !seen.has(o)) (seen.add(o), next.push(o));
      }
    }
    frontier = next;
  }
  return false;
}

/** The LayerNorm that consumes `x`, as a fused op or as the decomposed opset < 17 chain. */
export function traceLayerNorm(graph: OnnxGraph, x: string): LayerNormParams | null {
  const floats = (name: string | undefined) => {
    const t = name ? graph.constant(name) : undefined;
    return t ? tensorFloats(t) : null;
  };
  for (const n of graph.consumers(x)) {
    if (n.opType === 'LayerNormalization' && n.input?.[0] === x) {
      const scale = floats(n.input[1]);
      if (!scale) continue;
      const bias = floats(n.input[2]) ?? new Float32Array(scale.length);
      return { scale, bias, epsilon: floatAttr(n, 'epsilon') ?? 1e-5 };
    }
  }
  // Decomposed: m = ReduceMean(x); d = Sub(x, m); v = ReduceMean(Pow(d, 2)); y = d / Sqrt(v + eps) * w + b
  const sub = graph.consumers(x).find((n) => n.opType === 'Sub' && n.input?.[0] === x && graph.producer(n.input?.[1] ?? '')?.opType === 'ReduceMean');
  if (!sub?.output?.[0]) return null;
  const d = sub.output[0];
  const div = graph.consumers(d).find((n) => n.opType === 'Div' && n.input?.[0] === d);
  if (!div?.input?.[1] || !div.output?.[0]) return null;
  const sqrt = graph.producer(div.input[1]);
  const addEps = sqrt?.opType === 'Sqrt' ? graph.producer(sqrt.input?.[0] ?? '') : undefined;
  if (addEps?.opType !== 'Add') return null;
  const epsilon = scalarOf(graph, addEps.input?.[1] ?? '') ?? scalarOf(graph, addEps.input?.[0] ?? '');
  if (epsilon === null) return null;
  let y = div.output[0];
  let scale: Float32Array | null = null;
  let bias: Float32Array | null = null;
  const mul = graph.consumers(y).find((n) => n.opType === 'Mul');
  if (mul?.output?.[0]) {
    scale = floats(mul.input?.find((i) => i !== y));
    if (scale) y = mul.output[0];
  }
  const add = graph.consumers(y).find((n) => n.opType === 'Add');
  if (add) bias = floats(add.input?.find((i) => i !== y));
  const width = scale?.length ?? bias?.length;
  if (!width) return null;
  return { scale: scale ?? new Float32Array(width).fill(1), bias: bias ?? new Float32Array(width), epsilon };
}

/** QuickGELU sites: `Mul(x, c≈1.702) -> Sigmoid -> Mul(x, ·)`. */
interface QuickGeluSite {
  readonly scaleMul: INodeProto;
  readonly sigmoid: INodeProto;
  readonly outMul: INodeProto;
  readonly x: string;
}

function findQuickGelu(graph: OnnxGraph): QuickGeluSite[] {
  const sites: QuickGeluSite[] = [];
  for (const sigmoid of graph.nodes) {
    if (sigmoid.opType !== 'Sigmoid') continue;
    const scaleMul = graph.producer(sigmoid.input?.[0] ?? '');
    if (scaleMul?.opType !== 'Mul') continue;
    const [a, b] = scaleMul.input ?? [];
    const ca = scalarOf(graph, a ?? '');
    const cb = scalarOf(graph, b ?? '');
    const c = ca ?? cb;
    const x = ca !== null ? b : a;
    if (c === null || !x || Math.abs(c - 1.702) > 1e-3) continue;
    const outMul = graph.consumers(sigmoid.output?.[0] ?? '').find((n) => n.opType === 'Mul' && n.input?.includes(x));
    if (outMul) sites.push({ scaleMul, sigmoid, outMul, x });
  }
  return sites;
}

/** Analyses a ViT export (bytes, or a graph decoded once for the whole open). Throws a ModelError when it has no patch embedding or no blocks. */
export function analyzeVit(model: OnnxGraph | Uint8Array, source = 'model'): VitGraphInfo {
  const graph = asGraph(model, source);
  source = graph.source;
  const inputs = graph.inputNames();
  if (inputs.length !== 1) throw new ModelError(`${source} has ${inputs.length} inputs (${inputs.join(', ')}); export the vision tower alone (one image input)`);
  const conv = findPatchConv(graph);
  if (!conv) throw new ModelError(`${source} has no patch embedding (a Conv with a [C, 3, p, p] weight and stride p); is it a Vision Transformer?`);
  const candidates = listTensorCandidates(graph);
  const blockOutputs: string[] = [];
  for (let k = 0; ; k++) {
    try {
      blockOutputs.push(resolveTensorRule(candidates, `block:${k}`, source));
    } catch {
      break;
    }
  }
  if (blockOutputs.length === 0) {
    const adds = candidates.filter((c) => c.opType === 'Add').slice(-12).map((c) => `  ${c.name}  (node ${c.nodeName})`);
    throw new ModelError(
      `${source}: cannot find the transformer blocks (no Add nodes under a module path such as "blocks.K/", "layer.K/", ` +
        `"layers.K/", "resblocks.K/" or "encoder_layer_K/"). Pass tensor names to --layers instead; the last Add tensors are:\n${adds.join('\n')}`,
    );
  }
  const pos = findPositionEmbedding(graph, conv.width);
  const names = [...graph.nodes.map((n) => n.name ?? ''), ...graph.graph.initializer.map((t) => t.name ?? '')].join('\n');
  return {
    inputName: inputs[0],
    patchSize: conv.patch,
    width: conv.width,
    positionEmbedding: pos,
    nativeSize: pos ? pos.grid * conv.patch : null,
    blockOutputs,
    finalNorm: traceLayerNorm(graph, blockOutputs[blockOutputs.length - 1]),
    quickGeluCount: findQuickGelu(graph).length,
    outputs: graph.graph.output.map((o) => ({ name: o.name ?? '', rank: o.type?.tensorType?.shape?.dim?.length ?? null })),
    namesText: names,
    candidates,
  };
}

/** How to rewrite a ViT export. */
export interface VitRewrite {
  /** New grid side for the positional embedding (omit to keep it). */
  readonly grid?: number;
  /** Replace QuickGELU with exact erf GELU. */
  readonly erfGelu?: boolean;
}

/**
 * Rewrites a decoded ViT export in place: the positional embedding resized to `grid`
 * (PyTorch bicubic, prefix rows kept) and/or QuickGELU replaced by erf GELU. The input's
 * spatial dims and intermediate shape annotations are made symbolic so ONNX Runtime
 * re-infers them. Nothing is encoded here: the graph is encoded once, for the session.
 */
export function rewriteVit(graph: OnnxGraph, info: VitGraphInfo, rw: VitRewrite): void {
  // Everything is looked up before the edit, which invalidates the graph's indexes.
  const table = rw.grid !== undefined ? rebakedPositions(graph, info, rw.grid) : null;
  const sites = rw.erfGelu ? findQuickGelu(graph) : [];
  graph.edit((g) => {
    if (table) {
      Object.assign(table.tensor, { dims: table.replacement.dims, rawData: table.replacement.rawData, floatData: [] });
      for (const [ids, replacement] of table.positionIds) Object.assign(ids, { dims: replacement.dims, rawData: replacement.rawData, int64Data: [] });
    }
    if (sites.length > 0) {
      replaceQuickGelu(g, sites);
      // The 1.702 scalars are now orphaned; ONNX Runtime would warn about each one.
      const used = new Set(g.node.flatMap((n) => n.input ?? []));
      for (const o of g.output) used.add(o.name ?? '');
      g.initializer = g.initializer.filter((t) => used.has(t.name ?? ''));
      g.node = g.node.filter((n) => n.opType !== 'Constant' || (n.output ?? []).some((o) => used.has(o)));
    }
    // Shapes recorded at export time (e.g. 197 tokens) no longer hold: let ORT infer them.
    g.valueInfo = [];
    const relax = (vi: (typeof g.output)[number], keep: number) => {
      const dims = vi.type?.tensorType?.shape?.dim;
      if (!dims) return;
      dims.forEach((d, i) => {
        if (i >= keep && d.dimValue != null) Object.assign(d, { dimValue: null, dimParam: `musc_d${i}` });
      });
    };
    for (const o of g.output) relax(o, 1);
    for (const i of g.input) if (i.name === info.inputName) relax(i, 2);
  });
}

/** The positional table resized to `g1`² patches, and HF CLIP's `position_ids` ([1, T] = arange(T)) extended to match. */
function rebakedPositions(
  graph: OnnxGraph,
  info: VitGraphInfo,
  g1: number,
): { tensor: ITensorProto; replacement: ITensorProto; positionIds: [ITensorProto, ITensorProto][] } {
  const pos = info.positionEmbedding;
  if (!pos) throw new ModelError(`${graph.source}: cannot find the positional embedding ([1, 1+g², C] constant) to resize for another input size; export the model at the size you need`);
  const tensor = graph.constant(pos.name)!;
  const values = tensorFloats(tensor)!;
  const C = info.width;
  const g0 = pos.grid;
  const grid = new Float32Array(C * g0 * g0);
  const off = pos.prefixRows * C;
  for (let p = 0; p < g0 * g0; p++) for (let c = 0; c < C; c++) grid[c * g0 * g0 + p] = values[off + p * C + c];
  const resized = bicubicResize(grid, C, g0, g0, g1, g1);
  const rows = pos.prefixRows + g1 * g1;
  const out = new Float32Array(rows * C);
  out.set(values.subarray(0, off));
  for (let p = 0; p < g1 * g1; p++) for (let c = 0; c < C; c++) out[off + p * C + c] = resized[c * g1 * g1 + p];
  const replacement = floatTensor(pos.name, pos.dims.length === 3 ? [1, rows, C] : [rows, C], out);
  // HF CLIP gathers rows with a `position_ids` buffer (an initializer or a Constant node): extend it too.
  const T0 = pos.prefixRows + g0 * g0;
  const positionIds: [ITensorProto, ITensorProto][] = [];
  for (const t of new Set(graph.constants().values())) {
    const d = dimsOf(t);
    if (t.dataType !== INT64 || d.length !== 2 || d[0] !== 1 || d[1] !== T0) continue;
    const v = tensorInt64s(t);
    // The name may be empty for Constant nodes.
    if (v && v.every((x, i) => x === i)) positionIds.push([t, int64Tensor(t.name ?? '', [1, rows], Array.from({ length: rows }, (_, i) => i))]);
  }
  return { tensor, replacement, positionIds };
}

function replaceQuickGelu(graph: GraphProto, sites: readonly QuickGeluSite[]): void {
  if (sites.length === 0) return;
  graph.initializer.push(
    floatTensor('musc_gelu_sqrt2', [], new Float32Array([Math.SQRT2])),
    floatTensor('musc_gelu_one', [], new Float32Array([1])),
    floatTensor('musc_gelu_half', [], new Float32Array([0.5])),
  );
  // gelu(x) = 0.5 · x · (1 + erf(x / √2)); the new nodes go right before the output Mul, keeping topological order.
  sites.forEach((s, i) => {
    const a = s.scaleMul.output![0];
    const e = s.sigmoid.output![0];
    Object.assign(s.scaleMul, { opType: 'Div', input: [s.x, 'musc_gelu_sqrt2'], attribute: [] });
    Object.assign(s.sigmoid, { opType: 'Erf', input: [a], attribute: [] });
    const onePlus = `musc_gelu_${i}_1p`;
    const xTimes = `musc_gelu_${i}_x1p`;
    const at = graph.node.indexOf(s.outMul as (typeof graph.node)[number]);
    graph.node.splice(
      at,
      0,
      { name: `musc_gelu_${i}_add`, opType: 'Add', input: [e, 'musc_gelu_one'], output: [onePlus] } as (typeof graph.node)[number],
      { name: `musc_gelu_${i}_mul`, opType: 'Mul', input: [s.x, onePlus], output: [xTimes] } as (typeof graph.node)[number],
    );
    Object.assign(s.outMul, { input: [xTimes, 'musc_gelu_half'] });
  });
}
