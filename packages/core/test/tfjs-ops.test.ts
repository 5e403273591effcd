import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
// The Node build of tfjs-core registers no gradients; tfjs-layers does.
import '@tensorflow/tfjs-layers';
import { Rng, tensor, maxAbsDiff, encodeSafetensors, SafetensorsFile, type HostTensor, type ParamSpec } from '../src/index.js';
import { ParamStore, TfjsOps, installConv2DGradOverride, toEnginePerm } from '../src/tfjs/index.js';

// Naive host references on NCHW data with official-layout weights (conv [out, in, kh, kw],
// linear [out, in]), written from the PyTorch definitions.

type H = HostTensor<'float32'>;
const rnd = (rng: Rng, shape: number[], s = 1): H =>
  tensor(
    rng.normals(shape.reduce((a, b) => a * b, 1)).map((v) => v * s),
    shape,
    shape.length === 4 ? 'NCHW' : 'any',
  );

function refConv(x: H, w: H, b: H | null, stride: number, [pt, pb, pl, pr]: number[]): H {
  const [n, c, h, wd] = x.shape;
  const [o, , kh, kw] = w.shape;
  const oh = Math.floor((h + pt + pb - kh) / stride) + 1;
  const ow = Math.floor((wd + pl + pr - kw) / stride) + 1;
  const out = new Float32Array(n * o * oh * ow);
  for (let bi = 0; bi < n; bi++)
    for (let oc = 0; oc < o; oc++)
      for (let i = 0; i < oh; i++)
        for (let j = 0; j < ow; j++) {
          let s = b ? b.data[oc] : 0;
          for (let ic = 0; ic < c; ic++)
            for (let ki = 0; ki < kh; ki++)
              for (let kj = 0; kj < kw; kj++) {
                const y = i * stride + ki - pt;
                const xx = j * stride + kj - pl;
                if (y < 0 || y >= h || xx < 0 || xx >= wd) continue;
                s += x.data[((bi * c + ic) * h + y) * wd + xx] * w.data[((oc * c + ic) * kh + ki) * kw + kj];
              }
          out[((bi * o + oc) * oh + i) * ow + j] = s;
        }
  return tensor(out, [n, o, oh, ow], 'NCHW');
}

/** Normalises groups of `size` consecutive NCHW elements with stride pattern given by index lists. */
function refGroupNorm(x: H, groups: number, w: H | null, b: H | null, eps: number): H {
  const [n, c, h, wd] = x.shape;
  const per = (c / groups) * h * wd;
  const out = new Float32Array(x.data.length);
  for (let bi = 0; bi < n; bi++)
    for (let g = 0; g < groups; g++) {
      const off = (bi * c + g * (c / groups)) * h * wd; // channels of a group are contiguous in NCHW
      let mean = 0;
      for (let i = 0; i < per; i++) mean += x.data[off + i];
      mean /= per;
      let v = 0;
      for (let i = 0; i < per; i++) v += (x.data[off + i] - mean) ** 2;
      v /= per;
      for (let i = 0; i < per; i++) {
        const ch = g * (c / groups) + Math.floor(i / (h * wd));
        out[off + i] = ((x.data[off + i] - mean) / Math.sqrt(v + eps)) * (w ? w.data[ch] : 1) + (b ? b.data[ch] : 0);
      }
    }
  return tensor(out, x.shape, 'NCHW');
}

function refLayerNorm(x: H, w: H, b: H, eps: number): H {
  const c = x.shape[x.shape.length - 1];
  const out = new Float32Array(x.data.length);
  for (let r = 0; r < x.data.length / c; r++) {
    let mean = 0;
    for (let i = 0; i < c; i++) mean += x.data[r * c + i];
    mean /= c;
    let v = 0;
    for (let i = 0; i < c; i++) v += (x.data[r * c + i] - mean) ** 2;
    v /= c;
    for (let i = 0; i < c; i++) out[r * c + i] = ((x.data[r * c + i] - mean) / Math.sqrt(v + eps)) * w.data[i] + b.data[i];
  }
  return tensor(out, x.shape);
}

