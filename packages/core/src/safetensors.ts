/**
 * Reading and writing the safetensors format (https://github.com/huggingface/safetensors):
 * an 8-byte little-endian header length, a JSON header mapping each name to
 * `{dtype, shape, data_offsets}`, then the raw little-endian data.
 *
 * Parameter names and layouts are kept as in the official PyTorch checkpoints
 * (conv weights `[out, in, kh, kw]`, linear `[out, in]`); engines convert on load.
 */
import { constants as bufferConstants } from 'node:buffer';
import { promises as fs } from 'node:fs';
import { tensor, int32, type HostTensor } from './tensor.js';
import { writeFileAtomic } from './atomic.js';

/** dtypes of the safetensors format understood here. */
export type SafetensorsDType = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'U8' | 'BOOL';

const BYTES: Record<SafetensorsDType, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, U8: 1, BOOL: 1 };

/** Header entry of one tensor. */
export interface SafetensorsEntry {
  dtype: SafetensorsDType;
  shape: number[];
  data_offsets: [number, number];
}

/** The header of a safetensors file: its metadata and tensor entries. */
interface Header {
  metadata: Record<string, string>;
  entries: Map<string, SafetensorsEntry>;
  /** Byte offset of the data (8 + header length). */
  dataStart: number;
}

/**
 * Parses and checks the header from the file's first bytes (at least the 8-byte length and the header).
 * @param fileSize the whole file's size, which the entries' offsets must fit.
 * @throws Error when the header is truncated, not JSON, or an entry's offsets or size are inconsistent.
 */
function parseHeader(bytes: Uint8Array, fileSize: number, source: string): Header {
  if (fileSize < 8 || bytes.length < 8) throw new Error(`${source}: not a safetensors file (${fileSize} bytes, need at least 8)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (n > fileSize - 8) throw new Error(`${source}: header length ${n} exceeds the file size ${fileSize}; the file is truncated or not safetensors`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    throw new Error(`${source}: header is not valid JSON (${(e as Error).message}); the file is corrupt or not safetensors`);
  }
  const entries = new Map<string, SafetensorsEntry>();
  const dataLen = fileSize - 8 - n;
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const entry = e as SafetensorsEntry;
    const bpe = BYTES[entry.dtype];
    if (!bpe) throw new Error(`${source}: tensor "${name}" has unsupported dtype ${entry.dtype}`);
    const [b, end] = entry.data_offsets;
    const count = entry.shape.reduce((a, d) => a * d, 1);
    if (end > dataLen || end - b !== count * bpe) {
      throw new Error(
        `${source}: tensor "${name}" (${entry.dtype} [${entry.shape.join(', ')}]) has offsets [${b}, ${end}] inconsistent with its size or the file (${dataLen} data bytes); the file is truncated or corrupt`,
      );
    }
    entries.set(name, entry);
  }
  return { metadata: (header.__metadata__ as Record<string, string>) ?? {}, entries, dataStart: 8 + n };
}

/** The tensor names and entries of a safetensors file, without its data. */
export interface SafetensorsIndex {
  readonly source: string;
  readonly metadata: Record<string, string>;
  /** Tensor names in header order. */
  names(): string[];
  has(name: string): boolean;
  /** Header entry (dtype, shape, offsets) of a tensor. @throws Error when absent. */
  entry(name: string): SafetensorsEntry;
}

/** A parsed safetensors file: raw bytes plus header; tensors are decoded on demand. */
export class SafetensorsFile implements SafetensorsIndex {
  /** Free-form string metadata (`__metadata__`), empty when absent. */
  readonly metadata: Record<string, string>;
  private readonly entries: Map<string, SafetensorsEntry>;

  /**
   * @param bytes the whole file.
   * @param source a name for error messages (usually the path).
   * @throws Error when the header is truncated, not JSON, or an entry's offsets or size are inconsistent.
   */
  constructor(
    private readonly bytes: Uint8Array,
    readonly source = '<buffer>',
  ) {
    const h = parseHeader(bytes, bytes.length, source);
    this.metadata = h.metadata;
    this.entries = h.entries;
    this.dataStart = h.dataStart;
  }

  private readonly dataStart: number;

  /** Tensor names in header order. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** Header entry (dtype, shape, offsets) of a tensor. @throws Error when absent. */
  entry(name: string): SafetensorsEntry {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${this.source}: no tensor named "${name}"`);
    return e;
  }

  private raw(name: string): { e: SafetensorsEntry; buf: ArrayBuffer } {
    const e = this.entry(name);
    const [b, end] = e.data_offsets;
    // Copy so the typed array is aligned whatever the header length was.
    const buf = this.bytes.slice(this.dataStart + b, this.dataStart + end).buffer;
    return { e, buf };
  }

  /**
   * A tensor decoded to float32 (F16, BF16, F64, integer and bool dtypes are converted).
   * Layout is `'any'`: the file does not say it; official 4-D activations are NCHW.
   * @throws Error when absent.
   */
  float32(name: string): HostTensor<'float32'> {
    const { e, buf } = this.raw(name);
    let out: Float32Array;
    switch (e.dtype) {
      case 'F32':
        out = new Float32Array(buf);
        break;
      case 'F64':
        out = Float32Array.from(new Float64Array(buf));
        break;
      case 'I64':
        out = Float32Array.from(new BigInt64Array(buf), Number);
        break;
      case 'I32':
        out = Float32Array.from(new Int32Array(buf));
        break;
      case 'U8':
      case 'BOOL':
        out = Float32Array.from(new Uint8Array(buf));
        break;
      case 'F16':
        out = Float32Array.from(new Uint16Array(buf), halfToFloat);
        break;
      case 'BF16': {
        const u16 = new Uint16Array(buf);
        const u32 = new Uint32Array(u16.length);
        for (let i = 0; i < u16.length; i++) u32[i] = u16[i] << 16;
        out = new Float32Array(u32.buffer);
        break;
      }
    }
    return tensor(out, e.shape);
  }

  /**
   * An integer tensor (I64, I32, U8, BOOL) as int32. @throws Error when absent, not integer, or out of int32 range.
   */
  int32(name: string): HostTensor<'int32'> {
    const { e, buf } = this.raw(name);
    let out: Int32Array;
    if (e.dtype === 'I64') {
      const big = new BigInt64Array(buf);
      out = new Int32Array(big.length);
      for (let i = 0; i < big.length; i++) {
        const v = Number(big[i]);
        if (v > 2147483647 || v < -2147483648) throw new Error(`${this.source}: "${name}"[${i}] = ${v} does not fit int32`);
        out[i] = v;
      }
    } else if (e.dtype === 'I32') out = new Int32Array(buf);
    else if (e.dtype === 'U8' || e.dtype === 'BOOL') out = Int32Array.from(new Uint8Array(buf));
    else throw new Error(`${this.source}: "${name}" is ${e.dtype}, not an integer tensor`);
    return int32(out, e.shape);
  }
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** `fs.readFile` refuses files of 2 GiB or more (a Stable Diffusion checkpoint is 2-4 GiB): those are read in parts. */
const MAX_LENGTH = bufferConstants.MAX_LENGTH;
const READ_FILE_LIMIT = 2 ** 31 - 1;
const READ_CHUNK = 2 ** 28;

