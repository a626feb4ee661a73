/**
 * Graph surgery: list the tensors of any ONNX model a user can pick as features,
 * resolve `block:K` rules, and expose tensors as extra outputs (see `OnnxGraph.addOutputs`).
 */
import { ModelError } from '../errors.js';
import { asGraph, type OnnxGraph } from './onnx-graph.js';

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

function shapeOf(info: { type?: { tensorType?: { shape?: { dim?: { dimValue?: unknown; dimParam?: string | null }[] | null } | null } | null } | null }): (number | string | null)[] | null {
  const dims = info.type?.tensorType?.shape?.dim;
  if (!dims) return null;
  return dims.map((d) => (d.dimValue != null && Number(d.dimValue) > 0 ? Number(d.dimValue) : d.dimParam ? d.dimParam : null));
}

/** Lists every node output of the model, in topological order, with op type and known shape. */
export function listTensorCandidates(model: OnnxGraph | Uint8Array, source = 'model'): TensorCandidate[] {
  const graph = asGraph(model, source).graph;
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
export function addGraphOutputs(model: OnnxGraph | Uint8Array, names: readonly string[], source = 'model'): Uint8Array {
  const graph = asGraph(model, source);
  graph.addOutputs(names);
  return graph.toBytes();
}

/**
 * Cuts `model` down to what computes `names`: those become the only graph outputs and every
 * node (and initializer) they do not depend on is dropped. ONNX Runtime runs every node of a
 * graph whatever the fetches, so a pass that needs early layers only (e.g. refinement's coarse
 * pass, which takes no embedding) is ~20 % cheaper on ResNet50 without layer4 and the head.
 * @throws ModelError naming any tensor the graph does not contain
 */
export function pruneToOutputs(model: OnnxGraph | Uint8Array, names: readonly string[], source = 'model'): OnnxGraph {
  const graph = asGraph(model, source);
  graph.addOutputs(names); // checks the names
  const needed = new Set(names);
  const kept: typeof graph.graph.node = [];
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const node = graph.nodes[i];
    if (!(node.output ?? []).some((o) => needed.has(o))) continue;
    kept.push(node);
    for (const input of node.input ?? []) if (input) needed.add(input);
  }
  kept.reverse();
  const wanted = new Set(names);
  graph.edit((g) => {
    g.node = kept;
    g.output = g.output.filter((o) => wanted.has(o.name ?? ''));
    g.initializer = g.initializer.filter((t) => needed.has(t.name ?? ''));
    g.input = g.input.filter((i) => needed.has(i.name ?? ''));
    g.valueInfo = g.valueInfo.filter((v) => needed.has(v.name ?? ''));
  });
  return graph;
}