function refLinear(x: H, w: H, b: H | null): H {
  const [o, cin] = w.shape;
  const rows = x.data.length / cin;
  const out = new Float32Array(rows * o);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < o; j++) {
      let s = b ? b.data[j] : 0;
      for (let i = 0; i < cin; i++) s += x.data[r * cin + i] * w.data[j * cin + i];
      out[r * o + j] = s;
    }
  return tensor(out, [...x.shape.slice(0, -1), o]);
}

function refAttention(q: H, k: H, v: H, heads: number): H {
  const [n, lq, c] = q.shape;
  const lk = k.shape[1];
  const d = c / heads;
  const out = new Float32Array(n * lq * c);
  for (let b = 0; b < n; b++)
    for (let hd = 0; hd < heads; hd++)
      for (let i = 0; i < lq; i++) {
        const s = new Float64Array(lk);
        for (let j = 0; j < lk; j++) {
          let dot = 0;
          for (let t = 0; t < d; t++) dot += q.data[(b * lq + i) * c + hd * d + t] * k.data[(b * lk + j) * c + hd * d + t];
          s[j] = dot / Math.sqrt(d);
        }
        const m = Math.max(...s);
        let z = 0;
        for (let j = 0; j < lk; j++) z += s[j] = Math.exp(s[j] - m);
        for (let t = 0; t < d; t++) {
          let acc = 0;
          for (let j = 0; j < lk; j++) acc += (s[j] / z) * v.data[(b * lk + j) * c + hd * d + t];
          out[(b * lq + i) * c + hd * d + t] = acc;
        }
      }
  return tensor(out, [n, lq, c]);
}

/** erf by Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7). */
function erf(x: number): number {
  const s = Math.sign(x);
  const a = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * a);
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-a * a);
  return s * y;
}

const mapEl = (x: H, f: (v: number) => number): H => tensor(x.data.map(f), x.shape, x.layout);

/** NCHW map element accessor helpers. */
function refUpsample(x: H): H {
  const [n, c, h, w] = x.shape;
  const out = new Float32Array(n * c * 4 * h * w);
  for (let p = 0; p < n * c; p++)
    for (let i = 0; i < 2 * h; i++) for (let j = 0; j < 2 * w; j++) out[(p * 2 * h + i) * 2 * w + j] = x.data[(p * h + (i >> 1)) * w + (j >> 1)];
  return tensor(out, [n, c, 2 * h, 2 * w], 'NCHW');
}

function refAvgPool(x: H, k: number, s: number): H {
  const [n, c, h, w] = x.shape;
  const oh = Math.floor((h - k) / s) + 1;
  const ow = Math.floor((w - k) / s) + 1;
  const out = new Float32Array(n * c * oh * ow);
  for (let p = 0; p < n * c; p++)
    for (let i = 0; i < oh; i++)
      for (let j = 0; j < ow; j++) {
        let acc = 0;
        for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) acc += x.data[(p * h + i * s + a) * w + j * s + b];
        out[(p * oh + i) * ow + j] = acc / (k * k);
      }
  return tensor(out, [n, c, oh, ow], 'NCHW');
}

/** Channels [from, to) of an NCHW map. */
function refChannels(x: H, from: number, to: number): H {
  const [n, c, h, w] = x.shape;
  const hw = h * w;
  const out = new Float32Array(n * (to - from) * hw);
  for (let b = 0; b < n; b++) out.set(x.data.subarray((b * c + from) * hw, (b * c + to) * hw), b * (to - from) * hw);
  return tensor(out, [n, to - from, h, w], 'NCHW');
}

