/**
 * Runs any ONNX vision model with ONNX Runtime and returns selected internal
 * tensors as typed feature maps. Internal tensors are exposed by graph surgery
 * (see graph-surgery.ts), so any exported model works without re-exporting.
 */
import * as ort from 'onnxruntime-node';
import { ModelError, errorText } from '../errors.js';
import type { FeatureMap } from '../tensor.js';
import { asGraph, type OnnxGraph } from './onnx-graph.js';

/** Options for ONNX Runtime sessions. */
export interface SessionOptions {
  /** Intra-op threads; default: all cores (ORT's default). */
  readonly threads?: number;
  /**
   * ORT's CPU memory arena (default on, ORT's default). On, a session keeps the buffers of its
   * largest run for its life: right for a server that runs the same shapes again and again (its
   * memory stays flat). Off, each run's buffers go back to the process allocator: right for a
   * batch job that runs a backbone once per image and then needs the memory for mutual scoring.
   */
  readonly arena?: boolean;
}

/** Creates an ORT CPU session with full graph optimisation. */
export async function createSession(bytes: Uint8Array, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(bytes, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      enableCpuMemArena: opts.arena ?? true,
      ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}),
    });
  } catch (err) {
    throw new ModelError(`ONNX Runtime could not load the model: ${errorText(err)}`, { cause: err });
  }
}

/** A model session that returns named tensors for an NCHW float input. */
export class OnnxFeatureExtractor {
  private constructor(
    private readonly session: ort.InferenceSession,
    /** The graph input fed with the image batch. */
    readonly inputName: string,
    /** The tensors returned by `run`. */
    readonly outputNames: readonly string[],
  ) {}

  /**
   * Opens `model` (ONNX bytes, or a graph already decoded for analysis or rewriting) and
   * makes `outputs` (tensor names anywhere in the graph) available from `run`. A graph
   * passed in gains those outputs.
   * @throws ModelError when the model is invalid or lacks one of the tensors.
   */
  static async create(model: OnnxGraph | Uint8Array, outputs: readonly string[], opts: SessionOptions & { source?: string } = {}): Promise<OnnxFeatureExtractor> {
    const graph = asGraph(model, opts.source);
    const inputs = graph.inputNames();
    if (inputs.length !== 1) {
      throw new ModelError(`${graph.source} has ${inputs.length} inputs (${inputs.join(', ')}); an image backbone must have exactly one`);
    }
    graph.addOutputs(outputs);
    const session = await createSession(graph.toBytes(), opts);
    return new OnnxFeatureExtractor(session, inputs[0], [...outputs]);
  }

  /** Runs a `[B, 3, H, W]` batch and returns the requested tensors. */
  async run(input: { data: Float32Array; dims: readonly number[] }, only?: readonly string[]): Promise<Record<string, FeatureMap>> {
    const fetches = only ?? this.outputNames;
    const feeds = { [this.inputName]: new ort.Tensor('float32', input.data, [...input.dims]) };
    const results = await this.session.run(feeds, [...fetches]);
    const out: Record<string, FeatureMap> = {};
    for (const name of fetches) {
      const t = results[name];
      if (!t || t.type !== 'float32') throw new ModelError(`model output ${name} is missing or not float32`);
      out[name] = { data: t.data as Float32Array, dims: t.dims.map(Number) };
    }
    return out;
  }

  /** Frees the native session. */
  async dispose(): Promise<void> {
    await this.session.release();
  }
}
