import { promises as fs } from 'node:fs';
import { writeFileAtomic } from '@diad/core';
import sharp from 'sharp';
import { imageSize } from 'image-size';
import { DatasetError } from './errors.js';
import type { Pixels } from './resample.js';

/** An 8-bit RGB image, interleaved rows (HWC), values 0..255. */
export interface RgbImage extends Pixels {
  readonly channels: 3;
}

/** A binary mask, one byte per pixel (row-major HW), values 0 or 1. */
export interface BinaryMask extends Pixels {
  readonly channels: 1;
}

const UNREADABLE_FIX = 'replace it with a complete PNG or JPEG file (it may be truncated, corrupt or not an image)';

/**
 * Decodes an image file to 8-bit RGB at its own size. PNG and JPEG (and what else libvips reads),
 * 8 or 16 bit, grayscale or colour: grayscale is replicated to three channels and an alpha channel
 * is dropped (not composited), as OpenCV's `imread(IMREAD_COLOR)` in the official loader does;
 * 16-bit samples become 8-bit by `v >> 8` (sharp), where OpenCV rounds `v / 256`.
 * @throws DatasetError naming the file when it cannot be read or decoded (truncated, corrupt).
 */
export async function readRgb(path: string): Promise<RgbImage> {
  try {
    return await toRgb(sharp(path, { failOn: 'truncated' }));
  } catch (e) {
    // A missing or empty file (an interrupted copy or download) says so instead of sharp's wording.
    const st = await fs.stat(path).catch(() => null);
    if (!st) throw DatasetError.of(path, 'no such file', 'check the path (and that a linked file still exists)');
    throw DatasetError.of(path, `unreadable image: ${st.size === 0 ? 'empty file (0 bytes)' : (e as Error).message}`, UNREADABLE_FIX);
  }
}

async function toRgb(img: sharp.Sharp): Promise<RgbImage> {
  const { data, info } = await img.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height, channels: 3 };
}

/** Why {@link decodeRgb} refused bytes: not a readable image (`unreadable`) or more pixels than allowed (`too-large`). */
export class ImageDecodeError extends Error {
  constructor(
    readonly reason: 'unreadable' | 'too-large',
    message: string,
  ) {
    super(message);
    this.name = 'ImageDecodeError';
  }
}

/**
 * Decodes image bytes (an upload) to 8-bit RGB at their own size, as {@link readRgb} decodes a
 * file. The header is read first, so an image that claims more than `maxPixels` pixels is refused
 * before any pixel is decoded.
 * @param maxPixels largest width x height accepted.
 * @throws ImageDecodeError `too-large` (with the size) or `unreadable` (empty, not an image, truncated, corrupt).
 */
export async function decodeRgb(bytes: Uint8Array, maxPixels: number): Promise<RgbImage> {
  if (bytes.length === 0) throw new ImageDecodeError('unreadable', 'empty body: send the image bytes (PNG or JPEG)');
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  // image-size reads the header alone: a file that claims a huge size is refused even when its pixel data is missing.
  let width = 0;
  let height = 0;
  try {
    ({ width = 0, height = 0 } = imageSize(bytes));
  } catch {
    throw new ImageDecodeError('unreadable', 'not a readable image (the bytes start like no known image format); send a PNG or JPEG');
  }
  if (!(width > 0 && height > 0)) throw new ImageDecodeError('unreadable', 'the image header has no size; send a PNG or JPEG');
  if (width * height > maxPixels)
    throw new ImageDecodeError('too-large', `image is ${width}x${height} (${width * height} pixels); the limit is ${maxPixels} pixels: downscale it first`);
  try {
    return await toRgb(sharp(buf, { failOn: 'truncated', limitInputPixels: maxPixels }));
  } catch (e) {
    throw new ImageDecodeError('unreadable', `the image could not be decoded (${(e as Error).message.split('\n')[0]}): it may be truncated or corrupt`);
  }
}

/**
 * Decodes a ground-truth mask to a binary mask at its own size: a pixel is 1 where the mask's
 * luminance is above zero (any non-black value, at 16-bit precision, so VisA's class-index masks
 * with values 1, 2, ... count too), else 0. Alpha is dropped.
 * @throws DatasetError naming the file when it cannot be read or decoded.
 */
export async function readMask(path: string): Promise<BinaryMask> {
  try {
    const { data, info } = await sharp(path, { failOn: 'truncated' })
      .removeAlpha()
      .toColourspace('grey16')
      .raw({ depth: 'ushort' })
      .toBuffer({ resolveWithObject: true });
    const v = new Uint16Array(data.buffer, data.byteOffset, data.length / 2);
    const n = info.width * info.height;
    if (v.length !== n * info.channels) throw new Error(`decoded to ${v.length} values for ${info.width}x${info.height}`);
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = v[i * info.channels] > 0 ? 1 : 0;
    return { data: out, width: info.width, height: info.height, channels: 1 };
  } catch (e) {
    throw DatasetError.of(path, `unreadable mask: ${(e as Error).message}`, UNREADABLE_FIX);
  }
}

/**
 * Reads only the header of an image (no decoding): its width and height.
 * @throws DatasetError naming the file when it is not a readable image.
 */
export async function readSize(path: string): Promise<{ width: number; height: number }> {
  try {
    const m = await sharp(path).metadata();
    if (!m.width || !m.height) throw new Error('no size in header');
    return { width: m.width, height: m.height };
  } catch (e) {
    throw DatasetError.of(path, `unreadable image: ${(e as Error).message}`, UNREADABLE_FIX);
  }
}

/** Encodes 8-bit pixels (1 = gray, 3 = RGB, 4 = RGBA channels) as a PNG buffer. */
export async function encodePng(px: Pixels): Promise<Uint8Array> {
  const buf = await sharp(Buffer.from(px.data.buffer, px.data.byteOffset, px.data.length), {
    raw: { width: px.width, height: px.height, channels: px.channels as 1 | 3 | 4 },
  })
    .toColourspace(px.channels === 1 ? 'b-w' : 'srgb')
    .png({ compressionLevel: 6 })
    .toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

/** Writes 8-bit pixels as a PNG file, atomically. A binary mask (0/1) is written as 0/255. */
export async function writePng(path: string, px: Pixels, options: { binary?: boolean } = {}): Promise<void> {
  const data = options.binary ? px.data.map((v) => (v ? 255 : 0)) : px.data;
  await writeFileAtomic(path, await encodePng({ ...px, data }));
}
