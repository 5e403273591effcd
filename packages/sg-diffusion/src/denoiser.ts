/**
 * `DiadDenoiser`: the SG network + controlled UNet + context on tfjs (TfjsOps over a ParamStore):
 * creation with official initialisation, loading and saving by official names, eps-prediction,
 * and the trainable groups of the official `configure_optimizers` (`sgn/sgn.py`).
 */
import * as tf from '@tensorflow/tfjs-core';
import { readSafetensors, type GuidedDenoiser, type GuidedEps, type HostTensor, type ParamSpec } from '@diad/core';
import { ParamStore, TfjsOps } from '@diad/core/tfjs';
import { sgnConfigOf, type DiadConfig, type SGNConfig } from './config.js';
import { contextFor, contextParamSpec, LEARNED_CONTEXT, readConstantContext } from './context.js';
import { timestepEmbedding } from './layers.js';
import { hintBlock } from './model.js';
import { guidedEps } from './loss.js';
import { SGN_PREFIX, sgnParamSpec, UNET_PREFIX, unetParamSpec } from './spec.js';

/** Which parameters train: the official groups, or everything (for models trained from scratch). */
export type TrainableGroups = 'official' | 'all';

/** Every parameter of a DiAD denoiser config (UNet, SG network, learned context). */
export function diadParamSpec(c: DiadConfig): ParamSpec[] {
  return [...unetParamSpec(c.unet), ...sgnParamSpec(sgnConfigOf(c)), ...contextParamSpec(c.context, c.unet.context_dim)];
}

/**
 * The trainable parameters. `official`: the SG network (SFF included), the UNet `output_blocks`
 * and `out` (DiAD `configure_optimizers`), plus the learned context when there is one; the UNet
 * time embedding, encoder and middle block stay frozen. `all`: every parameter.
 */
export function trainableFilter(groups: TrainableGroups): (name: string) => boolean {
  if (groups === 'all') return () => true;
  return (n) => n.startsWith(SGN_PREFIX) || n.startsWith(`${UNET_PREFIX}output_blocks.`) || n.startsWith(`${UNET_PREFIX}out.`) || n === LEARNED_CONTEXT;
}

function checkMap(t: HostTensor, what: string, channels: number): void {
  if (t.shape.length !== 4 || t.shape[1] !== channels) {
    throw new Error(`${what} must be [N, ${channels}, H, W] (NCHW), got [${t.shape.join(', ')}]`);
  }
}

export class DiadDenoiser implements GuidedDenoiser {
  readonly ops: TfjsOps;
  readonly sgn: SGNConfig;

  private constructor(
    readonly config: DiadConfig,
    readonly store: ParamStore,
    private readonly constantContext: HostTensor | null,
  ) {
    this.ops = new TfjsOps(store);
    this.sgn = sgnConfigOf(config);
  }

  /**
   * A freshly initialised denoiser (PyTorch default inits, zero convs zero). As the official
   * ControlNet recipe (`tool_add_control`), the SG network's encoder copy starts equal to the UNet's.
   * @param seed initialisation seed.
   * @throws Error when a file context cannot be read.
   */
  static async create(config: DiadConfig, seed: number): Promise<DiadDenoiser> {
    const store = ParamStore.create(diadParamSpec(config), seed);
    copyUnetEncoderToSgn(store);
    return new DiadDenoiser(config, store, await constantOf(config));
  }

  /**
   * A denoiser with parameters from a safetensors checkpoint keyed by official names; other
   * prefixes such as `first_stage_model.*` are ignored. Two layouts:
   * - a DiAD checkpoint (`model.diffusion_model.*` + `control_model.*`): every parameter from the file;
   * - a Stable Diffusion single-file checkpoint (`model.diffusion_model.*`, no `control_model.*`):
   *   the UNet from the file, the SG network as the official `build_model.py` makes it: each
   *   `control_model.*` parameter the UNet has (time embedding, encoder, middle block) copied from
   *   it, the others (hint block, zero convs, SFF) freshly initialised (seed 0).
   * @throws Error listing missing and mis-shaped keys.
   */
  static async load(config: DiadConfig, path: string): Promise<DiadDenoiser> {
    const store = ParamStore.create(diadParamSpec(config), 0);
    try {
      const file = await readSafetensors(path);
      const report = store.load(file, { strict: false });
      const stableDiffusion = !file.names().some((n) => n.startsWith(SGN_PREFIX));
      if (stableDiffusion) {
        report.missing = report.missing.filter((n) => !n.startsWith(SGN_PREFIX) && n !== LEARNED_CONTEXT);
        copyUnetEncoderToSgn(store);
      }
      const unexpected = report.unexpected.filter((n) => n.startsWith(SGN_PREFIX) || n.startsWith(UNET_PREFIX));
      if (report.missing.length || unexpected.length) {
        throw new Error(
          `${path}: checkpoint does not match the config\n  missing ${report.missing.length}: ${report.missing.slice(0, 20).join(', ')}${report.missing.length > 20 ? ', ...' : ''}\n  unexpected ${unexpected.length}: ${unexpected.slice(0, 20).join(', ')}`,
        );
      }
      return new DiadDenoiser(config, store, await constantOf(config));
    } catch (e) {
      store.dispose();
      throw e;
    }
  }

