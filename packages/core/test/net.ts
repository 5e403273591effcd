/** A small network that uses every `Ops` method, shared by the recorder and gradient tests. */
import type { Ops, ParamSpec } from '../src/ops.js';
import { Rng } from '../src/random.js';
import { tensor, type HostTensor } from '../src/tensor.js';

export const C = 16;
export const specs: ParamSpec[] = [
  { name: 'conv_in.weight', shape: [C, 3, 3, 3], init: 'normal', std: 0.3 },
  { name: 'conv_in.bias', shape: [C], init: 'normal', std: 0.3 },
  { name: 'down.weight', shape: [C, C, 3, 3], init: 'normal', std: 0.1 },
  { name: 'down.bias', shape: [C], init: 'normal', std: 0.1 },
  { name: 'gn.weight', shape: [C], init: 'normal', std: 1 },
  { name: 'gn.bias', shape: [C], init: 'normal', std: 1 },
  { name: 'ln.weight', shape: [C], init: 'normal', std: 1 },
  { name: 'ln.bias', shape: [C], init: 'normal', std: 1 },
  { name: 'q.weight', shape: [C, C], init: 'normal', std: 0.3 },
  { name: 'k.weight', shape: [C, 8], init: 'normal', std: 0.3 },
  { name: 'v.weight', shape: [C, 8], init: 'normal', std: 0.3 },
  { name: 'ff.weight', shape: [2 * C, C], init: 'normal', std: 0.3 },
  { name: 'ff.bias', shape: [2 * C], init: 'normal', std: 0.3 },
  { name: 'emb.weight', shape: [C, 6], init: 'normal', std: 0.3 },
  { name: 'emb.bias', shape: [C], init: 'normal', std: 0.3 },
  { name: 'out.weight', shape: [4, 2 * C, 1, 1], init: 'normal', std: 0.3 },
];

/** Uses every Ops method once: image [N, 3, 8, 8], context [N, 5, 8], vector [N, 6]. */
export function net<T>(ops: Ops<T>, img: T, ctx: T, vec: T): { y: T; pooled: T; e: T } {
  let h = ops.conv2d(img, 'conv_in.weight', 'conv_in.bias', { padding: 1 });
  h = ops.addChannels(h, ops.linear(ops.silu(vec), 'emb.weight', 'emb.bias'));
  h = ops.silu(ops.groupNorm(h, 4, 'gn.weight', 'gn.bias', 1e-6));
  const d = ops.conv2d(h, 'down.weight', 'down.bias', { padding: [0, 1, 0, 1], stride: 2 }); // [N, C, 4, 4]
  const t = ops.layerNorm(ops.toTokens(d), 'ln.weight', 'ln.bias', 1e-5);
  const a = ops.attention(ops.linear(t, 'q.weight', null), ops.linear(ctx, 'k.weight', null), ops.linear(ctx, 'v.weight', null), 2);
  const [val, gate] = ops.split(ops.linear(a, 'ff.weight', 'ff.bias'), [C, C]);
  const tok = ops.add(t, ops.mul(val, ops.gelu(gate)));
  const m = ops.upsampleNearest2x(ops.fromTokens(tok, 4, 4)); // [N, C, 8, 8]
  const both = ops.concatChannels([ops.instanceNorm(m, 1e-5), ops.sub(h, ops.scale(m, 0.5))]);
  const y = ops.conv2d(both, 'out.weight', null);
  const [m1] = ops.split(y, [1, 3]);
  return { y, pooled: ops.avgPool2d(y, 2, 2), e: ops.exp(ops.clamp(m1, -1, 0.5)) };
}

export function inputs(n: number, seed: number): { img: HostTensor; ctx: HostTensor; vec: HostTensor } {
  const r = new Rng(seed);
  return {
    img: tensor(r.normals(n * 3 * 64), [n, 3, 8, 8], 'NCHW'),
    ctx: tensor(r.normals(n * 5 * 8), [n, 5, 8]),
    vec: tensor(r.normals(n * 6), [n, 6]),
  };
}

export function relErr(got: Float32Array, want: Float32Array): number {
  let m = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    m = Math.max(m, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return m / Math.max(scale, 1e-12);
}
