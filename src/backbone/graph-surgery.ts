/**
 * Graph surgery: expose internal tensors of any ONNX model as extra outputs,
 * and list the candidates a user can pick.
 *
 * Adding outputs does not re-encode the model: protobuf merges a message that is
 * concatenated to another (repeated fields append, sub-messages merge), so we
 * append a tiny `ModelProto { graph { output: [...] } }`. This keeps fields our
 * schema version does not know and never re-encodes the (possibly gigabyte) weights.
 */
import { ModelError } from '../errors.js';
import { decodeModel, encodeModel, floatValueInfo, type GraphProto } from './onnx-proto.js';

/** One tensor of a graph a user could ask for. */
export interface TensorCandidate {
  /** Tensor name to pass to `--layers`/`extraOutputs`. */
  readonly name: string;
  /** The op that produces it (`Add`, `Relu`, ...). */
  readonly opType: string;
  /** The producing node's name (exporters encode module paths here). */
  readonly nodeName: string;
  /** Shape from the graph's value_info / outputs when known (`null` entries are symbolic). */
  readonly shape: readonly (number | string | null)[] | null;
  /** Position in topological order. */
  readonly index: number;
}

/** Decoded graph; protobufjs fills repeated fields with arrays on decode. */
function parseModel(bytes: Uint8Array, source: string): { graph: GraphProto } {
  let model: ReturnType<typeof decodeModel>;
  try {
    model = decodeModel(bytes);
  } catch (err) {
    throw new ModelError(`${source} is not a valid ONNX model (protobuf decode failed)`, { cause: err });
  }
  if (!model.graph || !model.graph.node || model.graph.node.length === 0) {
    throw new ModelError(`${source} is not a valid ONNX model (no graph nodes)`);
  }
  return { graph: model.graph as GraphProto };
}

function shapeOf(info: { type?: { tensorType?: { shape?: { dim?: { dimValue?: unknown; dimParam?: string | null }[] | null } | null } | null } | null }): (number | string | null)[] | null {
  const dims = info.type?.tensorType?.shape?.dim;
  if (!dims) return null;
  return dims.map((d) => (d.dimValue != null && Number(d.dimValue) > 0 ? Number(d.dimValue) : d.dimParam ? d.dimParam : null));
}

/** Lists every node output of the model, in topological order, with op type and known shape. */
export function listTensorCandidates(bytes: Uint8Array, source = 'model'): TensorCandidate[] {
  const model = parseModel(bytes, source);
  const graph = model.graph;
  const shapes = new Map<string, (number | string | null)[] | null>();
  for (const vi of [...graph.valueInfo, ...graph.output]) if (vi.name) shapes.set(vi.name, shapeOf(vi));
  const out: TensorCandidate[] = [];
  graph.node.forEach((node, index) => {
    for (const name of node.output ?? []) {
      if (!name) continue;
      out.push({ name, opType: node.opType ?? '', nodeName: node.name ?? '', shape: shapes.get(name) ?? null, index });
    }
  });
  return out;
}

/** Names of the graph's declared inputs (excluding initializers) and outputs. */
export function graphSignature(bytes: Uint8Array, source = 'model'): { inputs: string[]; outputs: string[] } {
  const model = parseModel(bytes, source);
  const inits = new Set(model.graph.initializer.map((t) => t.name));
  return {
    inputs: model.graph.input.map((i) => i.name ?? '').filter((n) => n && !inits.has(n)),
    outputs: model.graph.output.map((o) => o.name ?? ''),
  };
}

/**
 * Resolves a rule to a tensor name. Rules:
 * - an exact tensor name;
 * - `block:K` — the output of transformer block K (0-based): the last `Add` whose
 *   producing node sits under a module path like `layer.K/`, `layers.K/`, `blocks.K/`,
 *   `resblocks.K/` or `layer_K/` (the layouts of HF Optimum, timm, open_clip, DINOv2 exports).
 */
export function resolveTensorRule(candidates: readonly TensorCandidate[], rule: string, source = 'model'): string {
  const exact = candidates.find((c) => c.name === rule);
  if (exact) return exact.name;
  const m = /^block:(\d+)$/.exec(rule);
  if (m) {
    const k = m[1];
    const pattern = new RegExp(`(^|[/._])(layer|layers|blocks|resblocks|block|h)[._]${k}([/._]|$)`);
    const inBlock = candidates.filter((c) => pattern.test(c.nodeName) || pattern.test(c.name));
    const adds = inBlock.filter((c) => c.opType === 'Add');
    const last = adds.length > 0 ? adds[adds.length - 1] : undefined;
    if (last) return last.name;
    throw new ModelError(
      `${source}: cannot find the output of block ${k}; no Add node under a module path containing ` +
        `"layer.${k}/", "blocks.${k}/" or "resblocks.${k}/". Run \`musc models inspect\` and pass tensor names instead.`,
    );
  }
  const near = candidates
    .filter((c) => c.name.includes(rule) || c.nodeName.includes(rule))
    .slice(0, 10)
    .map((c) => `  ${c.name} (${c.opType})`);
  throw new ModelError(
    `${source} has no tensor named ${JSON.stringify(rule)}.` +
      (near.length ? `\nSimilar tensors:\n${near.join('\n')}` : '\nRun `musc models inspect <model.onnx>` to list candidates.'),
  );
}

/**
 * Returns model bytes in which `names` are additional graph outputs. Names that are
 * already outputs are skipped. Throws a ModelError naming any tensor that does not exist.
 */
export function addGraphOutputs(bytes: Uint8Array, names: readonly string[], source = 'model'): Uint8Array {
  const model = parseModel(bytes, source);
  const graph = model.graph;
  const produced = new Set<string>();
  for (const n of graph.node) for (const o of n.output ?? []) produced.add(o);
  for (const i of graph.input) if (i.name) produced.add(i.name);
  const missing = names.filter((n) => !produced.has(n));
  if (missing.length > 0) {
    throw new ModelError(
      `${source} does not contain the expected tensor(s) ${missing.map((m) => JSON.stringify(m)).join(', ')}. ` +
        'Run `musc models inspect <model.onnx>` to list the available tensors.',
    );
  }
  const existing = new Set(graph.output.map((o) => o.name));
  const toAdd = [...new Set(names)].filter((n) => !existing.has(n));
  if (toAdd.length === 0) return bytes;
  // Keep the element type the exporter recorded (fp16 exports); float when unknown.
  const known = new Map(graph.valueInfo.filter((v) => v.name && v.type?.tensorType?.elemType).map((v) => [v.name as string, v]));
  const patch = encodeModel({
    graph: { output: toAdd.map((n) => known.get(n) ?? floatValueInfo(n)) },
  });
  const merged = new Uint8Array(bytes.length + patch.length);
  merged.set(bytes, 0);
  merged.set(patch, bytes.length);
  return merged;
}