/**
 * Reads a safetensors file from disk (files past 2 GiB in 256 MiB parts into one buffer).
 * @throws Error naming the path when it is missing, truncated, corrupt, or larger than a Node
 *   buffer can hold (`buffer.constants.MAX_LENGTH`).
 */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  let bytes: Uint8Array;
  try {
    const size = (await fs.stat(path)).size;
    const b = size < READ_FILE_LIMIT ? await fs.readFile(path) : await readLarge(path, size);
    // A plain Uint8Array view: Buffer's slice() shares memory, the decoders need a copy.
    bytes = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch (e) {
    throw new Error(`cannot read safetensors file ${path}: ${(e as Error).message}`);
  }
  return new SafetensorsFile(bytes, path);
}

async function readLarge(path: string, size: number): Promise<Buffer> {
  if (size > MAX_LENGTH) throw new Error(`${(size / 2 ** 30).toFixed(2)} GiB is more than one buffer can hold (${(MAX_LENGTH / 2 ** 30).toFixed(2)} GiB)`);
  const out = Buffer.allocUnsafe(size);
  const h = await fs.open(path, 'r');
  try {
    for (let at = 0; at < size; ) {
      const { bytesRead } = await h.read(out, at, Math.min(READ_CHUNK, size - at), at);
      if (bytesRead === 0) throw new Error(`the file ended at byte ${at} of ${size} while it was read`);
      at += bytesRead;
    }
  } finally {
    await h.close();
  }
  return out;
}

/**
 * Reads only the header of a safetensors file (a few MB of a multi-GiB checkpoint), to check names
 * and shapes before loading anything.
 * @throws Error naming the path when it is missing, not safetensors, or its header is inconsistent.
 */
export async function readSafetensorsIndex(path: string): Promise<SafetensorsIndex> {
  let h: Header;
  try {
    const f = await fs.open(path, 'r');
    try {
      const size = (await f.stat()).size;
      const len = Buffer.alloc(8);
      await f.read(len, 0, 8, 0);
      const n = size >= 8 ? Number(len.readBigUInt64LE(0)) : 0;
      const bytes = Buffer.alloc(8 + Math.min(n, Math.max(0, size - 8)));
      await f.read(bytes, 0, bytes.length, 0);
      h = parseHeader(bytes, size, path);
    } finally {
      await f.close();
    }
  } catch (e) {
    throw new Error(`cannot read safetensors file ${path}: ${(e as Error).message}`);
  }
  return {
    source: path,
    metadata: h.metadata,
    names: () => [...h.entries.keys()],
    has: (name) => h.entries.has(name),
    entry: (name) => {
      const e = h.entries.get(name);
      if (!e) throw new Error(`${path}: no tensor named "${name}"`);
      return e;
    },
  };
}

/** A tensor to write: float32 as F32, int32 as I32, uint8 as U8. */
export type WritableTensor = HostTensor<'float32'> | HostTensor<'int32'> | HostTensor<'uint8'>;

/**
 * Serialises named tensors (sorted by name, as the reference implementation does) to safetensors bytes.
 */
export function encodeSafetensors(tensors: Record<string, WritableTensor>, metadata: Record<string, string> = {}): Uint8Array {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let off = 0;
  for (const name of names) {
    const t = tensors[name];
    const dtype = t.dtype === 'float32' ? 'F32' : t.dtype === 'int32' ? 'I32' : 'U8';
    header[name] = { dtype, shape: [...t.shape], data_offsets: [off, off + t.data.byteLength] };
    off += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so the data starts 8-byte aligned.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const hbytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + hbytes.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(hbytes.length), true);
  out.set(hbytes, 8);
  let p = 8 + hbytes.length;
  for (const name of names) {
    const d = tensors[name].data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), p);
    p += d.byteLength;
  }
  return out;
}

/**
 * Writes named tensors to a safetensors file atomically (temp file, fsync, rename): a crash or a
 * full disk leaves the previous file intact.
 */
export async function writeSafetensors(path: string, tensors: Record<string, WritableTensor>, metadata: Record<string, string> = {}): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}
