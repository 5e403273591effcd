/**
 * CLIP's text transformer against a plain-loop reference written here from HF's `CLIPTextModel`
 * (pre-LN layers, causal softmax attention with q scaled by head_dim^-0.5, quick-GELU MLP, final
 * layer norm), on tiny random configurations; and the SD-1.5 names and shapes it expects.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { encodeSafetensors, maxAbsDiff, Rng, SafetensorsFile, tensor, type HostTensor, type ParamSpec } from '@diad/core';
import { ParamStore, TfjsOps } from '@diad/core/tfjs';
import { OnnxRecorderOps } from '@diad/core/onnx';
import { createOrtSession } from '@diad/core/ort';
import {
  CLIP_TEXT_PREFIX,
  CLIP_VIT_L14_TEXT,
  checkClipText,
  clipEmbeddings,
  clipEmptyPromptContext,
  clipTextConfigOf,
  clipTextParamSpec,
  clipTextTransformer,
  emptyPromptIds,
  type ClipTextConfig,
} from '../src/clip.js';
import { parameterCount } from '../src/spec.js';
import { useBackend } from './backend.js';

beforeAll(() => useBackend());

type Params = Record<string, HostTensor<'float32'>>;

/** Every parameter random (N(0, 0.5); layer-norm gains around 1), so no term of the model vanishes. */
function randomParams(specs: ParamSpec[], seed: number): Params {
  const r = new Rng(seed);
  const out: Params = {};
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const v = r.normals(n);
    for (let i = 0; i < n; i++) v[i] = (s.init === 'ones' ? 1 : 0) + 0.5 * v[i];
    out[s.name] = tensor(v, s.shape);
  }
  return out;
}

// The reference: row-major loops over [L, D] for one prompt.
const linear = (x: number[][], w: HostTensor, b: HostTensor) =>
  x.map((row) => Array.from({ length: w.shape[0] }, (_, o) => b.data[o] + row.reduce((a, v, i) => a + v * w.data[o * w.shape[1] + i], 0)));
const layerNorm = (x: number[][], g: HostTensor, b: HostTensor, eps: number) =>
  x.map((row) => {
    const m = row.reduce((a, v) => a + v, 0) / row.length;
    const v = row.reduce((a, u) => a + (u - m) ** 2, 0) / row.length;
    return row.map((u, i) => ((u - m) / Math.sqrt(v + eps)) * g.data[i] + b.data[i]);
  });

function reference(p: Params, c: ClipTextConfig, ids: number[], prefix: string): number[][] {
  const D = c.hidden_size;
  const dh = D / c.num_attention_heads;
  const tok = p[`${prefix}embeddings.token_embedding.weight`];
  const pos = p[`${prefix}embeddings.position_embedding.weight`];
  let x = ids.map((id, i) => Array.from({ length: D }, (_, d) => tok.data[id * D + d] + pos.data[i * D + d]));
  const P = (n: string) => p[prefix + n];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const L = `encoder.layers.${l}.`;
    const h = layerNorm(x, P(`${L}layer_norm1.weight`), P(`${L}layer_norm1.bias`), c.layer_norm_eps);
    const proj = (n: string, v: number[][]) => linear(v, P(`${L}self_attn.${n}.weight`), P(`${L}self_attn.${n}.bias`));
    const q = proj('q_proj', h).map((r) => r.map((v) => v / Math.sqrt(dh)));
    const k = proj('k_proj', h);
    const v = proj('v_proj', h);
    const attn = q.map((qi, i) => {
      const out = new Array<number>(D).fill(0);
      for (let head = 0; head < c.num_attention_heads; head++) {
        // Causal: position i sees positions 0..i.
        const s = k.slice(0, i + 1).map((kj) => qi.slice(head * dh, (head + 1) * dh).reduce((a, u, e) => a + u * kj[head * dh + e], 0));
        const mx = Math.max(...s);
        const e = s.map((u) => Math.exp(u - mx));
        const z = e.reduce((a, u) => a + u, 0);
        e.forEach((w, j) => {
          for (let t = 0; t < dh; t++) out[head * dh + t] += (w / z) * v[j][head * dh + t];
        });
      }
      return out;
    });
    const o = proj('out_proj', attn);
    x = x.map((row, i) => row.map((u, d) => u + o[i][d]));
    const n2 = layerNorm(x, P(`${L}layer_norm2.weight`), P(`${L}layer_norm2.bias`), c.layer_norm_eps);
    const f1 = linear(n2, P(`${L}mlp.fc1.weight`), P(`${L}mlp.fc1.bias`)).map((r) => r.map((u) => u / (1 + Math.exp(-1.702 * u))));
    const f2 = linear(f1, P(`${L}mlp.fc2.weight`), P(`${L}mlp.fc2.bias`));
    x = x.map((row, i) => row.map((u, d) => u + f2[i][d]));
  }
  return layerNorm(x, P('final_layer_norm.weight'), P('final_layer_norm.bias'), c.layer_norm_eps);
}

const tiny: ClipTextConfig = {
  vocab_size: 11,
  max_position_embeddings: 6,
  hidden_size: 8,
  intermediate_size: 12,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  layer_norm_eps: 1e-5,
};

/** The transformer on tfjs from host parameters. */
async function onTfjs(p: Params, c: ClipTextConfig, emb: HostTensor<'float32'>, prefix: string): Promise<HostTensor<'float32'>> {
  const specs = clipTextParamSpec(c, prefix).filter((s) => !s.name.startsWith(`${prefix}embeddings.`));
  const store = ParamStore.create(specs, 0);
  store.load(new SafetensorsFile(encodeSafetensors(p)), { strict: false });
  const ops = new TfjsOps(store);
  const out = tf.tidy(() => clipTextTransformer(ops, c, ops.input(emb), prefix));
  const host = await ops.read(out);
  out.dispose();
  store.dispose();
  return host;
}