  /** Writes every parameter (official names and layouts) to a safetensors file, atomically. */
  save(path: string, metadata: Record<string, string> = {}): Promise<void> {
    return this.store.save(path, { ...metadata, diad_config: JSON.stringify(this.config) });
  }

  /** The guided hint of images `[N, hint_channels, f*h, f*w]` (f = `hint_downsample`) (engine tensor, caller disposes). */
  guidedHint(hint: HostTensor): tf.Tensor {
    checkMap(hint, 'hint', this.sgn.hint_channels);
    return tf.tidy(() => hintBlock(this.ops, this.ops.input(hint), this.sgn.hint_downsample));
  }

  /** The cross-attention context for a batch of `n` (engine tensor, caller disposes). */
  context(n: number): tf.Tensor {
    return tf.tidy(() => contextFor(this.ops, this.config.context, this.constantContext, n));
  }

  /**
   * eps-prediction on engine tensors (differentiable; call inside `tf.tidy` or `variableGrads`).
   * @param x noisy latents (engine layout of `[N, C, h, w]`).
   * @param guided the guided hint of the batch ({@link guidedHint}, or `hintBlock` inside a gradient).
   * @param t one timestep per batch item.
   * @param context `[N, L, D]` ({@link context}).
   */
  epsTensor(x: tf.Tensor, guided: tf.Tensor, t: readonly number[], context: tf.Tensor): tf.Tensor {
    return guidedEps(this.ops, this.config, x, guided, this.ops.input(timestepEmbedding(t, this.config.unet.model_channels)), context);
  }

  /**
   * eps-prediction on host tensors.
   * @param x noisy latents `[N, in_channels, h, w]`.
   * @param hint images `[N, hint_channels, f*h, f*w]` (f = `hint_downsample`).
   * @param t one timestep per item.
   * @returns eps `[N, out_channels, h, w]`.
   * @throws Error on mismatched shapes.
   */
  async predictEps(x: HostTensor, hint: HostTensor, t: readonly number[]): Promise<HostTensor> {
    checkMap(x, 'latents', this.config.unet.in_channels);
    const guided = this.guidedHint(hint);
    const ctx = this.context(x.shape[0]);
    try {
      return await this.readEps(x, guided, t, ctx);
    } finally {
      tf.dispose([guided, ctx]);
    }
  }

  /**
   * A batch's guidance for a sampler ({@link GuidedDenoiser}): the guided hint and the context,
   * computed once and reused at every timestep.
   * @param hint images `[N, hint_channels, f*h, f*w]` (f = `hint_downsample`).
   * @throws Error on a hint of the wrong channel count.
   */
  async guide(hint: HostTensor): Promise<GuidedEps> {
    const n = hint.shape[0];
    const guided = this.guidedHint(hint);
    const ctx = this.context(n);
    return {
      eps: (x, t) => this.readEps(x, guided, new Array<number>(n).fill(t), ctx),
      dispose: () => tf.dispose([guided, ctx]),
    };
  }

  /** eps of host latents with an already computed guided hint and context. */
  async readEps(x: HostTensor, guided: tf.Tensor, t: readonly number[], ctx: tf.Tensor): Promise<HostTensor> {
    const [n, , h, w] = x.shape;
    const g = this.ops.shape(guided);
    if (g[0] !== n || g[2] !== h || g[3] !== w) {
      throw new Error(
        `hint must be ${this.sgn.hint_downsample}x the latent size (hint_downsample) with the same batch: latents [${x.shape.join(', ')}], guided hint [${g.join(', ')}]`,
      );
    }
    if (t.length !== n) throw new Error(`${t.length} timesteps for a batch of ${n}`);
    const eps = tf.tidy(() => this.epsTensor(this.ops.input(x), guided, t, ctx));
    try {
      return await this.ops.read(eps);
    } finally {
      eps.dispose();
    }
  }

  /** Marks the chosen groups trainable and the rest frozen; returns the trainable variables. */
  setTrainable(groups: TrainableGroups): tf.Variable[] {
    this.store.setTrainable(() => true, false);
    const f = trainableFilter(groups);
    this.store.setTrainable(f, true);
    return this.store.variables(f);
  }

  dispose(): void {
    this.store.dispose();
  }
}

async function constantOf(c: DiadConfig): Promise<HostTensor | null> {
  if (c.context.kind === 'clip')
    throw new Error(
      'a clip context is computed from a checkpoint (clipEmptyPromptContext): build the denoiser with it as a file context (the pipeline does, from --init)',
    );
  return c.context.kind === 'file' ? readConstantContext(c.context.path, c.context.tensor, c.unet.context_dim) : null;
}

/** Copies `model.diffusion_model.{time_embed,input_blocks,middle_block}.*` onto the same `control_model.*` names. */
export function copyUnetEncoderToSgn(store: ParamStore): number {
  let n = 0;
  for (const name of store.names(SGN_PREFIX)) {
    const src = UNET_PREFIX + name.slice(SGN_PREFIX.length);
    if (/^(time_embed|input_blocks|middle_block)\./.test(name.slice(SGN_PREFIX.length)) && store.has(src)) {
      store.get(name).assign(store.get(src));
      n++;
    }
  }
  return n;
}
