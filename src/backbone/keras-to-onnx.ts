/**
 * Converts a TF.js *layers* model (Keras 2 topology + weight shards) of a plain
 * CNN into an ONNX graph (NCHW, opset 17). Hand-written because no maintained JS
 * converter exists (tfjs-to-onnx tools are Python-only). BatchNormalization that
 * directly follows a Conv2D is folded into the convolution's weights and bias.
 *
 * Supported layers: InputLayer, ZeroPadding2D, Conv2D, BatchNormalization,
 * Activation/ReLU (relu, linear, softmax), Add, MaxPooling2D, AveragePooling2D,
 * GlobalAveragePooling2D, Flatten, Dense. Anything else is a clear ModelError.
 */
import { ModelError } from '../errors.js';
import { attr, encodeModel, floatTensor, floatValueInfo, int64Tensor, type INodeProto, type ITensorProto } from './onnx-proto.js';

/** The subset of a TF.js layers-model `model.json` we read. */
export interface TfjsLayersModelJson {
  readonly format?: string;
  readonly modelTopology: {
    readonly model_config?: KerasModelConfig;
    readonly config?: KerasModelConfig['config'];
    readonly class_name?: string;
  };
  readonly weightsManifest: readonly { readonly paths: readonly string[]; readonly weights: readonly WeightSpec[] }[];
}

interface KerasModelConfig {
  readonly class_name: string;
  readonly config: {
    readonly layers: readonly KerasLayer[];
    readonly input_layers: readonly (readonly [string, number, number])[];
    readonly output_layers: readonly (readonly [string, number, number])[];
  };
}

interface KerasLayer {
  readonly name: string;
  readonly class_name: string;
  readonly config: Record<string, unknown>;
  readonly inbound_nodes: readonly (readonly (readonly [string, number, number, unknown?])[])[];
}

/** One weight tensor in the manifest. */
export interface WeightSpec {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: string;
}

/** Graph outputs to expose: ONNX output name -> Keras layer name (or the special `<layer>:pooled`). */
export type OutputSelection = Readonly<Record<string, string>>;

/** Splits the concatenated shard bytes into named Float32Arrays, checking the total size. */
export function readWeights(json: TfjsLayersModelJson, shards: Uint8Array): Map<string, { shape: readonly number[]; data: Float32Array }> {
  const out = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  let offset = 0;
  for (const group of json.weightsManifest) {
    for (const w of group.weights) {
      if (w.dtype !== 'float32') throw new ModelError(`weight ${w.name} has unsupported dtype ${w.dtype} (only float32)`);
      const n = w.shape.reduce((a, b) => a * b, 1);
      const bytes = n * 4;
      if (offset + bytes > shards.length) {
        throw new ModelError(`weight shards are truncated: ${w.name} needs bytes ${offset}..${offset + bytes}, only ${shards.length} present`);
      }
      // Copy to an aligned buffer: shard concatenation offsets need not be 4-aligned in general.
      const data = new Float32Array(n);
      new Uint8Array(data.buffer).set(shards.subarray(offset, offset + bytes));
      out.set(w.name, { shape: w.shape, data });
      offset += bytes;
    }
  }
  if (offset !== shards.length) {
    throw new ModelError(`weight shards have ${shards.length} bytes but the manifest describes ${offset}`);
  }
  return out;
}

function modelConfig(json: TfjsLayersModelJson): KerasModelConfig['config'] {
  const topo = json.modelTopology;
  const cfg = topo.model_config?.config ?? topo.config;
  if (!cfg || !Array.isArray(cfg.layers)) throw new ModelError('model.json has no Keras functional model topology');
  return cfg;
}

function get<T>(layer: KerasLayer, key: string): T {
  const v = layer.config[key];
  if (v === undefined) throw new ModelError(`layer ${layer.name} (${layer.class_name}) lacks config "${key}"`);
  return v as T;
}

