/**
 * CLIP's text transformer as Stable Diffusion 1.x uses it (`FrozenCLIPEmbedder` of
 * `ldm/modules/encoders/modules.py`: HF transformers `CLIPTextModel`, `last_hidden_state`, i.e. after
 * `final_layer_norm`), written against `Ops`, and the encoding of the empty prompt that the official
 * DiAD run conditions every image on (`get_learned_conditioning([""])`, `[1, 77, 768]`).
 *
 * Parameters keep the names of an SD-1.x single-file checkpoint (`cond_stage_model.transformer.` +
 * HF's `text_model.*`). The token and position embeddings are a table lookup, done on the host; the
 * transformer (pre-LN, causal self-attention, quick-GELU MLP) runs on any `Ops` engine.
 */
import * as tf from '@tensorflow/tfjs-core';
import { tensor, type HostTensor, type Ops, type ParamSpec, type SafetensorsFile, type SafetensorsIndex } from '@diad/core';
import { ParamStore, TfjsOps } from '@diad/core/tfjs';

/** A CLIP text transformer's sizes (HF `CLIPTextConfig` field names). */
export interface ClipTextConfig {
  vocab_size: number;
  /** Token positions, also the padded prompt length (77). */
  max_position_embeddings: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  layer_norm_eps: number;
}

/** CLIP ViT-L/14's text transformer (`openai/clip-vit-large-patch14`, SD 1.x's `cond_stage_model`). */
export const CLIP_VIT_L14_TEXT: ClipTextConfig = {
  vocab_size: 49408,
  max_position_embeddings: 77,
  hidden_size: 768,
  intermediate_size: 3072,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  layer_norm_eps: 1e-5,
};

/** Prefix of the text transformer in an SD-1.x single-file checkpoint. */
export const CLIP_TEXT_PREFIX = 'cond_stage_model.transformer.text_model.';

/** CLIP tokenizer's `<|startoftext|>` and `<|endoftext|>` ids (the latter also pads, as SD's tokenizer does). */
export const CLIP_START_TOKEN = 49406;
export const CLIP_END_TOKEN = 49407;

/**
 * Token ids of the empty prompt as the official tokenizer gives them (`padding="max_length"`,
 * `max_length=77`): the start token, then the end token repeated to `length`.
 */
export function emptyPromptIds(length = CLIP_VIT_L14_TEXT.max_position_embeddings): number[] {
  return [CLIP_START_TOKEN, ...new Array<number>(length - 1).fill(CLIP_END_TOKEN)];
}

/**
 * Every parameter of the text transformer: official names and shapes (linear `[out, in]`,
 * embeddings `[rows, hidden_size]`); inits as PyTorch's defaults (embeddings N(0, 0.02) as HF's).
 */
export function clipTextParamSpec(c: ClipTextConfig, prefix = CLIP_TEXT_PREFIX): ParamSpec[] {
  const D = c.hidden_size;
  const linear = (name: string, out: number, inp: number): ParamSpec[] => [
    { name: `${name}.weight`, shape: [out, inp], init: 'kaiming' },
    { name: `${name}.bias`, shape: [out], init: 'bias', fanIn: inp },
  ];
  const norm = (name: string): ParamSpec[] => [
    { name: `${name}.weight`, shape: [D], init: 'ones' },
    { name: `${name}.bias`, shape: [D], init: 'zeros' },
  ];
  const specs: ParamSpec[] = [
    { name: `${prefix}embeddings.token_embedding.weight`, shape: [c.vocab_size, D], init: 'normal', std: 0.02 },
    { name: `${prefix}embeddings.position_embedding.weight`, shape: [c.max_position_embeddings, D], init: 'normal', std: 0.02 },
  ];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `${prefix}encoder.layers.${l}.`;
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) specs.push(...linear(`${p}self_attn.${proj}`, D, D));
    specs.push(...norm(`${p}layer_norm1`));
    specs.push(...linear(`${p}mlp.fc1`, c.intermediate_size, D), ...linear(`${p}mlp.fc2`, D, c.intermediate_size));
    specs.push(...norm(`${p}layer_norm2`));
  }
  specs.push(...norm(`${prefix}final_layer_norm`));
  return specs;
}