describe('CLIP text transformer', () => {
  it('matches the reference on tfjs and on onnxruntime (tiny random config, 2 heads, 2 layers, two prompts)', async () => {
    const prefix = 'clip.';
    const p = randomParams(clipTextParamSpec(tiny, prefix), 3);
    const ids = [
      [1, 4, 7, 2, 2, 9],
      [3, 3, 10, 0, 5, 6],
    ];
    const emb = clipEmbeddings(p[`${prefix}embeddings.token_embedding.weight`], p[`${prefix}embeddings.position_embedding.weight`], ids);
    const want = tensor(Float32Array.from(ids.flatMap((row) => reference(p, tiny, row, prefix).flat())), [2, 6, 8]);
    expect(maxAbsDiff(await onTfjs(p, tiny, emb, prefix), want)).toBeLessThan(2e-5);

    const rec = new OnnxRecorderOps(p, { graphName: 'clip' });
    const out = clipTextTransformer(rec, tiny, rec.graphInput('embeddings', [2, 6, 8]), prefix);
    const session = await createOrtSession(rec.toModel({ last_hidden_state: out }));
    const got = (await session.run({ embeddings: emb })).last_hidden_state as HostTensor<'float32'>;
    await session.release();
    expect(maxAbsDiff(got, want)).toBeLessThan(2e-5);
  });

  it('is causal: a later token leaves the earlier positions unchanged', async () => {
    const p = randomParams(clipTextParamSpec(tiny, ''), 5);
    const run = (ids: number[]) =>
      onTfjs(p, tiny, clipEmbeddings(p['embeddings.token_embedding.weight'], p['embeddings.position_embedding.weight'], [ids]), '');
    const a = await run([1, 2, 3, 4, 5, 6]);
    const b = await run([1, 2, 3, 9, 5, 6]);
    const at = (t: HostTensor, i: number) => Array.from(t.data.subarray(i * 8, (i + 1) * 8));
    for (let i = 0; i < 3; i++) expect(at(b, i)).toEqual(at(a, i));
    expect(maxAbsDiff(tensor(Float32Array.from(at(a, 3)), [8]), tensor(Float32Array.from(at(b, 3)), [8]))).toBeGreaterThan(1e-3);
  });

  it('encodes the empty prompt of an SD-layout file (sizes read from its shapes) as the reference does', async () => {
    // The real vocabulary size (the empty prompt's ids are 49406 and 49407); width 64 = one head.
    const c: ClipTextConfig = {
      ...tiny,
      vocab_size: 49408,
      max_position_embeddings: 77,
      hidden_size: 64,
      intermediate_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 1,
    };
    const p = randomParams(clipTextParamSpec(c), 7);
    const file = new SafetensorsFile(encodeSafetensors(p), 'sd-tiny.safetensors');
    expect(clipTextConfigOf(file)).toEqual(c);
    const got = await clipEmptyPromptContext(file);
    expect(got.shape).toEqual([1, 77, 64]);
    const want = tensor(Float32Array.from(reference(p, c, emptyPromptIds(), CLIP_TEXT_PREFIX).flat()), [1, 77, 64]);
    // float32 sums over 64-wide rows against float64: a few 1e-5 on outputs of about unit size.
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-4);
  });

  it('names a file without the text encoder and the fix', () => {
    const file = new SafetensorsFile(encodeSafetensors({ 'model.diffusion_model.out.2.bias': tensor(new Float32Array(4), [4]) }), 'unet-only.safetensors');
    expect(() => checkClipText(file)).toThrow(
      /unet-only\.safetensors: no CLIP text encoder .*cond_stage_model\.transformer\.text_model\.embeddings\.token_embedding\.weight missing.*Stable Diffusion 1\.x single-file/,
    );
  });
});

describe('CLIP ViT-L/14 text encoder of SD 1.5', () => {
  it('has the names and shapes of cond_stage_model.transformer.text_model.* (123.06 M parameters)', () => {
    const specs = clipTextParamSpec(CLIP_VIT_L14_TEXT);
    const shape = (n: string) => specs.find((s) => s.name === `cond_stage_model.transformer.text_model.${n}`)?.shape;
    expect(specs).toHaveLength(2 + 12 * 16 + 2);
    expect(parameterCount(specs)).toBe(49408 * 768 + 77 * 768 + 12 * (4 * (768 * 768 + 768) + 2 * 3072 * 768 + 3072 + 768 + 4 * 768) + 2 * 768);
    expect((parameterCount(specs) / 1e6).toFixed(2)).toBe('123.06');
    expect(shape('embeddings.token_embedding.weight')).toEqual([49408, 768]);
    expect(shape('embeddings.position_embedding.weight')).toEqual([77, 768]);
    expect(shape('encoder.layers.11.self_attn.q_proj.weight')).toEqual([768, 768]);
    expect(shape('encoder.layers.11.self_attn.out_proj.bias')).toEqual([768]);
    expect(shape('encoder.layers.0.mlp.fc1.weight')).toEqual([3072, 768]);
    expect(shape('encoder.layers.0.mlp.fc2.weight')).toEqual([768, 3072]);
    expect(shape('encoder.layers.5.layer_norm2.bias')).toEqual([768]);
    expect(shape('final_layer_norm.weight')).toEqual([768]);
    expect(shape('encoder.layers.12.layer_norm1.weight')).toBeUndefined();
  });

  it('pads the empty prompt as the official tokenizer: start token, then end tokens to 77', () => {
    const ids = emptyPromptIds();
    expect(ids).toHaveLength(77);
    expect(ids[0]).toBe(49406);
    expect(new Set(ids.slice(1))).toEqual(new Set([49407]));
  });
});
