/**
 * The one checkpoint format of stage training, on every engine: a safetensors file with every
 * parameter of the model (official names and layouts, loadable as weights on their own) plus the
 * AdamW state under `optimizer.` (`optimizer.exp_avg.<param>`, `optimizer.exp_avg_sq.<param>`,
 * in the same layouts) and the update count `optimizer.step`.
 */
import { tensor, type HostTensor } from './tensor.js';
import type { WritableTensor } from './safetensors.js';
import type { SafetensorsFile } from './safetensors.js';

/** Prefix of the optimizer state in a training checkpoint. */
export const OPTIMIZER_PREFIX = 'optimizer.';

/** A checkpoint's tensors: parameters, AdamW state under `optimizer.`, and the update count. */
export function trainingCheckpoint(
  params: Record<string, HostTensor<'float32'>>,
  state: Record<string, HostTensor<'float32'>>,
  step: number,
): Record<string, WritableTensor> {
  const out: Record<string, WritableTensor> = { ...params };
  for (const [n, t] of Object.entries(state)) out[OPTIMIZER_PREFIX + n] = t;
  out[`${OPTIMIZER_PREFIX}step`] = tensor(new Float32Array([step]), [1]);
  return out;
}

/**
 * The AdamW state and update count of a training checkpoint.
 * @throws Error naming the file when it has no `optimizer.step` (a plain weights file).
 */
export function readOptimizerState(file: SafetensorsFile): { step: number; state: Record<string, HostTensor<'float32'>> } {
  if (!file.has(`${OPTIMIZER_PREFIX}step`)) throw new Error(`${file.source}: not a training checkpoint (no ${OPTIMIZER_PREFIX}step); it holds weights only`);
  const state: Record<string, HostTensor<'float32'>> = {};
  for (const n of file.names())
    if (n.startsWith(OPTIMIZER_PREFIX) && n !== `${OPTIMIZER_PREFIX}step`) state[n.slice(OPTIMIZER_PREFIX.length)] = file.float32(n);
  return { step: file.float32(`${OPTIMIZER_PREFIX}step`).data[0], state };
}