const SPECS: ParamSpec[] = [
  { name: 'conv3.weight', shape: [6, 4, 3, 3], init: 'kaiming' },
  { name: 'conv3.bias', shape: [6], init: 'bias', fanIn: 36 },
  { name: 'down.weight', shape: [5, 4, 3, 3], init: 'kaiming' },
  { name: 'down.bias', shape: [5], init: 'bias', fanIn: 36 },
  { name: 'nin.weight', shape: [3, 4, 1, 1], init: 'kaiming' },
  { name: 'k2.weight', shape: [3, 4, 2, 3], init: 'kaiming' },
  { name: 'norm.weight', shape: [8], init: 'normal', std: 0.5 },
  { name: 'norm.bias', shape: [8], init: 'normal', std: 0.5 },
  { name: 'lin.weight', shape: [12, 8], init: 'kaiming' },
  { name: 'lin.bias', shape: [12], init: 'bias', fanIn: 8 },
  { name: 'ln.weight', shape: [8], init: 'normal', std: 0.5 },
  { name: 'ln.bias', shape: [8], init: 'normal', std: 0.5 },
];

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`TfjsOps on ${backend}`, () => {
    let store: ParamStore;
    let ops: TfjsOps;
    let P: Record<string, H>;
    const rng = new Rng(7);
    const TOL = 1e-5;

    beforeAll(async () => {
      await tf.setBackend(backend);
      await tf.ready();
      store = ParamStore.create(SPECS, 3);
      ops = new TfjsOps(store);
      P = await store.toHost();
    });
    afterAll(() => store.dispose());

    /** Runs an op on host inputs and reads the result back, disposing every tfjs tensor. */
    async function run(f: (...xs: tf.Tensor[]) => tf.Tensor, ...xs: H[]): Promise<H> {
      const ts = xs.map((x) => ops.input(x));
      const y = f(...ts);
      const out = await ops.read(y);
      tf.dispose([...ts, y]);
      return out;
    }

    it('reports its engine and logical shapes', () => {
      expect(ops.engine).toBe(`tfjs-${backend}`);
      const x = ops.input(rnd(rng, [2, 3, 4, 5]));
      expect(x.shape).toEqual([2, 4, 5, 3]);
      expect(ops.shape(x)).toEqual([2, 3, 4, 5]);
      const t = ops.toTokens(x);
      expect(ops.shape(t)).toEqual([2, 20, 3]);
      tf.dispose([x, t]);
    });

    it('conv2d matches a direct convolution: 3x3 pad 1, stride 2 with (0,1,0,1), 1x1, 2x3 kernel, asymmetric', async () => {
      const x = rnd(rng, [2, 4, 9, 8]);
      const cases: Array<[string, string | null, number, number | [number, number, number, number]]> = [
        ['conv3.weight', 'conv3.bias', 1, 1],
        ['down.weight', 'down.bias', 2, [0, 1, 0, 1]],
        ['conv3.weight', 'conv3.bias', 2, 1],
        ['conv3.weight', null, 1, 0],
        ['nin.weight', null, 1, 0],
        ['k2.weight', null, 1, [1, 0, 2, 1]],
        ['k2.weight', null, 3, 2],
      ];
      for (const [w, b, stride, padding] of cases) {
        const got = await run((t) => ops.conv2d(t, w, b, { stride, padding }), x);
        const p = typeof padding === 'number' ? [padding, padding, padding, padding] : padding;
        const want = refConv(x, P[w], b ? P[b] : null, stride, p);
        expect(got.shape).toEqual(want.shape);
        expect(maxAbsDiff(got, want), `${w} stride ${stride} pad ${p}`).toBeLessThan(TOL);
      }
    });

    it('conv2d rejects a channel mismatch naming the weight', () => {
      const x = ops.input(rnd(rng, [1, 3, 4, 4]));
      expect(() => ops.conv2d(x, 'conv3.weight', null)).toThrow(/conv3\.weight.*3 channels.*expects 4/);
      expect(() => ops.conv2d(x, 'nope.weight', null)).toThrow(/"nope\.weight" is not in the store/);
      x.dispose();
    });

    it('groupNorm and instanceNorm follow the PyTorch formulas', async () => {
      const x = rnd(rng, [2, 8, 5, 3], 2);
      for (const groups of [1, 2, 4, 8]) {
        const got = await run((t) => ops.groupNorm(t, groups, 'norm.weight', 'norm.bias', 1e-6), x);
        expect(maxAbsDiff(got, refGroupNorm(x, groups, P['norm.weight'], P['norm.bias'], 1e-6)), `groups ${groups}`).toBeLessThan(TOL);
      }
      const noAffine = await run((t) => ops.groupNorm(t, 4, null, null, 1e-5), x);
      expect(maxAbsDiff(noAffine, refGroupNorm(x, 4, null, null, 1e-5))).toBeLessThan(TOL);
      const inst = await run((t) => ops.instanceNorm(t, 1e-5), x);
      expect(maxAbsDiff(inst, refGroupNorm(x, 8, null, null, 1e-5))).toBeLessThan(TOL);
      const t = ops.input(x);
      expect(() => ops.groupNorm(t, 3, null, null, 1e-6)).toThrow(/8 channels cannot be split into 3 groups/);
      t.dispose();
    });

    it('layerNorm, linear, silu, gelu, clamp, exp, scale and add/sub/mul match', async () => {
      const tok = rnd(rng, [2, 5, 8], 1.5);
      expect(
        maxAbsDiff(await run((t) => ops.layerNorm(t, 'ln.weight', 'ln.bias', 1e-5), tok), refLayerNorm(tok, P['ln.weight'], P['ln.bias'], 1e-5)),
      ).toBeLessThan(TOL);
      expect(maxAbsDiff(await run((t) => ops.linear(t, 'lin.weight', 'lin.bias'), tok), refLinear(tok, P['lin.weight'], P['lin.bias']))).toBeLessThan(TOL);
      const vec = rnd(rng, [3, 8]);
      expect(maxAbsDiff(await run((t) => ops.linear(t, 'lin.weight', null), vec), refLinear(vec, P['lin.weight'], null))).toBeLessThan(TOL);
      const x = rnd(rng, [2, 3, 4, 4], 3);
      const y = rnd(rng, [2, 3, 4, 4]);
      expect(
        maxAbsDiff(
          await run((t) => ops.silu(t), x),
          mapEl(x, (v) => v / (1 + Math.exp(-v))),
        ),
      ).toBeLessThan(TOL);
      expect(
        maxAbsDiff(
          await run((t) => ops.gelu(t), x),
          mapEl(x, (v) => 0.5 * v * (1 + erf(v / Math.SQRT2))),
        ),
      ).toBeLessThan(TOL);
      expect(
        maxAbsDiff(
          await run((t) => ops.clamp(t, -1, 2), x),
          mapEl(x, (v) => Math.min(2, Math.max(-1, v))),
        ),
      ).toBe(0);
      expect(maxAbsDiff(await run((t) => ops.exp(t), y), mapEl(y, Math.exp))).toBeLessThan(TOL);
      expect(
        maxAbsDiff(
          await run((t) => ops.scale(t, 0.18215), x),
          mapEl(x, (v) => v * 0.18215),
        ),
      ).toBeLessThan(1e-6);
      const zip = (f: (a: number, b: number) => number): H =>
        tensor(
          x.data.map((v, i) => f(v, y.data[i])),
          x.shape,
          'NCHW',
        );
      expect(
        maxAbsDiff(
          await run((a, b) => ops.add(a, b), x, y),
          zip((a, b) => a + b),
        ),
      ).toBe(0);
      expect(
        maxAbsDiff(
          await run((a, b) => ops.sub(a, b), x, y),
          zip((a, b) => a - b),
        ),
      ).toBe(0);
      expect(
        maxAbsDiff(
          await run((a, b) => ops.mul(a, b), x, y),
          zip((a, b) => a * b),
        ),
      ).toBe(0);
      const m = ops.input(x);
      const v = tf.ones([3]);
      expect(() => ops.add(m, v)).toThrow(/different ranks/);
      tf.dispose([m, v]);
    });

    it('addChannels adds a per-sample channel vector', async () => {
      const x = rnd(rng, [2, 3, 2, 4]);
      const v = rnd(rng, [2, 3]);
      const want = tensor(
        x.data.map((val, i) => val + v.data[Math.floor(i / 8)]),
        x.shape,
        'NCHW',
      );
      expect(maxAbsDiff(await run((a, b) => ops.addChannels(a, b), x, v), want)).toBe(0);
    });

    it('attention matches softmax(q k^T / sqrt(d)) v per head, self and cross', async () => {
      // [70, 70] and [65, 64] exceed the short-sequence size and take the per-head path.
      for (const [n, lq, lk, heads] of [
        [2, 6, 6, 1],
        [2, 6, 6, 2],
        [2, 5, 7, 4],
        [1, 6, 6, 1],
        [2, 70, 70, 2],
        [1, 65, 64, 1],
      ]) {
        const q = rnd(rng, [n, lq, 8], 2);
        const k = rnd(rng, [n, lk, 8], 2);
        const v = rnd(rng, [n, lk, 8]);
        const got = await run((a, b, c) => ops.attention(a, b, c, heads), q, k, v);
        expect(maxAbsDiff(got, refAttention(q, k, v, heads)), `n ${n} lq ${lq} lk ${lk} heads ${heads}`).toBeLessThan(TOL);
      }
    });

    it('attention backward works on both paths, batch 1 with 1 head included', async () => {
      // Reference gradient: the same math as one batched matMul, written with raw tfjs ops.
      for (const [n, l, heads] of [
        [1, 6, 1],
        [1, 70, 1],
        [2, 70, 2],
      ]) {
        const q = tf.tensor(rnd(rng, [n, l, 8]).data, [n, l, 8]);
        const k = tf.tensor(rnd(rng, [n, l, 8]).data, [n, l, 8]);
        const v = tf.tensor(rnd(rng, [n, l, 8]).data, [n, l, 8]);
        const r = tf.tensor(rnd(rng, [n, l, 8]).data, [n, l, 8]);
        const d = 8 / heads;
        const ref = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor): tf.Scalar => {
          const ph = (t: tf.Tensor) => tf.reshape(tf.transpose(tf.reshape(t, [n, l, heads, d]), [0, 2, 1, 3]), [n * heads, l, d]);
          const o = tf.matMul(tf.softmax(tf.div(tf.matMul(ph(a), ph(b), false, true), Math.sqrt(d))), ph(c));
          return tf.sum(tf.mul(tf.reshape(tf.transpose(tf.reshape(o, [n, heads, l, d]), [0, 2, 1, 3]), [n, l, 8]), r));
        };
        const got = tf.grads((a, b, c) => tf.sum(tf.mul(ops.attention(a, b, c, heads), r)) as tf.Scalar)([q, k, v]);
        const want = tf.grads(ref)([q, k, v]);
        for (let i = 0; i < 3; i++) {
          const diff = (await tf.max(tf.abs(tf.sub(got[i], want[i]))).data())[0];
          expect(diff, `n ${n} l ${l} heads ${heads} input ${i}`).toBeLessThan(1e-5);
        }
        tf.dispose([q, k, v, r, ...got, ...want]);
      }
    });

    it('upsampleNearest2x, avgPool2d, concatChannels, split, toTokens/fromTokens', async () => {
      const x = rnd(rng, [2, 3, 5, 4]);
      const y = rnd(rng, [2, 2, 5, 4]);
      expect(maxAbsDiff(await run((t) => ops.upsampleNearest2x(t), x), refUpsample(x))).toBe(0);
      expect(maxAbsDiff(await run((t) => ops.avgPool2d(t, 2, 2), x), refAvgPool(x, 2, 2))).toBeLessThan(1e-6);
      expect(maxAbsDiff(await run((t) => ops.avgPool2d(t, 3, 1), x), refAvgPool(x, 3, 1))).toBeLessThan(1e-6);
      const cat = await run((a, b) => ops.concatChannels([a, b]), x, y);
      expect(cat.shape).toEqual([2, 5, 5, 4]);
      expect(maxAbsDiff(refChannels(cat, 0, 3), x)).toBe(0);
      expect(maxAbsDiff(refChannels(cat, 3, 5), y)).toBe(0);
      const t = ops.input(cat);
      const parts = ops.split(t, [1, 4]);
      expect(maxAbsDiff(await ops.read(parts[0]), refChannels(cat, 0, 1))).toBe(0);
      expect(maxAbsDiff(await ops.read(parts[1]), refChannels(cat, 1, 5))).toBe(0);
      expect(() => ops.split(t, [1, 3])).toThrow(/do not add up to 5/);
      const tokens = ops.toTokens(t);
      const tok = await ops.read(tokens);
      // token l = (i, j) holds the channel vector at row i, column j.
      expect(tok.shape).toEqual([2, 20, 5]);
      expect(tok.data[(1 * 20 + 2 * 4 + 3) * 5 + 4]).toBe(cat.data[((1 * 5 + 4) * 5 + 2) * 4 + 3]);
      const tokParts = ops.split(tokens, [2, 3]);
      expect(ops.shape(tokParts[1])).toEqual([2, 20, 3]);
      const back = ops.fromTokens(tokens, 5, 4);
      expect(maxAbsDiff(await ops.read(back), cat)).toBe(0);
      expect(() => ops.fromTokens(tokens, 4, 4)).toThrow(/cannot form a 4x4 map/);
      tf.dispose([t, ...parts, tokens, back, ...tokParts]);
    });

    it('ops keep no internal intermediates', async () => {
      const before = tf.memory().numTensors;
      const x = rnd(rng, [1, 4, 6, 6]);
      const y = await run((t) => {
        const h = ops.silu(ops.groupNorm(ops.conv2d(t, 'conv3.weight', 'conv3.bias', { padding: 1 }), 2, null, null, 1e-6));
        return h;
      }, x);
      expect(y.shape).toEqual([1, 6, 6, 6]);
      // Intermediates of the chain above (conv and norm outputs) are the caller's: 2 remain.
      expect(tf.memory().numTensors - before).toBe(2);
    });
  });
}

