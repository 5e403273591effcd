/**
 * Resampling of 8-bit interleaved (HWC) pixels, matching Pillow exactly, because the official
 * DiAD data pipeline resizes PIL images with `torchvision.transforms.Resize((256, 256))`
 * (`mvtecad_dataloader.py`), which calls Pillow's `Image.resize(..., BILINEAR)`.
 *
 * Why not sharp's resize: measured against this Pillow algorithm, sharp's `linear` kernel is off by
 * up to 2/255 when shrinking 900 -> 256 and up to 51/255 when enlarging 256 -> 300 (a different
 * pixel-centre alignment), so decoding stays with sharp and resampling is done here.
 */

/** 8-bit pixels in rows, `channels` values per pixel. */
export interface Pixels {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
  readonly channels: number;
}

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);

interface Taps {
  start: Int32Array;
  count: Int32Array;
  /** `count[i]` fixed-point weights per output index, stride `maxTaps`. */
  weights: Int32Array;
  maxTaps: number;
}

/**
 * Pillow's `precompute_coeffs` for the bilinear (triangle) filter: when shrinking, the filter is
 * widened by the scale factor (antialiasing); weights are normalised to sum 1, then converted to
 * 22-bit fixed point.
 */
function bilinearTaps(inSize: number, outSize: number): Taps {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale;
  const ss = 1 / filterScale;
  const maxTaps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * maxTaps);
  const w = new Float64Array(maxTaps);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const n = Math.min(Math.trunc(center + support + 0.5), inSize) - lo;
    let total = 0;
    for (let i = 0; i < n; i++) {
      const x = Math.abs((i + lo - center + 0.5) * ss);
      w[i] = x < 1 ? 1 - x : 0;
      total += w[i];
    }
    start[o] = lo;
    count[o] = n;
    for (let i = 0; i < n; i++) {
      const k = total !== 0 ? w[i] / total : 0;
      weights[o * maxTaps + i] = Math.trunc(k < 0 ? k * ONE - 0.5 : k * ONE + 0.5);
    }
  }
  return { start, count, weights, maxTaps };
}

function clip8(acc: number): number {
  const v = Math.floor(acc / ONE);
  return v < 0 ? 0 : Math.min(v, 255);
}

/**
 * Bilinear resize, bit-exact with Pillow's `Image.resize((width, height), Image.BILINEAR)` on an
 * 8-bit image (horizontal pass then vertical pass, each rounded to 8 bits, as Pillow does).
 * Returns the input when the size is unchanged.
 */
export function resizeBilinear(src: Pixels, width: number, height: number): Pixels {
  if (!(width > 0 && height > 0 && Number.isInteger(width) && Number.isInteger(height))) {
    throw new Error(`resizeBilinear: invalid target size ${width}x${height}`);
  }
  let cur = src;
  const c = src.channels;
  if (width !== src.width) {
    const t = bilinearTaps(src.width, width);
    const out = new Uint8Array(width * src.height * c);
    for (let y = 0; y < src.height; y++) {
      const row = y * src.width;
      for (let x = 0; x < width; x++) {
        const s = t.start[x];
        const n = t.count[x];
        const wo = x * t.maxTaps;
        for (let ch = 0; ch < c; ch++) {
          let acc = HALF;
          for (let i = 0; i < n; i++) acc += cur.data[(row + s + i) * c + ch] * t.weights[wo + i];
          out[(y * width + x) * c + ch] = clip8(acc);
        }
      }
    }
    cur = { data: out, width, height: src.height, channels: c };
  }
  if (height !== src.height) {
    const t = bilinearTaps(src.height, height);
    const w = cur.width;
    const out = new Uint8Array(w * height * c);
    for (let y = 0; y < height; y++) {
      const s = t.start[y];
      const n = t.count[y];
      const wo = y * t.maxTaps;
      for (let x = 0; x < w; x++) {
        for (let ch = 0; ch < c; ch++) {
          let acc = HALF;
          for (let i = 0; i < n; i++) acc += cur.data[((s + i) * w + x) * c + ch] * t.weights[wo + i];
          out[(y * w + x) * c + ch] = clip8(acc);
        }
      }
    }
    cur = { data: out, width: w, height, channels: c };
  }
  return cur;
}

/**
 * Nearest-neighbour resize as Pillow's `Image.NEAREST` (source index `floor((i + 0.5) * in/out)`),
 * used for masks so they stay binary.
 */
export function resizeNearest(src: Pixels, width: number, height: number): Pixels {
  if (width === src.width && height === src.height) return src;
  const c = src.channels;
  const out = new Uint8Array(width * height * c);
  const sx = src.width / width;
  const sy = src.height / height;
  for (let y = 0; y < height; y++) {
    const yi = Math.min(Math.floor((y + 0.5) * sy), src.height - 1);
    for (let x = 0; x < width; x++) {
      const xi = Math.min(Math.floor((x + 0.5) * sx), src.width - 1);
      for (let ch = 0; ch < c; ch++) out[(y * width + x) * c + ch] = src.data[(yi * src.width + xi) * c + ch];
    }
  }
  return { data: out, width, height, channels: c };
}
