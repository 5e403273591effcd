/**
 * The stage interfaces of the DiAD pipeline (paper Sec. 3, Fig. 2). Every stage takes and returns
 * host tensors in NCHW, so a stage implemented on one engine (tfjs, onnxruntime) combines with a
 * stage on another.
 *
 * Image convention at stage boundaries: `[N, 3, H, W]` float32 RGB, ImageNet-normalised
 * (`(x/255 - mean) / std`, mean 0.485/0.456/0.406, std 0.229/0.224/0.225), as the official data
 * pipeline produces. Stages that need another range convert inside.
 */
import type { HostTensor } from './tensor.js';

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/** Pixel-space autoencoder (LDM AutoencoderKL): images to latents and back. */
export interface Autoencoder {
  /** Latent channels (4 for the official f=8 model). */
  readonly latentChannels: number;
  /** Spatial downsampling factor image -> latent (8 for the official model). */
  readonly downsampleFactor: number;
  /**
   * Encodes images `[N, 3, H, W]` to scaled latents `[N, C, H/f, W/f]` (posterior mode, or a
   * sample when `sample` is set, times the latent scale factor).
   */
  encode(images: HostTensor, options?: { sample?: boolean; seed?: number }): Promise<HostTensor>;
  /** Decodes scaled latents back to images `[N, 3, H, W]` in the image convention. */
  decode(latents: HostTensor): Promise<HostTensor>;
}

/**
 * Options of one test-time reconstruction call, whatever the sampler: only the noise seed. The
 * sampler's own settings (DDIM's start, steps, eta) are fixed when the reconstructor is made.
 */
export interface ReconstructOptions {
  /** Seed of the noise. Each image draws its own copy of the stream, so its reconstruction does not depend on its batch. */
  seed: number;
}

/** Noises latents and denoises them back with a sampler (DDIM in the paper), guided by the input image (SG network + UNet). */
export interface Reconstructor {
  /**
   * @param latents scaled latents `[N, C, h, w]`.
   * @param hint the input images `[N, 3, H, W]` (image convention) that guide the SG network.
   * @returns reconstructed scaled latents `[N, C, h, w]`.
   */
  reconstruct(latents: HostTensor, hint: HostTensor, options: ReconstructOptions): Promise<HostTensor>;
}

/** Pretrained feature extractor used to compare input and reconstruction (paper Sec. 3.4). */
export interface FeatureExtractor {
  /** Strides of the returned maps relative to the input, e.g. `[4, 8, 16]`. */
  readonly strides: readonly number[];
  /** Images `[N, 3, H, W]` (image convention) to one map `[N, C_l, H/s_l, W/s_l]` per stride. */
  extract(images: HostTensor): Promise<HostTensor[]>;
}
