/**
 * A training-free anomaly scorer: a memory bank of patch features of normal images and a
 * nearest-neighbour distance (PatchCore, Roth et al. CVPR 2022, with random instead of coreset
 * subsampling). It sets the bar DiAD must beat and ranks backbones.
 *
 * Patch feature: the chosen levels, each 3x3 average-pooled (local neighbourhood), upsampled to
 * the first chosen level's grid (bilinear), concatenated over channels, and averaged down to at
 * most `dim` channels by adaptive average pooling over channels (PatchCore's reduction).
 * The nearest-neighbour search is one matMul per image on the tfjs backend (wasm: XNNPACK), with
 * the bank stored `[D, M]` so no operand is transposed (transposed matMuls are slow on wasm).
 */
import * as tf from '@tensorflow/tfjs-core';
import { combineLevelMaps, Rng, tensor, type FeatureExtractor, type HostTensor } from '@diad/core';
import { initTfjs, toTf } from '@diad/core/tfjs';

/** Options of {@link PatchMemoryBank}. */
export interface PatchBankOptions {
  /** Indices of the extractor's levels to use, or `'all'` (default: all but the first, i.e. strides 8 and 16). */
  levels?: readonly number[] | 'all';
  /** Number of patch vectors kept (random, seeded subsample). Default 10 000. */
  bankSize?: number;
  /** Channel cap of the patch vector (adaptive average pooling over channels). Default 512. */
  dim?: number;
  /** Seed of the subsampling. Default 0. */
  seed?: number;
  /** Gaussian blur sigma of the anomaly map, pixels (scipy defaults). Default 4. */
  sigma?: number;
}

/** Patch features `[N*h*w, D]` (row-major, one row per patch) of a batch, and the grid size. */
interface Patches {
  data: Float32Array;
  n: number;
  h: number;
  w: number;
  d: number;
}

/**
 * Memory bank of normal patch features. Build with {@link PatchMemoryBank.fit}, score with
 * {@link score}; call {@link dispose} to free the bank tensor.
 */
export class PatchMemoryBank {
  private constructor(
    private readonly extractor: FeatureExtractor,
    private readonly levels: readonly number[],
    private readonly dim: number,
    private readonly sigma: number,
    private readonly bankT: tf.Tensor2D,
    private readonly bankSq: tf.Tensor2D,
    /** Patch vectors in the bank. */
    readonly size: number,
    /** Length of a patch vector. */
    readonly vectorLength: number,
  ) {}

  /**
   * Builds the bank from normal images.
   * @param batches `[n, 3, H, W]` ImageNet-normalised batches of train images.
   * @param imageCount total number of images the batches hold (to choose the subsample up front).
   * @throws Error when a level index is out of range, the batches hold a different number of images,
   *   or images differ in size.
   */
  static async fit(
    extractor: FeatureExtractor,
    batches: AsyncIterable<HostTensor> | Iterable<HostTensor>,
    imageCount: number,
    options: PatchBankOptions = {},
  ): Promise<PatchMemoryBank> {
    const { bankSize = 10_000, dim = 512, seed = 0, sigma = 4 } = options;
    // The search runs on tfjs whatever engine the extractor uses (an ONNX one leaves tfjs uninitialised).
    await initTfjs();
    const every = extractor.strides.map((_, i) => i);
    const levels = options.levels === 'all' ? every : (options.levels ?? every.slice(1));
    for (const l of levels) {
      if (!Number.isInteger(l) || l < 0 || l >= extractor.strides.length) {
        throw new Error(
          `patch bank: level ${l} does not exist; the extractor has ${extractor.strides.length} levels (strides ${extractor.strides.join(', ')})`,
        );
      }
    }
    let bank: Float32Array | null = null;
    let picks: Int32Array | null = null; // global patch index -> bank row, -1 when not kept
    let seen = 0;
    let d = 0;
    let grid = '';
    let kept = 0;
    for await (const images of batches) {
      const p = await patchFeatures(extractor, images, levels, dim);
      const per = p.h * p.w;
      if (!bank) {
        d = p.d;
        grid = `${p.h}x${p.w}`;
        const total = imageCount * per;
        kept = Math.min(bankSize, total);
        picks = choose(total, kept, seed);
        bank = new Float32Array(kept * d);
      } else if (`${p.h}x${p.w}` !== grid) {
        throw new Error(`patch bank: train images give a ${p.h}x${p.w} patch grid, earlier ones ${grid}; resize all images to one size`);
      }
      if (seen + p.n > imageCount) throw new Error(`patch bank: batches hold more than the ${imageCount} images announced`);
      for (let i = 0; i < p.n * per; i++) {
        const row = picks![seen * per + i];
        if (row >= 0) bank.set(p.data.subarray(i * d, (i + 1) * d), row * d);
      }
      seen += p.n;
    }
    if (!bank || seen !== imageCount) throw new Error(`patch bank: got ${seen} train images, expected ${imageCount}`);
    const b = tf.tensor2d(bank, [kept, d]);
    const bankT = tf.transpose(b) as tf.Tensor2D;
    const bankSq = tf.tidy(() => tf.reshape(tf.sum(tf.square(b), 1), [1, kept]) as tf.Tensor2D);
    b.dispose();
    return new PatchMemoryBank(extractor, levels, dim, sigma, bankT, bankSq, kept, d);
  }