// ---- Gradients (tf.variableGrads through TfjsOps) ----

const GRAD_SPECS: ParamSpec[] = [
  { name: 'g.conv.weight', shape: [8, 8, 3, 3], init: 'kaiming' },
  { name: 'g.conv.bias', shape: [8], init: 'bias', fanIn: 72 },
  { name: 'g.down.weight', shape: [8, 8, 3, 3], init: 'kaiming' },
  { name: 'g.down.bias', shape: [8], init: 'bias', fanIn: 72 },
  { name: 'g.norm.weight', shape: [8], init: 'normal', std: 1 },
  { name: 'g.norm.bias', shape: [8], init: 'normal', std: 0.3 },
  { name: 'g.ln.weight', shape: [8], init: 'normal', std: 1 },
  { name: 'g.ln.bias', shape: [8], init: 'normal', std: 0.3 },
  { name: 'g.qkv.weight', shape: [24, 8], init: 'kaiming' },
  { name: 'g.qkv.bias', shape: [24], init: 'bias', fanIn: 8 },
  { name: 'g.out.weight', shape: [8, 8], init: 'kaiming' },
  { name: 'g.emb.weight', shape: [8, 4], init: 'kaiming' },
  { name: 'g.emb.bias', shape: [8], init: 'bias', fanIn: 4 },
];

