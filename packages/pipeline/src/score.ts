/**
 * Test-time scoring (paper Sec. 3.3-3.4): encode to latents, noise and DDIM-denoise them guided by
 * the input (SG network), decode, compare input and reconstruction in feature space; the anomaly
 * map's maximum is the image score. Written against core's stage interfaces, so each stage can
 * come from any engine.
 */
import { sliceBatch, concatBatch, type Autoencoder, type Reconstructor, type FeatureExtractor, type HostTensor, type ReconstructOptions } from '@diad/core';
import { anomalyMap } from '@diad/feature-extractor';
import type { RunConfig } from './config.js';

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

/** The DDIM options of a config, with the noise seed of a batch. */
export function reconstructOptions(cfg: RunConfig, seed: number): ReconstructOptions {
  return { ...cfg.ddim, seed };
}

/**
 * Scores images `[N, 3, H, W]` (ImageNet-normalised) in batches of `cfg.testBatchSize`.
 * @param seed seed of the DDIM noise; every image draws its own copy, so its score does not depend on its batch.
 */
export async function scoreImages(stages: Stages, images: HostTensor, cfg: RunConfig, seed: number): Promise<Scored> {
  const n = images.shape[0];
  const [h, w] = [images.shape[2], images.shape[3]];
  const recs: HostTensor[] = [];
  const maps: HostTensor[] = [];
  const bs = cfg.testBatchSize;
  for (let b = 0; b < n; b += bs) {
    const x = sliceBatch(images, b, Math.min(n, b + bs));
    const z = await stages.autoencoder.encode(x);
    const zRec = await stages.reconstructor.reconstruct(z, x, reconstructOptions(cfg, seed));
    const rec = await stages.autoencoder.decode(zRec);
    const [fIn, fRec] = [await stages.featureExtractor.extract(x), await stages.featureExtractor.extract(rec)];
    maps.push(anomalyMap(fIn, fRec, { size: [h, w], sigma: cfg.anomalyMap.sigma, mode: cfg.anomalyMap.combine }));
    recs.push(rec);
  }
  const m = concatBatch(maps);
  const hw = h * w;
  const scores = Array.from({ length: n }, (_, i) => {
    let mx = -Infinity;
    for (let k = i * hw; k < (i + 1) * hw; k++) if (m.data[k] > mx) mx = m.data[k];
    return mx;
  });
  return { reconstructions: concatBatch(recs), maps: m, scores };
}
