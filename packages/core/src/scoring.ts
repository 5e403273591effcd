/**
 * Test-time scoring (paper Sec. 3.3-3.4): encode to latents, noise and denoise them guided by the
 * input (SG network, the configured sampler), decode, compare input and reconstruction in feature
 * space; the anomaly map's maximum is the image score. Written against core's stage interfaces,
 * so each stage can come from any engine. Reconstruction and scoring are separate steps, so
 * variants that differ only in how they score (`diad ablate`) share one reconstruction.
 */
import { anomalyMap, type AmapMode } from './anomaly-map.js';
import type { Autoencoder, FeatureExtractor, Reconstructor } from './stages.js';
import { concatBatch, sliceBatch, type HostTensor } from './tensor.js';

/** How scores are computed from features: the anomaly map's settings and the batch size (a run's `inference` config has these fields). */
export interface ScoringSettings {
  anomalyMap: {
    /** Gaussian blur sigma in image pixels (0: none). */
    sigma: number;
    /** How the per-level maps combine. */
    combine: AmapMode;
    /** Which feature maps (0 = shallowest) to compare; all when absent. */
    levels?: readonly number[];
  };
  /** Images per feature-extractor call. */
  batchSize: number;
}

/** The three stages a scorer needs. */
export interface Stages {
  autoencoder: Autoencoder;
  reconstructor: Reconstructor;
  featureExtractor: FeatureExtractor;
}

export interface Scored {
  /** Decoded reconstructions `[N, 3, H, W]` (image convention). */
  reconstructions: HostTensor;
  /** Anomaly maps `[N, 1, H, W]`. */
  maps: HostTensor;
  /** Image scores: max of each map. */
  scores: number[];
}

/**
 * Reconstructs images `[N, 3, H, W]` (ImageNet-normalised) in batches of `batchSize`: encode,
 * sample, decode.
 * @param seed seed of the sampler's noise; every image draws its own copy, so its reconstruction does not depend on its batch.
 * @returns the decoded reconstructions `[N, 3, H, W]`.
 */
export async function reconstructImages(stages: Omit<Stages, 'featureExtractor'>, images: HostTensor, batchSize: number, seed: number): Promise<HostTensor> {
  const n = images.shape[0];
  const recs: HostTensor[] = [];
  for (let b = 0; b < n; b += batchSize) {
    const x = sliceBatch(images, b, Math.min(n, b + batchSize));
    const z = await stages.autoencoder.encode(x);
    recs.push(await stages.autoencoder.decode(await stages.reconstructor.reconstruct(z, x, { seed })));
  }
  return concatBatch(recs);
}

/**
 * Anomaly maps and image scores of images and their reconstructions (both `[N, 3, H, W]`), in
 * batches of `batchSize`: 1 - cosine of the features at each stride (or the `anomalyMap.levels`
 * chosen), upsampled, combined, blurred.
 * @throws Error when `anomalyMap.levels` names a map the extractor does not give.
 */
export async function scoreReconstructions(
  featureExtractor: FeatureExtractor,
  images: HostTensor,
  reconstructions: HostTensor,
  settings: ScoringSettings,
): Promise<Omit<Scored, 'reconstructions'>> {
  const n = images.shape[0];
  const [h, w] = [images.shape[2], images.shape[3]];
  const maps: HostTensor[] = [];
  const bs = settings.batchSize;
  const levels = settings.anomalyMap.levels;
  const pick = (features: HostTensor[]): HostTensor[] => {
    if (!levels) return features;
    const bad = levels.filter((l) => l >= features.length);
    if (bad.length)
      throw new Error(`anomalyMap.levels [${levels.join(', ')}]: the feature extractor gives ${features.length} maps (levels 0..${features.length - 1})`);
    return levels.map((l) => features[l]);
  };
  for (let b = 0; b < n; b += bs) {
    const e = Math.min(n, b + bs);
    const [fIn, fRec] = [
      pick(await featureExtractor.extract(sliceBatch(images, b, e))),
      pick(await featureExtractor.extract(sliceBatch(reconstructions, b, e))),
    ];
    maps.push(anomalyMap(fIn, fRec, { size: [h, w], sigma: settings.anomalyMap.sigma, mode: settings.anomalyMap.combine }));
  }
  const m = concatBatch(maps);
  const hw = h * w;
  const scores = Array.from({ length: n }, (_, i) => {
    let mx = -Infinity;
    for (let k = i * hw; k < (i + 1) * hw; k++) if (m.data[k] > mx) mx = m.data[k];
    return mx;
  });
  return { maps: m, scores };
}

/**
 * Scores images `[N, 3, H, W]` (ImageNet-normalised): {@link reconstructImages} then {@link scoreReconstructions}.
 * @param seed seed of the sampler's noise (each image draws its own).
 */
export async function scoreImages(stages: Stages, images: HostTensor, settings: ScoringSettings, seed: number): Promise<Scored> {
  const reconstructions = await reconstructImages(stages, images, settings.batchSize, seed);
  return { reconstructions, ...(await scoreReconstructions(stages.featureExtractor, images, reconstructions, settings)) };
}