/** Keras [kh, kw, in, out] -> ONNX [out, in, kh, kw], optionally scaled per output channel. */
function convKernelToOnnx(kernel: Float32Array, shape: readonly number[], scale?: Float32Array): Float32Array {
  const [kh, kw, cin, cout] = shape as [number, number, number, number];
  const out = new Float32Array(kernel.length);
  for (let y = 0; y < kh; y++)
    for (let x = 0; x < kw; x++)
      for (let i = 0; i < cin; i++) {
        const src = ((y * kw + x) * cin + i) * cout;
        for (let o = 0; o < cout; o++) {
          out[((o * cin + i) * kh + y) * kw + x] = kernel[src + o] * (scale ? scale[o] : 1);
        }
      }
  return out;
}

/** Converts the Keras model to ONNX bytes. */
export function kerasToOnnx(
  json: TfjsLayersModelJson,
  weights: Map<string, { shape: readonly number[]; data: Float32Array }>,
  outputs: OutputSelection,
  opts: { inputName?: string; producer?: string } = {},
): Uint8Array {
  const cfg = modelConfig(json);
  const inputName = opts.inputName ?? 'image';
  const layers = new Map(cfg.layers.map((l) => [l.name, l]));
  const consumers = new Map<string, number>();
  for (const l of cfg.layers) for (const node of l.inbound_nodes) for (const [src] of node) consumers.set(src, (consumers.get(src) ?? 0) + 1);

  const nodes: INodeProto[] = [];
  const inits: ITensorProto[] = [];
  const tensorOf = new Map<string, string>(); // keras layer name -> onnx tensor name
  const folded = new Set<string>(); // BN layers folded into their conv
  const w = (name: string): { shape: readonly number[]; data: Float32Array } => {
    const t = weights.get(name);
    if (!t) throw new ModelError(`weights for ${name} are missing from the weight manifest`);
    return t;
  };
  const inputsOf = (l: KerasLayer): string[] => {
    if (l.inbound_nodes.length !== 1) throw new ModelError(`layer ${l.name} is shared (${l.inbound_nodes.length} call sites): unsupported`);
    return l.inbound_nodes[0].map(([src]) => {
      const t = tensorOf.get(src);
      if (!t) throw new ModelError(`layer ${l.name} reads ${src} before it is defined`);
      return t;
    });
  };

  // A BN can be folded when it is the only consumer of a conv and the conv has no activation.
  const foldableBn = (conv: KerasLayer): KerasLayer | undefined => {
    if (consumers.get(conv.name) !== 1) return undefined;
    if ((conv.config.activation ?? 'linear') !== 'linear') return undefined;
    return cfg.layers.find((l) => l.class_name === 'BatchNormalization' && l.inbound_nodes.length === 1 && l.inbound_nodes[0].length === 1 && l.inbound_nodes[0][0][0] === conv.name);
  };

  const activation = (name: string, act: string, input: string): string => {
    switch (act) {
      case 'linear':
        return input;
      case 'relu':
        nodes.push({ opType: 'Relu', name, input: [input], output: [name] });
        return name;
      case 'softmax':
        nodes.push({ opType: 'Softmax', name, input: [input], output: [name], attribute: [attr.int('axis', -1)] });
        return name;
      default:
        throw new ModelError(`activation ${act} (layer ${name}) is not supported by the converter`);
    }
  };

  for (const l of cfg.layers) {
    const name = l.name;
    switch (l.class_name) {
      case 'InputLayer':
        tensorOf.set(name, inputName);
        break;
      case 'ZeroPadding2D': {
        const [[t, b], [left, r]] = get<[[number, number], [number, number]]>(l, 'padding');
        const padsName = `${name}/pads`;
        inits.push(int64Tensor(padsName, [8], [0, 0, t, left, 0, 0, b, r]));
        nodes.push({ opType: 'Pad', name, input: [inputsOf(l)[0], padsName], output: [name], attribute: [attr.string('mode', 'constant')] });
        tensorOf.set(name, name);
        break;
      }
      case 'Conv2D': {
        if ((l.config.data_format ?? 'channels_last') !== 'channels_last') throw new ModelError(`layer ${name}: only channels_last is supported`);
        const kernel = w(`${name}/kernel`);
        const [kh, kw, , cout] = kernel.shape as [number, number, number, number];
        const useBias = l.config.use_bias !== false;
        let bias = useBias ? Float32Array.from(w(`${name}/bias`).data) : new Float32Array(cout);
        let scale: Float32Array | undefined;
        const bn = foldableBn(l);
        let outName = name;
        if (bn) {
          const eps = Number(bn.config.epsilon ?? 1e-3);
          const gamma = bn.config.scale === false ? new Float32Array(cout).fill(1) : w(`${bn.name}/gamma`).data;
          const beta = bn.config.center === false ? new Float32Array(cout) : w(`${bn.name}/beta`).data;
          const mean = w(`${bn.name}/moving_mean`).data;
          const variance = w(`${bn.name}/moving_variance`).data;
          scale = new Float32Array(cout);
          const b2 = new Float32Array(cout);
          for (let o = 0; o < cout; o++) {
            // Fold in float64 so the folded model stays within float32 rounding of the original.
            const s = gamma[o] / Math.sqrt(variance[o] + eps);
            scale[o] = s;
            b2[o] = (bias[o] - mean[o]) * s + beta[o];
          }
          bias = b2;
          folded.add(bn.name);
          outName = bn.name;
        }
        const weightName = `${name}/W`;
        const biasName = `${name}/B`;
        inits.push(floatTensor(weightName, [cout, kernel.shape[2], kh, kw], convKernelToOnnx(kernel.data, kernel.shape, scale)));
        inits.push(floatTensor(biasName, [cout], bias));
        const strides = get<number[]>(l, 'strides');
        const dilations = (l.config.dilation_rate as number[] | undefined) ?? [1, 1];
        const attributes = [attr.ints('kernel_shape', [kh, kw]), attr.ints('strides', strides), attr.ints('dilations', dilations)];
        const padding = get<string>(l, 'padding');
        if (padding === 'same') {
          if (strides[0] === 1 && strides[1] === 1) {
            // TF 'same' at stride 1: total (k-1)*d, the extra pixel (even k) at the end.
            const th = (kh - 1) * dilations[0];
            const tw = (kw - 1) * dilations[1];
            attributes.push(attr.ints('pads', [Math.floor(th / 2), Math.floor(tw / 2), th - Math.floor(th / 2), tw - Math.floor(tw / 2)]));
          } else {
            attributes.push(attr.string('auto_pad', 'SAME_UPPER'));
          }
        } else if (padding !== 'valid') {
          throw new ModelError(`layer ${name}: padding ${padding} is not supported`);
        }
        const convOut = `${outName}${(l.config.activation ?? 'linear') === 'linear' ? '' : '/preact'}`;
        nodes.push({ opType: 'Conv', name, input: [inputsOf(l)[0], weightName, biasName], output: [convOut], attribute: attributes });
        const final = activation(outName, String(l.config.activation ?? 'linear'), convOut);
        tensorOf.set(name, final);
        if (bn) tensorOf.set(bn.name, final);
        break;
      }
      case 'BatchNormalization': {
        if (folded.has(name)) break;
        const input = inputsOf(l)[0];
        const axis = l.config.axis;
        const ax = Array.isArray(axis) ? axis[0] : axis;
        if (ax !== 3 && ax !== -1) throw new ModelError(`layer ${name}: BatchNormalization over axis ${String(axis)} is not supported`);
        const c = w(`${name}/moving_mean`).shape[0];
        const ones = new Float32Array(c).fill(1);
        inits.push(floatTensor(`${name}/scale`, [c], l.config.scale === false ? ones : w(`${name}/gamma`).data));
        inits.push(floatTensor(`${name}/bias`, [c], l.config.center === false ? new Float32Array(c) : w(`${name}/beta`).data));
        inits.push(floatTensor(`${name}/mean`, [c], w(`${name}/moving_mean`).data));
        inits.push(floatTensor(`${name}/var`, [c], w(`${name}/moving_variance`).data));
        nodes.push({
          opType: 'BatchNormalization',
          name,
          input: [input, `${name}/scale`, `${name}/bias`, `${name}/mean`, `${name}/var`],
          output: [name],
          attribute: [attr.float('epsilon', Number(l.config.epsilon ?? 1e-3))],
        });
        tensorOf.set(name, name);
        break;
      }
      case 'Activation':
        tensorOf.set(name, activation(name, String(get<string>(l, 'activation')), inputsOf(l)[0]));
        break;
      case 'ReLU':
        tensorOf.set(name, activation(name, 'relu', inputsOf(l)[0]));
        break;
      case 'Add': {
        const ins = inputsOf(l);
        let acc = ins[0];
        for (let i = 1; i < ins.length; i++) {
          const out = i === ins.length - 1 ? name : `${name}/partial${i}`;
          nodes.push({ opType: 'Add', name: out, input: [acc, ins[i]], output: [out] });
          acc = out;
        }
        tensorOf.set(name, acc);
        break;
      }
      case 'MaxPooling2D':
      case 'AveragePooling2D': {
        const pool = get<number[]>(l, 'pool_size');
        const strides = (l.config.strides as number[] | null) ?? pool;
        const attributes = [attr.ints('kernel_shape', pool), attr.ints('strides', strides)];
        const padding = get<string>(l, 'padding');
        if (padding === 'same') attributes.push(attr.string('auto_pad', 'SAME_UPPER'));
        else if (padding !== 'valid') throw new ModelError(`layer ${name}: padding ${padding} is not supported`);
        if (l.class_name === 'AveragePooling2D') attributes.push(attr.int('count_include_pad', 0));
        nodes.push({ opType: l.class_name === 'MaxPooling2D' ? 'MaxPool' : 'AveragePool', name, input: [inputsOf(l)[0]], output: [name], attribute: attributes });
        tensorOf.set(name, name);
        break;
      }
      case 'GlobalAveragePooling2D': {
        nodes.push({ opType: 'GlobalAveragePool', name: `${name}/gap`, input: [inputsOf(l)[0]], output: [`${name}/gap`] });
        nodes.push({ opType: 'Flatten', name, input: [`${name}/gap`], output: [name], attribute: [attr.int('axis', 1)] });
        tensorOf.set(name, name);
        break;
      }
      case 'Flatten': {
        // Keras flattens NHWC; our tensors are NCHW. Only a no-op flatten of [N, C, 1, 1] or [N, C] is layout-safe.
        nodes.push({ opType: 'Flatten', name, input: [inputsOf(l)[0]], output: [name], attribute: [attr.int('axis', 1)] });
        tensorOf.set(name, name);
        break;
      }
      case 'Dense': {
        const kernel = w(`${name}/kernel`);
        const units = kernel.shape[1];
        inits.push(floatTensor(`${name}/W`, kernel.shape, kernel.data));
        const useBias = l.config.use_bias !== false;
        inits.push(floatTensor(`${name}/B`, [units], useBias ? w(`${name}/bias`).data : new Float32Array(units)));
        const act = String(l.config.activation ?? 'linear');
        const gemmOut = act === 'linear' ? name : `${name}/logits`;
        nodes.push({ opType: 'Gemm', name: `${name}/gemm`, input: [inputsOf(l)[0], `${name}/W`, `${name}/B`], output: [gemmOut] });
        tensorOf.set(name, activation(name, act, gemmOut));
        break;
      }
      default:
        throw new ModelError(`layer ${name} has type ${l.class_name}, which the Keras->ONNX converter does not support`);
    }
  }

  const outputInfos = [];
  for (const [outName, layerName] of Object.entries(outputs)) {
    if (!layers.has(layerName)) {
      throw new ModelError(`the model has no layer named ${layerName} (expected for output "${outName}"): is this the right model?`);
    }
    nodes.push({ opType: 'Identity', name: `output/${outName}`, input: [tensorOf.get(layerName)!], output: [outName] });
    outputInfos.push(floatValueInfo(outName));
  }

  return encodeModel({
    irVersion: 8,
    producerName: opts.producer ?? 'musc-ts keras-to-onnx',
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'converted',
      node: nodes,
      initializer: inits,
      input: [floatValueInfo(inputName, ['batch', 3, 'height', 'width'])],
      output: outputInfos,
    },
  });
}
