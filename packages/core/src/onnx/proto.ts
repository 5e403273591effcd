/**
 * Small builders over `onnx-proto` (the ONNX protobuf schema): tensors, attributes, value infos.
 * Float data is stored as `raw_data` (little-endian, as ONNX requires; Node runs little-endian).
 */
import onnxProto from 'onnx-proto';

export const { onnx } = onnxProto;
export type NodeProto = InstanceType<typeof onnx.NodeProto>;
export type TensorProto = InstanceType<typeof onnx.TensorProto>;
export type ValueInfoProto = InstanceType<typeof onnx.ValueInfoProto>;

/** Attribute values the recorder writes: ints, int lists, floats and strings. */
export type AttrValue = number | number[] | string | { float: number };

/** A float32 initializer / constant named `name`. */
export function floatTensor(name: string, data: Float32Array, dims: readonly number[]): TensorProto {
  return onnx.TensorProto.create({
    name,
    dims: [...dims],
    dataType: onnx.TensorProto.DataType.FLOAT,
    rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  });
}

/** An int64 initializer / constant (shapes, axes, split sizes). */
export function int64Tensor(name: string, values: readonly number[]): TensorProto {
  const data = BigInt64Array.from(values.map((v) => BigInt(v)));
  return onnx.TensorProto.create({
    name,
    dims: [values.length],
    dataType: onnx.TensorProto.DataType.INT64,
    rawData: new Uint8Array(data.buffer),
  });
}

/** A node attribute; integers (and integer lists) become INT(S), `{ float }` FLOAT, strings STRING. */
export function attribute(name: string, v: AttrValue): InstanceType<typeof onnx.AttributeProto> {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return onnx.AttributeProto.create({ name, type: T.STRING, s: new TextEncoder().encode(v) });
  if (Array.isArray(v)) return onnx.AttributeProto.create({ name, type: T.INTS, ints: v });
  if (typeof v === 'object') return onnx.AttributeProto.create({ name, type: T.FLOAT, f: v.float });
  return onnx.AttributeProto.create({ name, type: T.INT, i: v });
}

/** A float32 (or int32) value info; a dimension given as a string is symbolic (e.g. `N` for a dynamic batch). */
export function valueInfo(name: string, dims: readonly (number | string)[], dtype: 'float32' | 'int32' = 'float32'): ValueInfoProto {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: dtype === 'int32' ? onnx.TensorProto.DataType.INT32 : onnx.TensorProto.DataType.FLOAT,
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  });
}
