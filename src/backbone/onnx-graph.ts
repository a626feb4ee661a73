/**
 * One decoded ONNX model with the indexes graph readers need: the node producing each
 * tensor, the nodes consuming it, and every constant tensor by name. A model file is
 * decoded once per open; analysis (vit-graph.ts), the tensor list and extra outputs
 * (graph-surgery.ts), rewrites and session creation (onnx-backbone.ts) all share this
 * object, and it is encoded once, for ONNX Runtime, at the end ({@link OnnxGraph.toBytes}).
 */
import { ModelError } from '../errors.js';
import { decodeModel, encodeModel, floatValueInfo, type GraphProto, type INodeProto, type ITensorProto, type IValueInfoProto, type ModelProto } from './onnx-proto.js';

interface GraphIndex {
  readonly producers: ReadonlyMap<string, INodeProto>;
  readonly consumers: ReadonlyMap<string, readonly INodeProto[]>;
  readonly constants: ReadonlyMap<string, ITensorProto>;
  readonly initializers: ReadonlySet<string>;
}

/** A decoded ONNX model, indexed by tensor name. */
export class OnnxGraph {
  private cached: GraphIndex | null = null;
  private edited = false;
  /** Outputs added by {@link OnnxGraph.addOutputs}; appended to the original bytes when nothing else changed. */
  private readonly added: IValueInfoProto[] = [];

  private constructor(
    /** The model's origin (a path), used in error messages. */
    readonly source: string,
    private readonly bytes: Uint8Array,
    private readonly model: ModelProto,
  ) {}

  /**
   * Decodes ONNX model bytes. The weights are not copied: tensors keep views into `bytes`.
   * @throws ModelError when the bytes are not an ONNX model, the graph is empty, or the
   *   weights live in external data files (ONNX Runtime is given bytes, not a directory).
   */
  static decode(bytes: Uint8Array, source = 'model'): OnnxGraph {
    let model: ModelProto;
    try {
      model = decodeModel(bytes);
    } catch (err) {
      throw new ModelError(`${source} is not a valid ONNX model (protobuf decode failed)`, { cause: err });
    }
    if (!model.graph || !model.graph.node?.length) throw new ModelError(`${source} is not a valid ONNX model (no graph nodes)`);
    for (const t of model.graph.initializer ?? []) {
      if (t.dataLocation === 1) {
        throw new ModelError(
          `${source} keeps its weights in external data files; export a single-file model (models under 2 GB) or merge them with onnx.save_model(..., save_as_external_data=False)`,
        );
      }
    }
    return new OnnxGraph(source, bytes, model);
  }

  /** The graph itself; change it only inside {@link OnnxGraph.edit}. protobufjs fills repeated fields with arrays. */
  get graph(): GraphProto {
    return this.model.graph as GraphProto;
  }

  private get index(): GraphIndex {
    if (this.cached) return this.cached;
    const g = this.graph;
    const producers = new Map<string, INodeProto>();
    const consumers = new Map<string, INodeProto[]>();
    const constants = new Map<string, ITensorProto>();
    for (const t of g.initializer) if (t.name) constants.set(t.name, t);
    for (const n of g.node) {
      for (const o of n.output ?? []) if (o) producers.set(o, n);
      for (const i of n.input ?? []) {
        if (!i) continue;
        const list = consumers.get(i);
        if (list) list.push(n);
        else consumers.set(i, [n]);
      }
      // torch's exporter stores equal tensors once and aliases them through Identity
      // (e.g. every LayerNorm weight of a freshly initialised model): follow those too.
      const out = n.output?.[0];
      if (!out) continue;
      if (n.opType === 'Constant') {
        const v = n.attribute?.find((a) => a.name === 'value')?.t;
        if (v) constants.set(out, v);
      } else if (n.opType === 'Identity') {
        const v = constants.get(n.input?.[0] ?? '');
        if (v) constants.set(out, v);
      }
    }
    this.cached = { producers, consumers, constants, initializers: new Set(g.initializer.map((t) => t.name ?? '')) };
    return this.cached;
  }

  /** Nodes in topological order. */
  get nodes(): readonly INodeProto[] {
    return this.graph.node;
  }

  /** The node that computes `tensor`, if any. */
  producer(tensor: string): INodeProto | undefined {
    return this.index.producers.get(tensor);
  }

  /** The nodes that read `tensor`, in topological order. */
  consumers(tensor: string): readonly INodeProto[] {
    return this.index.consumers.get(tensor) ?? [];
  }

  /** A constant tensor: an initializer, a `Constant` node's value, or an `Identity` of either. */
  constant(tensor: string): ITensorProto | undefined {
    return this.index.constants.get(tensor);
  }

  /** Every constant tensor by name (see {@link OnnxGraph.constant}). */
  constants(): ReadonlyMap<string, ITensorProto> {
    return this.index.constants;
  }

  /** Names of the graph inputs that are not initializers (the data the model is fed). */
  inputNames(): string[] {
    const inits = this.index.initializers;
    return this.graph.input.map((i) => i.name ?? '').filter((n) => n && !inits.has(n));
  }

  /**
   * Changes the graph in place. Indexes are rebuilt on next use and {@link OnnxGraph.toBytes}
   * re-encodes the whole model afterwards.
   */
  edit(change: (graph: GraphProto) => void): void {
    change(this.graph);
    this.cached = null;
    this.edited = true;
  }

  /**
   * Makes `names` (tensors anywhere in the graph) graph outputs; names that already are
   * outputs are skipped. The element type the exporter recorded is kept (fp16 exports),
   * float when unknown.
   * @throws ModelError naming every tensor the graph does not contain.
   */
  addOutputs(names: readonly string[]): void {
    const g = this.graph;
    const missing = names.filter((n) => !this.index.producers.has(n) && !g.input.some((i) => i.name === n));
    if (missing.length > 0) {
      throw new ModelError(
        `${this.source} does not contain the expected tensor(s) ${missing.map((m) => JSON.stringify(m)).join(', ')}. ` +
          'Run `musc models inspect <model.onnx>` to list the available tensors.',
      );
    }
    const existing = new Set(g.output.map((o) => o.name));
    const toAdd = [...new Set(names)].filter((n) => !existing.has(n));
    if (toAdd.length === 0) return;
    const known = new Map(g.valueInfo.filter((v) => v.name && v.type?.tensorType?.elemType).map((v) => [v.name as string, v]));
    const infos = toAdd.map((n) => known.get(n) ?? floatValueInfo(n));
    this.added.push(...infos);
    g.output.push(...(infos as typeof g.output));
  }

  /**
   * The model as bytes for ONNX Runtime. An unedited graph is not re-encoded: protobuf
   * merges concatenated messages (repeated fields append), so added outputs are appended
   * as a tiny `ModelProto { graph { output: [...] } }` to the original bytes, which keeps
   * fields this schema version does not know and never re-encodes the weights.
   */
  toBytes(): Uint8Array {
    if (this.edited) return encodeModel(this.model);
    if (this.added.length === 0) return this.bytes;
    const patch = encodeModel({ graph: { output: this.added } });
    const merged = new Uint8Array(this.bytes.length + patch.length);
    merged.set(this.bytes, 0);
    merged.set(patch, this.bytes.length);
    return merged;
  }
}

/** The graph of `model`, decoding it when given bytes. */
export function asGraph(model: OnnxGraph | Uint8Array, source = 'model'): OnnxGraph {
  return model instanceof OnnxGraph ? model : OnnxGraph.decode(model, source);
}
