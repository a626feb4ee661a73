/**
 * Thin typed access to the ONNX protobuf schema (the `onnx-proto` package,
 * protobufjs code generated from onnx.proto). Nothing here is hand-written protobuf.
 */
import onnxProto from 'onnx-proto';

export const onnx = onnxProto.onnx;
export type ModelProto = onnxProto.onnx.ModelProto;
export type GraphProto = onnxProto.onnx.GraphProto;
export type IModelProto = onnxProto.onnx.IModelProto;
export type INodeProto = onnxProto.onnx.INodeProto;
export type ITensorProto = onnxProto.onnx.ITensorProto;
export type IValueInfoProto = onnxProto.onnx.IValueInfoProto;
export type IAttributeProto = onnxProto.onnx.IAttributeProto;

/** ONNX TensorProto.DataType.FLOAT */
export const FLOAT = 1 as const;
/** ONNX TensorProto.DataType.UINT8 */
export const UINT8 = 2 as const;
/** ONNX TensorProto.DataType.INT8 */
export const INT8 = 3 as const;
/** ONNX TensorProto.DataType.INT32 */
export const INT32 = 6 as const;
/** ONNX TensorProto.DataType.INT64 */
export const INT64 = 7 as const;

/** A float32 initializer tensor. */
export function floatTensor(name: string, dims: readonly number[], data: Float32Array): ITensorProto {
  return {
    name,
    dims: [...dims],
    dataType: FLOAT,
    rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  };
}

/** An int64 initializer tensor. */
export function int64Tensor(name: string, dims: readonly number[], values: readonly number[]): ITensorProto {
  const raw = new BigInt64Array(values.map((v) => BigInt(v)));
  return { name, dims: [...dims], dataType: INT64, rawData: new Uint8Array(raw.buffer) };
}

/** Attribute helpers (ONNX AttributeProto.AttributeType values). */
export const attr = {
  int(name: string, i: number): IAttributeProto {
    return { name, type: 2, i };
  },
  ints(name: string, ints: readonly number[]): IAttributeProto {
    return { name, type: 7, ints: [...ints] };
  },
  float(name: string, f: number): IAttributeProto {
    return { name, type: 1, f };
  },
  string(name: string, s: string): IAttributeProto {
    return { name, type: 3, s: new TextEncoder().encode(s) };
  },
};

/** A float tensor value-info with symbolic or fixed dims (`null` = unknown). */
export function floatValueInfo(name: string, dims?: readonly (number | string | null)[]): IValueInfoProto {
  const shape = dims
    ? {
        dim: dims.map((d) =>
          typeof d === 'number' ? { dimValue: d } : typeof d === 'string' ? { dimParam: d } : {},
        ),
      }
    : undefined;
  return { name, type: { tensorType: { elemType: FLOAT, shape } } };
}

let decodedModels = 0;

/**
 * Decodes ONNX model bytes (protobufjs throws on non-ONNX input). Model files are
 * decoded through `OnnxGraph.decode`, once per open.
 */
export function decodeModel(bytes: Uint8Array): ModelProto {
  decodedModels++;
  return onnx.ModelProto.decode(bytes);
}

/** How many models {@link decodeModel} has decoded in this process (lets tests check "once per open"). */
export function decodedModelCount(): number {
  return decodedModels;
}

/** Encodes a model to bytes. */
export function encodeModel(model: IModelProto): Uint8Array {
  return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
}
