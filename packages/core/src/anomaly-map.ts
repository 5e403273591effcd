/**
 * DiAD's multi-scale anomaly map (paper Sec. 3.4) as the official test computes it
 * (`cal_anomaly_map` followed by `scipy.ndimage.gaussian_filter` in the official `test.py`):
 * per feature level `1 - cosine similarity` over channels, bilinear upsampling with
 * `align_corners=True` to the image size, sum (or product) over levels, Gaussian blur.
 *
 * Pure TypeScript on host typed arrays: no engine needed.
 */
import { tensor, type HostTensor } from './tensor.js';

/** How per-level maps are combined: official `amap_mode` `'a'` (sum) or `'mul'` (product). */
export type AmapMode = 'add' | 'mul';

/** Options of {@link anomalyMap}. */
export interface AnomalyMapOptions {
  /** Output size `[H, W]` in pixels (official: the image size, 256). */
  size: readonly [number, number];
  /** Combination over levels; default `'add'` (the official run). */
  mode?: AmapMode;
  /** Gaussian blur sigma in output pixels; default 4; 0 disables the blur. Official run: 5. */
  sigma?: number;
  /** Blur kernel truncation in sigmas (scipy default 4.0). */
  truncate?: number;
}

/** PyTorch's `F.cosine_similarity` eps: each vector norm is clamped to at least this. */
const COS_EPS = 1e-8;

function shapeStr(t: HostTensor): string {
  return `[${t.shape.join(', ')}]`;
}

/**
 * Per-position `1 - cos(a, b)` over channels, as `1 - F.cosine_similarity(a, b)` (dim 1, eps 1e-8
 * on each norm).
 * @param a features `[N, C, h, w]` (NCHW).
 * @param b features of the same shape.
 * @returns `[N, 1, h, w]`, values in [0, 2].
 * @throws Error when the shapes differ or are not 4-D.
 */
export function cosineDistance(a: HostTensor, b: HostTensor): HostTensor {
  if (a.shape.length !== 4 || a.shape.join(',') !== b.shape.join(',')) {
    throw new Error(`cosineDistance: feature maps must be 4-D NCHW of one shape, got ${shapeStr(a)} and ${shapeStr(b)}`);
  }
  const [n, c, h, w] = a.shape;
  const hw = h * w;
  const out = new Float32Array(n * hw);
  const dot = new Float64Array(hw);
  const na = new Float64Array(hw);
  const nb = new Float64Array(hw);
  for (let i = 0; i < n; i++) {
    dot.fill(0);
    na.fill(0);
    nb.fill(0);
    for (let ch = 0; ch < c; ch++) {
      const o = (i * c + ch) * hw;
      for (let p = 0; p < hw; p++) {
        const x = a.data[o + p];
        const y = b.data[o + p];
        dot[p] += x * y;
        na[p] += x * x;
        nb[p] += y * y;
      }
    }
    for (let p = 0; p < hw; p++) {
      const den = Math.max(Math.sqrt(na[p]), COS_EPS) * Math.max(Math.sqrt(nb[p]), COS_EPS);
      out[i * hw + p] = 1 - dot[p] / den;
    }
  }
  return tensor(out, [n, 1, h, w], 'NCHW');
}

/**
 * Bilinear resize with `align_corners=True` (PyTorch `F.interpolate(..., mode='bilinear',
 * align_corners=True)`): output pixel `i` samples input coordinate `i * (in - 1) / (out - 1)`.
 * @param x `[N, C, h, w]` (NCHW).
 * @param size output `[H, W]`.
 * @returns `[N, C, H, W]`.
 */
export function resizeBilinearAlignCorners(x: HostTensor, size: readonly [number, number]): HostTensor {
  if (x.shape.length !== 4) throw new Error(`resizeBilinearAlignCorners: need a 4-D NCHW tensor, got ${shapeStr(x)}`);
  const [n, c, h, w] = x.shape;
  const [H, W] = size;
  if (!(H > 0 && W > 0)) throw new Error(`resizeBilinearAlignCorners: output size [${H}, ${W}] must be positive`);
  const axis = (inp: number, out: number) => {
    const i0 = new Int32Array(out);
    const i1 = new Int32Array(out);
    const f = new Float64Array(out);
    const scale = out > 1 ? (inp - 1) / (out - 1) : 0;
    for (let o = 0; o < out; o++) {
      const s = o * scale;
      const lo = Math.min(Math.floor(s), inp - 1);
      i0[o] = lo;
      i1[o] = Math.min(lo + 1, inp - 1);
      f[o] = s - lo;
    }
    return { i0, i1, f };
  };
  const ay = axis(h, H);
  const ax = axis(w, W);
  const out = new Float32Array(n * c * H * W);
  for (let plane = 0; plane < n * c; plane++) {
    const src = plane * h * w;
    const dst = plane * H * W;
    for (let y = 0; y < H; y++) {
      const r0 = src + ay.i0[y] * w;
      const r1 = src + ay.i1[y] * w;
      const fy = ay.f[y];
      for (let xx = 0; xx < W; xx++) {
        const a0 = ax.i0[xx];
        const a1 = ax.i1[xx];
        const fx = ax.f[xx];
        const top = x.data[r0 + a0] * (1 - fx) + x.data[r0 + a1] * fx;
        const bot = x.data[r1 + a0] * (1 - fx) + x.data[r1 + a1] * fx;
        out[dst + y * W + xx] = top * (1 - fy) + bot * fy;
      }
    }
  }
  return tensor(out, [n, c, H, W], x.layout === 'any' ? 'NCHW' : x.layout);
}