/** Width of one attention head in every CLIP text transformer (ViT-B 512/8, ViT-L 768/12, ViT-H 1024/16). */
export const CLIP_HEAD_WIDTH = 64;

/**
 * The sizes of the text transformer a checkpoint holds under `prefix`, read from its shapes (the
 * head count, which shapes do not show, from {@link CLIP_HEAD_WIDTH}; eps 1e-5).
 * @throws Error naming the file when it holds no text transformer (see {@link checkClipText}).
 */
export function clipTextConfigOf(file: SafetensorsIndex, prefix = CLIP_TEXT_PREFIX): ClipTextConfig {
  const shape = (name: string) => (file.has(prefix + name) ? file.entry(prefix + name).shape : null);
  const token = shape('embeddings.token_embedding.weight');
  const position = shape('embeddings.position_embedding.weight');
  const fc1 = shape('encoder.layers.0.mlp.fc1.weight');
  if (!token || !position || !fc1) {
    checkClipText(file, CLIP_VIT_L14_TEXT, prefix); // names what is missing
    throw new Error(`${file.source}: no CLIP text transformer under ${prefix}*`);
  }
  const layers = new Set(file.names().flatMap((n) => /^encoder\.layers\.(\d+)\./.exec(n.slice(prefix.length))?.[1] ?? []));
  return {
    vocab_size: token[0],
    max_position_embeddings: position[0],
    hidden_size: token[1],
    intermediate_size: fc1[0],
    num_hidden_layers: layers.size,
    num_attention_heads: Math.max(1, Math.round(token[1] / CLIP_HEAD_WIDTH)),
    layer_norm_eps: CLIP_VIT_L14_TEXT.layer_norm_eps,
  };
}

/** `quick_gelu` (CLIP's activation): `x * sigmoid(1.702 x)`, written as `silu(1.702 x) / 1.702`. */
function quickGelu<T>(ops: Ops<T>, x: T): T {
  return ops.scale(ops.silu(ops.scale(x, 1.702)), 1 / 1.702);
}

/**
 * The token + position embeddings of prompts (`CLIPTextEmbeddings`), looked up on the host.
 * @param ids one row of `max_position_embeddings` token ids per prompt.
 * @returns `[N, L, hidden_size]`.
 * @throws Error on an id outside the vocabulary or a row longer than the position table.
 */
export function clipEmbeddings(
  tokenEmbedding: HostTensor<'float32'>,
  positionEmbedding: HostTensor<'float32'>,
  ids: readonly (readonly number[])[],
): HostTensor<'float32'> {
  const [vocab, D] = tokenEmbedding.shape;
  const L = ids[0]?.length ?? 0;
  if (L > positionEmbedding.shape[0]) throw new Error(`clipEmbeddings: ${L} tokens, but only ${positionEmbedding.shape[0]} positions`);
  const out = new Float32Array(ids.length * L * D);
  ids.forEach((row, b) => {
    if (row.length !== L) throw new Error('clipEmbeddings: every prompt must have the same number of token ids');
    row.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new Error(`clipEmbeddings: token id ${id} is outside the vocabulary of ${vocab}`);
      const o = (b * L + i) * D;
      for (let d = 0; d < D; d++) out[o + d] = tokenEmbedding.data[id * D + d] + positionEmbedding.data[i * D + d];
    });
  });
  return tensor(out, [ids.length, L, D]);
}

/**
 * The text transformer on embedded tokens (`CLIPEncoder` + `final_layer_norm`): per layer
 * `x += out_proj(attn(layer_norm1 x))` with causal multi-head self-attention, then
 * `x += fc2(quick_gelu(fc1(layer_norm2 x)))`; the final layer norm last.
 * @param x `[N, L, hidden_size]` ({@link clipEmbeddings}).
 * @returns `last_hidden_state`, `[N, L, hidden_size]`.
 */