  /**
   * Anomaly maps of test images: per patch the Euclidean distance to its nearest bank vector,
   * upsampled (bilinear, align_corners) to the image size and Gaussian-blurred.
   * @param images `[N, 3, H, W]` ImageNet-normalised.
   * @returns `[N, 1, H, W]` maps; the image score is their max.
   */
  async score(images: HostTensor): Promise<HostTensor> {
    const p = await patchFeatures(this.extractor, images, this.levels, this.dim);
    if (p.d !== this.vectorLength) throw new Error(`patch bank: test patch vectors have ${p.d} values, the bank ${this.vectorLength}`);
    const per = p.h * p.w;
    const dist = new Float32Array(p.n * per);
    for (let i = 0; i < p.n; i++) {
      const q = tf.tensor2d(p.data.subarray(i * per * p.d, (i + 1) * per * p.d), [per, p.d]);
      const nn = tf.tidy(() => {
        const qq = tf.sum(tf.square(q), 1, true);
        // |q - b|^2 = |q|^2 + |b|^2 - 2 q.b ; min over the bank.
        const d2 = tf.add(tf.sub(this.bankSq, tf.mul(tf.matMul(q, this.bankT), 2)), qq);
        return tf.sqrt(tf.relu(tf.min(d2, 1)));
      });
      dist.set(await nn.data(), i * per);
      tf.dispose([q, nn]);
    }
    return combineLevelMaps([tensor(dist, [p.n, 1, p.h, p.w], 'NCHW')], { size: [images.shape[2], images.shape[3]], sigma: this.sigma });
  }

  /** Frees the bank. */
  dispose(): void {
    tf.dispose([this.bankT, this.bankSq]);
  }
}

/** `count` distinct indices of `[0, total)` chosen uniformly (seeded), as a map index -> rank or -1. */
function choose(total: number, count: number, seed: number): Int32Array {
  const idx = new Int32Array(total);
  for (let i = 0; i < total; i++) idx[i] = i;
  const rng = new Rng(seed);
  // Partial Fisher-Yates: the first `count` entries become the sample.
  for (let i = 0; i < count; i++) {
    const j = rng.int(i, total - 1);
    const t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
  const picks = new Int32Array(total).fill(-1);
  for (let i = 0; i < count; i++) picks[idx[i]] = i;
  return picks;
}

/** Adaptive average pooling over channels as a `[C, D]` matrix (PyTorch adaptive_avg_pool1d bins). */
function channelPooling(c: number, d: number): tf.Tensor2D {
  const m = new Float32Array(c * d);
  for (let j = 0; j < d; j++) {
    const s = Math.floor((j * c) / d);
    const e = Math.ceil(((j + 1) * c) / d);
    for (let i = s; i < e; i++) m[i * d + j] = 1 / (e - s);
  }
  return tf.tensor2d(m, [c, d]);
}

/** Patch vectors of a batch (see the file comment). */
async function patchFeatures(extractor: FeatureExtractor, images: HostTensor, levels: readonly number[], dim: number): Promise<Patches> {
  const maps = await extractor.extract(images);
  const t = tf.tidy(() => {
    const xs = levels.map((l) => tf.avgPool(toTf({ ...maps[l], layout: 'NCHW' }) as tf.Tensor4D, 3, 1, 'same'));
    const [, h, w] = xs[0].shape;
    const cat = tf.concat(
      xs.map((x) => (x.shape[1] === h && x.shape[2] === w ? x : tf.image.resizeBilinear(x, [h, w]))),
      3,
    );
    const c = cat.shape[3];
    const flat = tf.reshape(cat, [-1, c]) as tf.Tensor2D;
    const out = c > dim ? tf.matMul(flat, channelPooling(c, dim)) : flat;
    return { out, h, w, d: Math.min(c, dim) };
  });
  const data = (await t.out.data()) as Float32Array;
  t.out.dispose();
  return { data, n: images.shape[0], h: t.h, w: t.w, d: t.d };
}
