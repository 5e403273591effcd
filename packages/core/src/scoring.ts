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
    /**
     * What the reconstruction is compared with: `input` (absent; the paper's map: the image itself) or
     * `autoencoded`, the image through the autoencoder alone (decode of its latent, no noise). The
     * DiAD reconstruction passes through the same autoencoder, so with `autoencoded` what the
     * autoencoder cannot carry (fine grain, sharp edges) is in both images and drops out of the map,
     * and what is left is what the diffusion changed: the repaired defect. One decode more per image.
     */
    reference?: MapReference;
  };
  /** Images per feature-extractor call. */
  batchSize: number;
}

/** What the anomaly map compares a reconstruction with (see {@link ScoringSettings}). */
export type MapReference = 'input' | 'autoencoded';

/** The three stages a scorer needs. */
export interface Stages {
  autoencoder: Autoencoder;
  reconstructor: Reconstructor;
  featureExtractor: FeatureExtractor;
}

export interface Scored {
  /** Decoded reconstructions `[N, 3, H, W]` (image convention). */
  reconstructions: HostTensor;
  /** The images the reconstructions were compared with: the inputs, or their autoencoded copies (`anomalyMap.reference`). */
  references: HostTensor;
  /** Anomaly maps `[N, 1, H, W]`. */
  maps: HostTensor;
  /** Image scores: max of each map. */
  scores: number[];
}

/** Reconstructions and the images the map compares them with ({@link reconstructImages}). */
export interface Reconstructed {
  /** Decoded reconstructions `[N, 3, H, W]`. */
  reconstructions: HostTensor;
  /** `[N, 3, H, W]`: the inputs themselves (`input`) or decode(encode(input)) (`autoencoded`). */
  references: HostTensor;
}

/**
 * Reconstructs images `[N, 3, H, W]` (ImageNet-normalised) in batches of `batchSize`: encode,
 * sample, decode; with `reference: 'autoencoded'` also decodes each image's own latent.
 * @param seed seed of the sampler's noise; every image draws its own copy, so its reconstruction does not depend on its batch.
 */
export async function reconstructImages(
  stages: Omit<Stages, 'featureExtractor'>,
  images: HostTensor,
  batchSize: number,
  seed: number,
  reference: MapReference = 'input',
): Promise<Reconstructed> {
  const n = images.shape[0];
  const recs: HostTensor[] = [];
  const refs: HostTensor[] = [];
  for (let b = 0; b < n; b += batchSize) {
    const x = sliceBatch(images, b, Math.min(n, b + batchSize));
    const z = await stages.autoencoder.encode(x);
    if (reference === 'autoencoded') refs.push(await stages.autoencoder.decode(z));
    recs.push(await stages.autoencoder.decode(await stages.reconstructor.reconstruct(z, x, { seed })));
  }
  return { reconstructions: concatBatch(recs), references: reference === 'autoencoded' ? concatBatch(refs) : images };
}

/**
 * Anomaly maps and image scores of references and their reconstructions (both `[N, 3, H, W]`; the
 * references are the images, or their autoencoded copies, see {@link reconstructImages}), in
 * batches of `batchSize`: 1 - cosine of the features at each stride (or the `anomalyMap.levels`
 * chosen), upsampled, combined, blurred.
 * @throws Error when `anomalyMap.levels` names a map the extractor does not give.
 */
export async function scoreReconstructions(
  featureExtractor: FeatureExtractor,
  references: HostTensor,
  reconstructions: HostTensor,
  settings: ScoringSettings,
): Promise<Omit<Scored, 'reconstructions' | 'references'>> {
  const n = references.shape[0];
  const [h, w] = [references.shape[2], references.shape[3]];
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
      pick(await featureExtractor.extract(sliceBatch(references, b, e))),
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
  const r = await reconstructImages(stages, images, settings.batchSize, seed, settings.anomalyMap.reference);
  return { ...r, ...(await scoreReconstructions(stages.featureExtractor, r.references, r.reconstructions, settings)) };
}
