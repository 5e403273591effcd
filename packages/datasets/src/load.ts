import type { HostTensor } from '@diad/core';
import { DatasetError } from './errors.js';
import { readMask, readRgb, type BinaryMask, type RgbImage } from './image.js';
import { resizeBilinear, resizeNearest } from './resample.js';
import { masksToTensor, rgbToTensor, type Normalization } from './tensors.js';
import type { Sample } from './types.js';

/** Default model input size (the official DiAD resizes every image to 256x256). */
export const DEFAULT_IMAGE_SIZE = 256;

/** A decoded sample at model size. */
export interface LoadedSample {
  readonly sample: Sample;
  /** RGB at `size x size`, resized bilinearly as Pillow/torchvision. */
  readonly image: RgbImage;
  /** Binary mask at `size x size` (nearest), all zero for good images and for masks-less samples. */
  readonly mask: BinaryMask;
  /** Width and height of the file before resizing. */
  readonly originalSize: { readonly width: number; readonly height: number };
}

/**
 * Decodes an image file and resizes it to `size x size` bilinearly (Pillow-exact; aspect ratio is
 * not kept, as `transforms.Resize((size, size))` in the official loader).
 * @throws DatasetError naming the file when it is unreadable or truncated.
 */
export async function loadRgb(path: string, size: number = DEFAULT_IMAGE_SIZE): Promise<RgbImage> {
  return resizeBilinear(await readRgb(path), size, size) as RgbImage;
}

/**
 * Decodes a sample: the image resized bilinearly and its mask resized nearest-neighbour to
 * `size x size` and binarised (> 0); good images get an all-zero mask.
 * @throws DatasetError naming the file when the image or mask is unreadable, or when the mask's
 *   size differs from its image's size.
 */
export async function loadSample(sample: Sample, size: number = DEFAULT_IMAGE_SIZE): Promise<LoadedSample> {
  const [raw, rawMask] = await Promise.all([
    readRgb(sample.imagePath),
    sample.maskPath && sample.label === 1 ? readMask(sample.maskPath) : Promise.resolve(null),
  ]);
  if (rawMask && (rawMask.width !== raw.width || rawMask.height !== raw.height)) {
    throw DatasetError.of(
      sample.maskPath!,
      `mask is ${rawMask.width}x${rawMask.height} but its image ${sample.imagePath} is ${raw.width}x${raw.height}`,
      'resize the mask to its image size (nearest neighbour) or pair it with the right image',
    );
  }
  const image = resizeBilinear(raw, size, size) as RgbImage;
  const mask = rawMask
    ? (resizeNearest(rawMask, size, size) as BinaryMask)
    : { data: new Uint8Array(size * size), width: size, height: size, channels: 1 as const };
  return { sample, image, mask, originalSize: { width: raw.width, height: raw.height } };
}

/** A batch of samples as tensors. */
export interface Batch {
  readonly samples: readonly Sample[];
  /** `[N, 3, size, size]` float32 NCHW in the requested normalisation. */
  readonly images: HostTensor;
  /** `[N, 1, size, size]` uint8 NCHW, 0/1. */
  readonly masks: HostTensor<'uint8'>;
  /** Image labels, 0 good / 1 defective, length N. */
  readonly labels: Uint8Array;
  /** The 8-bit RGB images at model size (for reports). */
  readonly rgb: readonly RgbImage[];
}

/** Options of {@link loadBatch} and {@link batches}. */
export interface LoadOptions {
  /** Model input size, square (default 256). */
  size?: number;
  /** Float conversion (default `imagenet`, the official convention). */
  normalization?: Normalization;
}

/** Decodes samples (in parallel) into one batch. */
export async function loadBatch(samples: readonly Sample[], options: LoadOptions = {}): Promise<Batch> {
  const loaded = await Promise.all(samples.map((s) => loadSample(s, options.size ?? DEFAULT_IMAGE_SIZE)));
  return {
    samples,
    images: rgbToTensor(
      loaded.map((l) => l.image),
      options.normalization ?? 'imagenet',
    ),
    masks: masksToTensor(loaded.map((l) => l.mask)),
    labels: Uint8Array.from(samples, (s) => s.label),
    rgb: loaded.map((l) => l.image),
  };
}
