/**
 * The cross-attention context. The official DiAD run conditions every image on CLIP's embedding of
 * the empty prompt (`get_learned_conditioning([""])`, `[1, 77, 768]` for SD 1.5): a constant,
 * computed once by the checkpoint's text encoder (`clip.ts`, a `clip` context) or read from a file
 * (`file`), so no text encoder runs per image. Models trained from scratch use a learned null
 * context instead (our addition; not in the official code).
 */
import { readSafetensors, tensor, type HostTensor, type Ops, type ParamSpec } from '@diad/core';
import type { ContextConfig } from './config.js';

/** Parameter of the learned null context: `[context_dim, tokens]` (a linear map applied to one-hot tokens). */
export const LEARNED_CONTEXT = 'learned_context.weight';

/** The learned context's parameter spec (N(0, 1) as `nn.Embedding`), or none for a file context. */
export function contextParamSpec(c: ContextConfig, contextDim: number): ParamSpec[] {
  return c.kind === 'learned' ? [{ name: LEARNED_CONTEXT, shape: [contextDim, c.tokens], init: 'normal', std: 1 }] : [];
}

/**
 * Reads a constant context tensor `[L, D]` or `[1, L, D]` from a safetensors file.
 * @throws Error naming the file and tensor when it is absent or its width is not `contextDim`.
 */
export async function readConstantContext(path: string, name: string, contextDim: number): Promise<HostTensor<'float32'>> {
  const file = await readSafetensors(path);
  if (!file.has(name))
    throw new Error(
      `${path}: no tensor "${name}" (has ${file.names().join(', ')}); set context.tensor to the name of the [1, tokens, ${contextDim}] embedding`,
    );
  const t = file.float32(name);
  const s = t.shape;
  if (!((s.length === 2 || (s.length === 3 && s[0] === 1)) && s[s.length - 1] === contextDim)) {
    throw new Error(`${path}: "${name}" has shape [${s.join(', ')}], need [1, tokens, ${contextDim}] (context_dim of the UNet)`);
  }
  return tensor(t.data, [1, s[s.length - 2], contextDim]);
}

/**
 * The context for a batch of `n`: the constant repeated, or the learned one.
 * @param constant `[1, L, D]` for a file context, null for a learned one.
 * @returns `[n, L, D]`.
 */
export function contextFor<T>(ops: Ops<T>, c: ContextConfig, constant: HostTensor | null, n: number): T {
  if (c.kind !== 'learned') {
    if (!constant) throw new Error(`contextFor: a ${c.kind} context needs the constant tensor (readConstantContext)`);
    const per = constant.data.length;
    const data = new Float32Array(per * n);
    for (let b = 0; b < n; b++) data.set(constant.data, b * per);
    return ops.input(tensor(data, [n, constant.shape[1], constant.shape[2]]));
  }
  const L = c.tokens;
  const eye = new Float32Array(n * L * L);
  for (let b = 0; b < n; b++) for (let i = 0; i < L; i++) eye[(b * L + i) * L + i] = 1;
  return ops.linear(ops.input(tensor(eye, [n, L, L])), LEARNED_CONTEXT, null);
}
