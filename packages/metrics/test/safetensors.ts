/**
 * A tiny read-only safetensors reader for the tests (8-byte little-endian header length, JSON
 * header, raw little-endian data). The package itself needs no file format.
 */
import { readFileSync } from 'node:fs';

export interface Tensor {
  dtype: string;
  shape: number[];
  data: Float32Array | Float64Array;
}

/** Read every F32 / F64 / I64 tensor of a file (I64 decoded to Float64Array). */
export function readSafetensors(path: string): Map<string, Tensor> {
  const bytes = readFileSync(path);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (n + 8 > bytes.length) throw new Error(`${path}: header length ${n} exceeds the file; not safetensors`);
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, Tensor>();
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = e.data_offsets;
    const raw = bytes.subarray(8 + n + a, 8 + n + b);
    const copy = new Uint8Array(raw); // aligned copy
    let data: Float32Array | Float64Array;
    if (e.dtype === 'F32') data = new Float32Array(copy.buffer);
    else if (e.dtype === 'F64') data = new Float64Array(copy.buffer);
    else if (e.dtype === 'I64') data = Float64Array.from(new BigInt64Array(copy.buffer), Number);
    else throw new Error(`${path}: tensor "${name}" has dtype ${e.dtype}; this reader handles F32, F64, I64`);
    const count = e.shape.reduce((x, y) => x * y, 1);
    if (data.length !== count) throw new Error(`${path}: tensor "${name}" has ${data.length} values for shape [${e.shape}]`);
    out.set(name, { dtype: e.dtype, shape: e.shape, data });
  }
  return out;
}