/**
 * A small ResBlock + transformer-like composition touching every differentiable op.
 * `withConv` false leaves convs out (wasm lacks Conv2DBackpropFilter without the override).
 * `bound` is the clamp range: 0.6 clips many values; finite differences need a wide one (no kinks).
 */
function composed(ops: TfjsOps, x: tf.Tensor, e: tf.Tensor, r: tf.Tensor, withConv: boolean, bound: number): tf.Scalar {
  let h = withConv ? ops.conv2d(x, 'g.conv.weight', 'g.conv.bias', { padding: 1 }) : x;
  h = ops.silu(ops.groupNorm(h, 4, 'g.norm.weight', 'g.norm.bias', 1e-6));
  const [, , hh, ww] = ops.shape(h);
  const t = ops.layerNorm(ops.toTokens(h), 'g.ln.weight', 'g.ln.bias', 1e-5);
  const [q, k, v] = ops.split(ops.linear(t, 'g.qkv.weight', 'g.qkv.bias'), [8, 8, 8]);
  const a = ops.linear(ops.gelu(ops.attention(q, k, v, 2)), 'g.out.weight', null);
  h = ops.addChannels(ops.add(h, ops.fromTokens(a, hh, ww)), ops.linear(e, 'g.emb.weight', 'g.emb.bias'));
  const small = withConv ? ops.conv2d(h, 'g.down.weight', 'g.down.bias', { stride: 2, padding: [0, 1, 0, 1] }) : ops.avgPool2d(h, 2, 2);
  h = ops.concatChannels([ops.upsampleNearest2x(small), ops.sub(x, h)]);
  h = ops.mul(h, ops.exp(ops.clamp(ops.scale(h, 0.3), -bound, bound)));
  return tf.sum(tf.mul(h, r));
}

