import { IMAGENET_MEAN, IMAGENET_STD, mask, tensor, type HostTensor } from '@diad/core';
import type { BinaryMask, RgbImage } from './image.js';

/**
 * How 8-bit RGB becomes float: `imagenet` is the official DiAD input convention
 * (`ToTensor` then `Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])`,
 * `mvtecad_dataloader.py`), i.e. `(v / 255 - mean_c) / std_c`; `unit` is `v / 255` in [0, 1].
 */
export type Normalization = 'imagenet' | 'unit';

/**
 * Stacks RGB images of one size into an NCHW float32 host tensor `[N, 3, H, W]`.
 * @throws Error when the list is empty or sizes differ.
 */
export function rgbToTensor(images: readonly RgbImage[], normalization: Normalization = 'imagenet'): HostTensor {
  if (images.length === 0) throw new Error('rgbToTensor: no images');
  const { width: w, height: h } = images[0];
  const hw = w * h;
  const out = new Float32Array(images.length * 3 * hw);
  const mean = normalization === 'imagenet' ? IMAGENET_MEAN : [0, 0, 0];
  const std = normalization === 'imagenet' ? IMAGENET_STD : [1, 1, 1];
  images.forEach((img, n) => {
    if (img.width !== w || img.height !== h) {
      throw new Error(`rgbToTensor: image ${n} is ${img.width}x${img.height}, image 0 is ${w}x${h}`);
    }
    for (let c = 0; c < 3; c++) {
      const o = (n * 3 + c) * hw;
      for (let i = 0; i < hw; i++) out[o + i] = (img.data[i * 3 + c] / 255 - mean[c]) / std[c];
    }
  });
  return tensor(out, [images.length, 3, h, w], 'NCHW');
}

/**
 * Back from an NCHW float tensor `[N, 3, H, W]` (in the given normalisation) to 8-bit RGB images
 * for reports: values are de-normalised, scaled by 255, rounded and clamped to 0..255.
 * @throws Error when the tensor is not `[N, 3, H, W]`.
 */
export function tensorToRgb(t: HostTensor, normalization: Normalization = 'imagenet'): RgbImage[] {
  if (t.shape.length !== 4 || t.shape[1] !== 3) {
    throw new Error(`tensorToRgb: expected [N, 3, H, W], got [${t.shape.join(', ')}]`);
  }
  const [n, , h, w] = t.shape;
  const hw = h * w;
  const mean = normalization === 'imagenet' ? IMAGENET_MEAN : [0, 0, 0];
  const std = normalization === 'imagenet' ? IMAGENET_STD : [1, 1, 1];
  const out: RgbImage[] = [];
  for (let b = 0; b < n; b++) {
    const data = new Uint8Array(hw * 3);
    for (let c = 0; c < 3; c++) {
      const o = (b * 3 + c) * hw;
      for (let i = 0; i < hw; i++) {
        const v = Math.round((t.data[o + i] * std[c] + mean[c]) * 255);
        data[i * 3 + c] = v < 0 ? 0 : Math.min(v, 255);
      }
    }
    out.push({ data, width: w, height: h, channels: 3 });
  }
  return out;
}

/**
 * Stacks binary masks of one size into a uint8 host tensor `[N, 1, H, W]` (values 0/1).
 * @throws Error when the list is empty or sizes differ.
 */
export function masksToTensor(masks: readonly BinaryMask[]): HostTensor<'uint8'> {
  if (masks.length === 0) throw new Error('masksToTensor: no masks');
  const { width: w, height: h } = masks[0];
  const out = new Uint8Array(masks.length * w * h);
  masks.forEach((m, n) => {
    if (m.width !== w || m.height !== h) throw new Error(`masksToTensor: mask ${n} is ${m.width}x${m.height}, mask 0 is ${w}x${h}`);
    out.set(m.data, n * w * h);
  });
  return mask(out, [masks.length, 1, h, w], 'NCHW');
}
