/**
 * The host tensor: the one tensor type that crosses package and engine boundaries.
 *
 * Stage boundaries use NCHW (batch, channels, height, width), as ONNX and the official
 * PyTorch checkpoints do. Engines convert on entry and exit (tfjs works in NHWC inside).
 */

/** Element types a host tensor may hold. Masks are `uint8` (0 or 1); everything else `float32`. */
export type DType = 'float32' | 'uint8' | 'int32';

/** Memory layout of a 4-D tensor; `'any'` for tensors that are not image-like (vectors, tokens). */
export type Layout = 'NCHW' | 'NHWC' | 'any';

type DataFor<D extends DType> = D extends 'float32' ? Float32Array : D extends 'uint8' ? Uint8Array : Int32Array;

/** A dense, row-major tensor living in host memory. */
export interface HostTensor<D extends DType = 'float32'> {
  readonly dtype: D;
  readonly shape: readonly number[];
  readonly layout: Layout;
  readonly data: DataFor<D>;
}

/** Number of elements of a shape (1 for a scalar shape `[]`). */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`invalid dimension ${d} in shape [${shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

function check(dtype: DType, shape: readonly number[], length: number): void {
  const n = sizeOf(shape);
  if (n !== length) {
    throw new Error(`${dtype} tensor of shape [${shape.join(', ')}] needs ${n} elements, got ${length}`);
  }
}

/**
 * Wraps a Float32Array as a host tensor (no copy).
 * @throws Error when the data length does not match the shape.
 */
export function tensor(data: Float32Array, shape: readonly number[], layout: Layout = 'any'): HostTensor<'float32'> {
  check('float32', shape, data.length);
  return { dtype: 'float32', shape: [...shape], layout, data };
}

/** A zero-filled float32 host tensor. */
export function zeros(shape: readonly number[], layout: Layout = 'any'): HostTensor<'float32'> {
  return tensor(new Float32Array(sizeOf(shape)), shape, layout);
}

/**
 * Wraps a Uint8Array mask (values 0 or 1, NCHW with C = 1 or [N, H, W]) as a host tensor (no copy).
 * @throws Error when the data length does not match the shape.
 */
export function mask(data: Uint8Array, shape: readonly number[], layout: Layout = 'NCHW'): HostTensor<'uint8'> {
  check('uint8', shape, data.length);
  return { dtype: 'uint8', shape: [...shape], layout, data };
}

/** Wraps an Int32Array (timesteps, indices) as a host tensor (no copy). */
export function int32(data: Int32Array, shape: readonly number[]): HostTensor<'int32'> {
  check('int32', shape, data.length);
  return { dtype: 'int32', shape: [...shape], layout: 'any', data };
}

/**
 * Permutes a 4-D float tensor between NCHW and NHWC, returning a new tensor.
 * @throws Error when the tensor is not 4-D or already has the target layout.
 */
export function toLayout(t: HostTensor<'float32'>, target: 'NCHW' | 'NHWC'): HostTensor<'float32'> {
  if (t.shape.length !== 4) throw new Error(`toLayout needs a 4-D tensor, got shape [${t.shape.join(', ')}]`);
  if (t.layout === target) return t;
  if (t.layout === 'any') throw new Error('toLayout: source layout unknown (layout "any")');
  const out = new Float32Array(t.data.length);
  const src = t.data;
  if (target === 'NHWC') {
    const [n, c, h, w] = t.shape;
    const hw = h * w;
    for (let b = 0; b < n; b++)
      for (let ch = 0; ch < c; ch++) {
        const s0 = (b * c + ch) * hw;
        for (let i = 0; i < hw; i++) out[(b * hw + i) * c + ch] = src[s0 + i];
      }
    return tensor(out, [n, h, w, c], 'NHWC');
  }
  const [n, h, w, c] = t.shape;
  const hw = h * w;
  for (let b = 0; b < n; b++)
    for (let i = 0; i < hw; i++) {
      const s0 = (b * hw + i) * c;
      for (let ch = 0; ch < c; ch++) out[(b * c + ch) * hw + i] = src[s0 + ch];
    }
  return tensor(out, [n, c, h, w], 'NCHW');
}

/**
 * Concatenates float tensors along axis 0 (the batch axis). Shapes past axis 0 must agree.
 * @throws Error on an empty list or mismatched shapes/layouts.
 */
export function concatBatch(parts: readonly HostTensor<'float32'>[]): HostTensor<'float32'> {
  if (parts.length === 0) throw new Error('concatBatch: no tensors');
  const [first] = parts;
  const rest = first.shape.slice(1).join(',');
  let n = 0;
  for (const p of parts) {
    if (p.shape.slice(1).join(',') !== rest || p.layout !== first.layout) {
      throw new Error(`concatBatch: shape [${p.shape.join(', ')}] ${p.layout} does not match [${first.shape.join(', ')}] ${first.layout}`);
    }
    n += p.shape[0];
  }
  const out = new Float32Array(sizeOf([n, ...first.shape.slice(1)]));
  let off = 0;
  for (const p of parts) {
    out.set(p.data, off);
    off += p.data.length;
  }
  return tensor(out, [n, ...first.shape.slice(1)], first.layout);
}

/** Items `[start, end)` of the batch axis of a float tensor (a copy). */
export function sliceBatch(t: HostTensor<'float32'>, start: number, end: number): HostTensor<'float32'> {
  const per = sizeOf(t.shape.slice(1));
  return tensor(t.data.slice(start * per, end * per), [end - start, ...t.shape.slice(1)], t.layout);
}

/** Largest absolute elementwise difference between two float tensors of one shape. */
export function maxAbsDiff(a: HostTensor<'float32'>, b: HostTensor<'float32'>): number {
  if (a.shape.join(',') !== b.shape.join(',')) {
    throw new Error(`maxAbsDiff: shapes [${a.shape.join(', ')}] and [${b.shape.join(', ')}] differ`);
  }
  let m = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i] - b.data[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}