interface GradRun {
  loss: number;
  grads: Record<string, Float32Array>;
}

async function gradsOf(backend: string, withConv: boolean, bound: number, perturb?: { name: string; dir: Float32Array; eps: number }): Promise<GradRun> {
  await tf.setBackend(backend);
  const rng = new Rng(11);
  const store = ParamStore.create(GRAD_SPECS, 5);
  if (perturb) {
    const host = await store.toHost(perturb.name);
    const p = host[perturb.name];
    const moved = tensor(
      p.data.map((val, i) => val + perturb.eps * perturb.dir[i]),
      p.shape,
    );
    const f = new SafetensorsFile(encodeSafetensors({ [perturb.name]: moved }));
    store.load(f, { strict: false });
  }
  const ops = new TfjsOps(store);
  const x = ops.input(rnd(rng, [2, 8, 6, 6]));
  const e = ops.input(rnd(rng, [2, 4]));
  const r = ops.input(rnd(rng, [2, 16, 6, 6]));
  const names = store.names((n) => withConv || !/conv|down/.test(n));
  const vars = names.map((n) => store.get(n));
  const { value, grads } = tf.variableGrads(() => composed(ops, x, e, r, withConv, bound), vars);
  // Gradients come keyed by tfjs variable name and in the engine layout (compared in that layout).
  const out: Record<string, Float32Array> = {};
  for (const [i, n] of names.entries()) out[n] = (await grads[vars[i].name].data()) as Float32Array;
  const loss = (await value.data())[0];
  tf.dispose([value, x, e, r, ...Object.values(grads)]);
  store.dispose();
  return { loss, grads: out };
}