/** scipy's 'reflect' border (half-sample symmetric, `d c b a | a b c d | d c b a`), any offset. */
function reflectIndex(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * n;
  let k = i % period;
  if (k < 0) k += period;
  return k < n ? k : period - 1 - k;
}

/**
 * The normalised 1-D Gaussian kernel of `scipy.ndimage.gaussian_filter1d`:
 * radius `int(truncate * sigma + 0.5)`, weights `exp(-x^2 / (2 sigma^2))` summing to 1.
 */
export function gaussianKernel1d(sigma: number, truncate = 4.0): Float64Array {
  if (!(sigma > 0)) throw new Error(`gaussianKernel1d: sigma must be > 0, got ${sigma}`);
  const radius = Math.trunc(truncate * sigma + 0.5);
  const k = new Float64Array(2 * radius + 1);
  let sum = 0;
  for (let x = -radius; x <= radius; x++) {
    const v = Math.exp((-0.5 * (x * x)) / (sigma * sigma));
    k[x + radius] = v;
    sum += v;
  }
  for (let i = 0; i < k.length; i++) k[i] /= sum;
  return k;
}

/**
 * 2-D Gaussian blur with `scipy.ndimage.gaussian_filter` defaults (`mode='reflect'`,
 * `truncate=4.0`): separable, first along rows (axis 0) then columns (axis 1), as scipy does.
 * @param x `[N, C, H, W]` (NCHW); every `H x W` plane is blurred independently.
 * @param sigma standard deviation in pixels (> 0).
 * @returns a new tensor of the same shape.
 */
export function gaussianBlur(x: HostTensor, sigma: number, truncate = 4.0): HostTensor {
  if (x.shape.length !== 4) throw new Error(`gaussianBlur: need a 4-D NCHW tensor, got ${shapeStr(x)}`);
  const [n, c, H, W] = x.shape;
  const k = gaussianKernel1d(sigma, truncate);
  const r = (k.length - 1) / 2;
  const out = new Float32Array(x.data.length);
  const tmp = new Float64Array(H * W);
  // Precomputed reflected indices per tap keep the inner loops branch-free.
  const idxY = new Int32Array(H * k.length);
  for (let y = 0; y < H; y++) for (let t = 0; t < k.length; t++) idxY[y * k.length + t] = reflectIndex(y + t - r, H);
  const idxX = new Int32Array(W * k.length);
  for (let xx = 0; xx < W; xx++) for (let t = 0; t < k.length; t++) idxX[xx * k.length + t] = reflectIndex(xx + t - r, W);
  for (let plane = 0; plane < n * c; plane++) {
    const o = plane * H * W;
    for (let y = 0; y < H; y++) {
      for (let xx = 0; xx < W; xx++) {
        let s = 0;
        for (let t = 0; t < k.length; t++) s += k[t] * x.data[o + idxY[y * k.length + t] * W + xx];
        tmp[y * W + xx] = s;
      }
    }
    for (let y = 0; y < H; y++) {
      const row = y * W;
      for (let xx = 0; xx < W; xx++) {
        let s = 0;
        for (let t = 0; t < k.length; t++) s += k[t] * tmp[row + idxX[xx * k.length + t]];
        out[o + row + xx] = s;
      }
    }
  }
  return tensor(out, x.shape, x.layout === 'any' ? 'NCHW' : x.layout);
}

/**
 * Combines per-level maps `[N, 1, h_l, w_l]` into one `[N, 1, H, W]`: each is upsampled
 * (bilinear, align_corners) to `size`, then summed (`'add'`) or multiplied (`'mul'`), then
 * blurred when `sigma > 0`. Shared by the DiAD map and the patch nearest-neighbour baseline.
 */
export function combineLevelMaps(levels: readonly HostTensor[], options: AnomalyMapOptions): HostTensor {
  if (levels.length === 0) throw new Error('combineLevelMaps: no feature levels');
  const { size, mode = 'add', sigma = 4, truncate = 4.0 } = options;
  const n = levels[0].shape[0];
  const acc = new Float32Array(n * size[0] * size[1]).fill(mode === 'mul' ? 1 : 0);
  for (const level of levels) {
    if (level.shape.length !== 4 || level.shape[0] !== n || level.shape[1] !== 1) {
      throw new Error(`combineLevelMaps: each level must be [${n}, 1, h, w], got ${shapeStr(level)}`);
    }
    const up = resizeBilinearAlignCorners(level, size).data;
    if (mode === 'mul') for (let i = 0; i < acc.length; i++) acc[i] *= up[i];
    else for (let i = 0; i < acc.length; i++) acc[i] += up[i];
  }
  const map = tensor(acc, [n, 1, size[0], size[1]], 'NCHW');
  return sigma > 0 ? gaussianBlur(map, sigma, truncate) : map;
}

/**
 * The official DiAD anomaly map between the features of the input images and of their
 * reconstructions (official `cal_anomaly_map` + `gaussian_filter`).
 * @param inputFeatures one `[N, C_l, h_l, w_l]` map per level (input images).
 * @param reconFeatures the same levels for the reconstructions.
 * @returns `[N, 1, H, W]` anomaly map (higher = more anomalous).
 * @throws Error when the level counts or shapes differ.
 */
export function anomalyMap(inputFeatures: readonly HostTensor[], reconFeatures: readonly HostTensor[], options: AnomalyMapOptions): HostTensor {
  if (inputFeatures.length !== reconFeatures.length) {
    throw new Error(`anomalyMap: ${inputFeatures.length} input feature levels but ${reconFeatures.length} reconstruction levels`);
  }
  const levels = inputFeatures.map((f, i) => cosineDistance(f, reconFeatures[i]));
  return combineLevelMaps(levels, options);
}
