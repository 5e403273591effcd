/**
 * The per-image PNG strip of the report: input | reconstruction | anomaly heatmap over the input |
 * ground truth, each tile `H x W`, separated by a 4 px white gap. Written with sharp.
 */
import sharp from 'sharp';
import { IMAGENET_MEAN, IMAGENET_STD, writeFileAtomic } from '@diad/core';
import { overlayHeatmap } from '@diad/datasets';

/**
 * One ImageNet-normalised image `[3, H, W]` (planar float) back to interleaved RGB bytes.
 * @param chw `3*H*W` values, channel-major.
 */
export function denormalizeToRgb(chw: Float32Array, height: number, width: number): Uint8Array {
  const hw = height * width;
  if (chw.length !== 3 * hw) throw new Error(`denormalizeToRgb: expected ${3 * hw} values for 3x${height}x${width}, got ${chw.length}`);
  const out = new Uint8Array(hw * 3);
  for (let c = 0; c < 3; c++)
    for (let i = 0; i < hw; i++) {
      const v = (chw[c * hw + i] * IMAGENET_STD[c] + IMAGENET_MEAN[c]) * 255;
      out[3 * i + c] = v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
    }
  return out;
}

/** A 0/1 mask `H*W` as interleaved RGB bytes (white defect on black). */
export function maskToRgb(mask: Uint8Array | null, hw: number): Uint8Array {
  const out = new Uint8Array(hw * 3);
  if (mask) for (let i = 0; i < hw; i++) if (mask[i]) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = 255;
  return out;
}

export interface StripInput {
  /** `[3, H, W]` ImageNet-normalised input and reconstruction. */
  input: Float32Array;
  reconstruction: Float32Array;
  /** `H*W` anomaly map. */
  map: Float32Array;
  /** `H*W` 0/1 ground truth (null: good image, shown black). */
  mask: Uint8Array | null;
  height: number;
  width: number;
  /** Map value range shown from coldest to hottest (shared by the run so strips compare). */
  range: [number, number];
}

const GAP = 4;

/** Renders the strip as PNG bytes. */
export async function renderStrip(s: StripInput): Promise<Buffer> {
  const { height: h, width: w } = s;
  const rgb = denormalizeToRgb(s.input, h, w);
  const tiles = [rgb, denormalizeToRgb(s.reconstruction, h, w), overlayHeatmap(s.map, rgb, s.range[0], s.range[1]), maskToRgb(s.mask, h * w)];
  const raw = (data: Uint8Array) => ({ input: Buffer.from(data.buffer, data.byteOffset, data.byteLength), raw: { width: w, height: h, channels: 3 as const } });
  return sharp({ create: { width: 4 * w + 3 * GAP, height: h, channels: 3, background: { r: 255, g: 255, b: 255 } } })
    .composite(tiles.map((t, i) => ({ ...raw(t), left: i * (w + GAP), top: 0 })))
    .png()
    .toBuffer();
}

/** Renders and writes the strip atomically. */
export async function writeStrip(path: string, s: StripInput): Promise<void> {
  await writeFileAtomic(path, await renderStrip(s));
}

/** Writes a bare heatmap (jet over the image) PNG, as `diad predict` does. */
export async function writeHeatmapPng(
  path: string,
  input: Float32Array,
  map: Float32Array,
  height: number,
  width: number,
  range: [number, number],
): Promise<void> {
  const rgb = overlayHeatmap(map, denormalizeToRgb(input, height, width), range[0], range[1]);
  const png = await sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
  await writeFileAtomic(path, png);
}