describe('TfjsOps gradients', () => {
  const relErr = (a: Float32Array, b: Float32Array): number => {
    let num = 0;
    let den = 0;
    for (let i = 0; i < a.length; i++) {
      num = Math.max(num, Math.abs(a[i] - b[i]));
      den = Math.max(den, Math.abs(b[i]));
    }
    return num / den;
  };

  it('wasm matches cpu on every differentiable op except conv (relative error <= 1e-5)', async () => {
    const cpu = await gradsOf('cpu', false, 0.6);
    const wasm = await gradsOf('wasm', false, 0.6);
    expect(Math.abs(cpu.loss - wasm.loss) / Math.abs(cpu.loss)).toBeLessThan(1e-5);
    expect(Object.keys(cpu.grads).length).toBe(9);
    for (const n of Object.keys(cpu.grads)) {
      expect(
        cpu.grads[n].some((g) => g !== 0),
        `${n} gradient is non-zero`,
      ).toBe(true);
      expect(relErr(wasm.grads[n], cpu.grads[n]), n).toBeLessThan(1e-5);
    }
  });

  it('with the Conv2D gradient override, wasm trains the convs too (matches cpu, relative error <= 1e-5)', async () => {
    expect(installConv2DGradOverride()).toBe(true);
    const cpu = await gradsOf('cpu', true, 0.6);
    const wasm = await gradsOf('wasm', true, 0.6);
    expect(Object.keys(wasm.grads).length).toBe(13);
    for (const n of Object.keys(cpu.grads)) expect(relErr(wasm.grads[n], cpu.grads[n]), n).toBeLessThan(1e-5);
  });

  it('cpu gradients (with convs) match central finite differences', async () => {
    const base = await gradsOf('cpu', true, 100);
    expect(Object.keys(base.grads).length).toBe(13);
    const rng = new Rng(99);
    const host = ParamStore.create(GRAD_SPECS, 5);
    const shapes = Object.fromEntries(host.names().map((n) => [n, host.officialShape(n)]));
    host.dispose();
    for (const name of Object.keys(base.grads)) {
      // A random direction in the official layout, mapped to the engine layout for the dot product.
      const n = base.grads[name].length;
      // A unit-norm direction keeps the step small for large tensors.
      const raw = rng.normals(n);
      const norm = Math.sqrt(raw.reduce((a, v) => a + v * v, 0));
      const dir = raw.map((v) => v / norm);
      const eps = 1e-2;
      const plus = await gradsOf('cpu', true, 100, { name, dir, eps });
      const minus = await gradsOf('cpu', true, 100, { name, dir: dir.map((d) => -d), eps });
      const fd = (plus.loss - minus.loss) / (2 * eps);
      const dirT = await toEngineLayout(dir, shapes[name]);
      let analytic = 0;
      for (let i = 0; i < n; i++) analytic += base.grads[name][i] * dirT[i];
      expect(Math.abs(fd - analytic) / Math.max(1, Math.abs(analytic)), `${name}: fd ${fd} analytic ${analytic}`).toBeLessThan(1e-3);
    }
  });

  it('upsampleNearest2x gradient is the exact 2x2 block sum on cpu and wasm', async () => {
    for (const backend of ['cpu', 'wasm']) {
      await tf.setBackend(backend);
      const store = ParamStore.create([], 0);
      const ops = new TfjsOps(store);
      const rng = new Rng(1);
      const r = rnd(rng, [1, 2, 6, 4]);
      const x = ops.input(rnd(rng, [1, 2, 3, 2]));
      const rt = ops.input(r);
      const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(ops.upsampleNearest2x(t), rt)))(x);
      const got = await ops.read(g);
      const want = refAvgPool(r, 2, 2);
      expect(
        maxAbsDiff(
          got,
          tensor(
            want.data.map((v) => v * 4),
            want.shape,
            'NCHW',
          ),
        ),
        backend,
      ).toBeLessThan(1e-6);
      tf.dispose([x, rt, g]);
    }
  });
});

/** Official-layout data to the engine layout through a ParamStore round (conv/linear transposes). */
async function toEngineLayout(data: Float32Array, shape: readonly number[]): Promise<Float32Array> {
  const t = tf.tensor(data, [...shape]);
  const perm = toEnginePerm(shape.length);
  const p = perm ? tf.transpose(t, perm) : t;
  const out = (await p.data()) as Float32Array;
  tf.dispose([t, p]);
  return out;
}
