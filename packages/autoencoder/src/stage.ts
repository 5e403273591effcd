/**
 * The AutoencoderKL as a pipeline stage (core's `Autoencoder` interface): host images in, scaled
 * latents out and back, as DiAD's LatentDiffusion does (`ldm/models/diffusion/ddpm.py`:
 * `get_first_stage_encoding` multiplies the posterior sample by `scale_factor`,
 * `decode_first_stage` divides by it before `first_stage_model.decode`).
 */
import { IMAGENET_MEAN, IMAGENET_STD, Rng, tensor, type Autoencoder, type HostTensor, type Ops } from '@diad/core';
import { downsampleFactor, SCALE_FACTOR, type AutoencoderConfig } from './config.js';
import { posterior, samplePosterior } from './distribution.js';
import { decodeLatent, encodeMoments } from './model.js';
import { DEFAULT_PREFIX } from './params.js';

/**
 * How an engine scopes the temporaries of one forward pass: `run` executes a synchronous forward
 * and keeps only its result (tfjs: `tf.tidy`), `dispose` frees that result after it was read.
 */
export interface OpsScope<T> {
  run(fn: () => T): T;
  dispose(x: T): void;
}

/**
 * Pixel range the autoencoder sees.
 * - `imagenet` (official DiAD): the ImageNet-normalised image goes in unchanged and the decoder's
 *   output is read as ImageNet-normalised. DiAD's data loader (`mvtecad_dataloader.py`) normalises
 *   with ImageNet mean/std and `LatentDiffusion.get_input` feeds that straight into
 *   `first_stage_model.encode`; DiAD fine-tunes the SD autoencoder on such inputs
 *   (`finetune_autoencoder.py`).
 * - `symmetric`: images are converted to [-1, 1] (`2 * rgb01 - 1`, what SD's autoencoder was
 *   trained on) before encoding and back after decoding; for SD weights used without fine-tuning.
 */
export type PixelRange = 'imagenet' | 'symmetric';

export interface AutoencoderStageOptions<T> {
  /** State-dict prefix of the parameters. Default `first_stage_model.`. */
  prefix?: string;
  /** Latent scale factor. Default 0.18215 (the official `scale_factor`). */
  scaleFactor?: number;
  /** Default `imagenet`, see {@link PixelRange}. */
  pixelRange?: PixelRange;
  /** Temporaries handling of the engine; identity when omitted (engines with GC'd tensors). */
  scope?: OpsScope<T>;
}

/** ImageNet-normalised <-> [-1, 1], per channel, on host data (NCHW, 3 channels). */
function convertRange(t: HostTensor<'float32'>, to: 'symmetric' | 'imagenet'): HostTensor<'float32'> {
  const [n, c, h, w] = t.shape;
  if (c !== 3) throw new Error(`pixelRange "symmetric" needs RGB images (3 channels), got shape [${t.shape.join(', ')}]`);
  const out = new Float32Array(t.data.length);
  const hw = h * w;
  for (let b = 0; b < n; b++)
    for (let ch = 0; ch < 3; ch++) {
      const m = IMAGENET_MEAN[ch];
      const s = IMAGENET_STD[ch];
      // symmetric = 2 * (x * s + m) - 1; inverse x = ((y + 1) / 2 - m) / s
      const a = to === 'symmetric' ? 2 * s : 1 / (2 * s);
      const o = to === 'symmetric' ? 2 * m - 1 : (0.5 - m) / s;
      const base = (b * 3 + ch) * hw;
      for (let i = 0; i < hw; i++) out[base + i] = t.data[base + i] * a + o;
    }
  return tensor(out, t.shape, 'NCHW');
}

/**
 * An AutoencoderKL (official architecture and names) running on any `Ops` engine, as a pipeline
 * stage. Encode: `scale_factor * z`, z the posterior mode (default) or a seeded sample.
 * Decode: `decoder(post_quant_conv(latents / scale_factor))`.
 */
export class AutoencoderKLStage<T> implements Autoencoder {
  readonly latentChannels: number;
  readonly downsampleFactor: number;
  readonly prefix: string;
  readonly scaleFactor: number;
  readonly pixelRange: PixelRange;
  private readonly scope: OpsScope<T>;

  /**
   * @param ops the engine, holding the parameters under `prefix` + official names.
   * @param config the model config (validated with `parseAutoencoderConfig`).
   */
  constructor(
    readonly ops: Ops<T>,
    readonly config: AutoencoderConfig,
    options: AutoencoderStageOptions<T> = {},
  ) {
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.scaleFactor = options.scaleFactor ?? SCALE_FACTOR;
    this.pixelRange = options.pixelRange ?? 'imagenet';
    this.scope = options.scope ?? { run: (fn) => fn(), dispose: () => {} };
    this.latentChannels = config.embed_dim;
    this.downsampleFactor = downsampleFactor(config);
  }

  private async runAndRead(fn: () => T): Promise<HostTensor<'float32'>> {
    const y = this.scope.run(fn);
    try {
      return await this.ops.read(y);
    } finally {
      this.scope.dispose(y);
    }
  }

  /**
   * Images `[N, 3, H, W]` (image convention: ImageNet-normalised) to scaled latents
   * `[N, embed_dim, H/f, W/f]`. `sample` draws `mean + std * eps` with eps from `Rng(seed)` (as
   * the official `get_first_stage_encoding`, which samples); otherwise the posterior mode (mean).
   * @throws Error when the images are not `[N, in_channels, H, W]` with H, W multiples of f.
   */
  async encode(images: HostTensor, options: { sample?: boolean; seed?: number } = {}): Promise<HostTensor> {
    const x = this.pixelRange === 'symmetric' ? convertRange(images, 'symmetric') : images;
    const [n, c, h, w] = x.shape;
    const f = this.downsampleFactor;
    if (x.shape.length !== 4 || c !== this.config.ddconfig.in_channels || h % f !== 0 || w % f !== 0) {
      throw new Error(
        `AutoencoderKL.encode: images of shape [${x.shape.join(', ')}] must be [N, ${this.config.ddconfig.in_channels}, H, W] with H and W multiples of ${f}; resize or crop them`,
      );
    }
    const noise = options.sample
      ? tensor(new Rng(options.seed ?? 0).normals(n * this.latentChannels * (h / f) * (w / f)), [n, this.latentChannels, h / f, w / f], 'NCHW')
      : null;
    return this.runAndRead(() => {
      const p = posterior(this.ops, encodeMoments(this.ops, this.config, this.ops.input(x), this.prefix));
      const z = noise ? samplePosterior(this.ops, p, this.ops.input(noise)) : p.mean;
      return this.ops.scale(z, this.scaleFactor);
    });
  }

  /** Scaled latents `[N, embed_dim, h, w]` to images `[N, 3, h*f, w*f]` in the image convention. */
  async decode(latents: HostTensor): Promise<HostTensor> {
    const y = await this.runAndRead(() => decodeLatent(this.ops, this.config, this.ops.scale(this.ops.input(latents), 1 / this.scaleFactor), this.prefix));
    return this.pixelRange === 'symmetric' ? convertRange(y, 'imagenet') : y;
  }
}