export function clipTextTransformer<T>(ops: Ops<T>, c: ClipTextConfig, x: T, prefix = CLIP_TEXT_PREFIX): T {
  const eps = c.layer_norm_eps;
  let h = x;
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `${prefix}encoder.layers.${l}.`;
    const n1 = ops.layerNorm(h, `${p}layer_norm1.weight`, `${p}layer_norm1.bias`, eps);
    const proj = (name: string, v: T) => ops.linear(v, `${p}self_attn.${name}.weight`, `${p}self_attn.${name}.bias`);
    const a = ops.attention(proj('q_proj', n1), proj('k_proj', n1), proj('v_proj', n1), c.num_attention_heads, { causal: true });
    h = ops.add(h, proj('out_proj', a));
    const n2 = ops.layerNorm(h, `${p}layer_norm2.weight`, `${p}layer_norm2.bias`, eps);
    const m = quickGelu(ops, ops.linear(n2, `${p}mlp.fc1.weight`, `${p}mlp.fc1.bias`));
    h = ops.add(h, ops.linear(m, `${p}mlp.fc2.weight`, `${p}mlp.fc2.bias`));
  }
  return ops.layerNorm(h, `${prefix}final_layer_norm.weight`, `${prefix}final_layer_norm.bias`, eps);
}

/**
 * Checks that `file` holds the text transformer of `c` under `prefix`.
 * @throws Error naming the file, the missing or mis-shaped keys, and what the file must be.
 */
export function checkClipText(file: SafetensorsIndex, c: ClipTextConfig = CLIP_VIT_L14_TEXT, prefix = CLIP_TEXT_PREFIX): void {
  const bad: string[] = [];
  for (const s of clipTextParamSpec(c, prefix)) {
    if (!file.has(s.name)) bad.push(`${s.name} missing`);
    else if (file.entry(s.name).shape.join(',') !== s.shape.join(','))
      bad.push(`${s.name} is [${file.entry(s.name).shape.join(', ')}], need [${s.shape.join(', ')}]`);
  }
  if (bad.length)
    throw new Error(
      `${file.source}: no CLIP text encoder of ${c.num_hidden_layers} layers x ${c.hidden_size} under ${prefix}* (${bad.length} problems: ${bad.slice(0, 4).join('; ')}${bad.length > 4 ? '; ...' : ''}); ` +
        'give a Stable Diffusion 1.x single-file checkpoint, which holds cond_stage_model.transformer.text_model.*',
    );
}

/**
 * The encoding of the empty prompt (`last_hidden_state` of {@link emptyPromptIds}) with the text
 * transformer of a checkpoint, on tfjs (run once per run; the result is a constant context).
 * @param c the transformer's sizes; default: read from the file ({@link clipTextConfigOf}).
 * @returns `[1, max_position_embeddings, hidden_size]`.
 * @throws Error from {@link checkClipText} when the file lacks the text transformer.
 */
export async function clipEmptyPromptContext(
  file: SafetensorsFile,
  prefix = CLIP_TEXT_PREFIX,
  c: ClipTextConfig = clipTextConfigOf(file, prefix),
): Promise<HostTensor<'float32'>> {
  checkClipText(file, c, prefix);
  const emb = clipEmbeddings(file.float32(`${prefix}embeddings.token_embedding.weight`), file.float32(`${prefix}embeddings.position_embedding.weight`), [
    emptyPromptIds(c.max_position_embeddings),
  ]);
  const store = ParamStore.create(
    clipTextParamSpec(c, prefix).filter((s) => !s.name.startsWith(`${prefix}embeddings.`)),
    0,
  );
  try {
    store.load(file, { strict: false, prefix });
    const ops = new TfjsOps(store);
    const out = tf.tidy(() => clipTextTransformer(ops, c, ops.input(emb), prefix));
    try {
      return await ops.read(out);
    } finally {
      out.dispose();
    }
  } finally {
    store.dispose();
  }
}
