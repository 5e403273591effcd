/**
 * What the server serves: a scorer of preprocessed images with its decision rule. A diad bundle
 * (`@diad/core/bundle`) is one ({@link servedBundle}); tests and other models can bring their own.
 */
import type { HostTensor } from '@diad/core';
import type { BundleResult, DiadBundle } from '@diad/core/bundle';

export interface ServedModel {
  /** Square input side S in pixels: uploads are decoded to RGB and resized to S x S. */
  readonly imageSize: number;
  /** Class names a request may give (`?class=`); empty when the model has none. */
  readonly classes: readonly string[];
  /** Anomaly-map values drawn as the coldest and hottest heatmap colours. */
  readonly mapRange: readonly [number, number];
  /** Model description for `/readyz` and logs (format, preset, config hash...). */
  readonly description: Record<string, unknown>;
  /**
   * Scores a batch.
   * @param images `[N, 3, S, S]` float32 NCHW, ImageNet-normalised.
   * @returns one image score per image and the anomaly maps `[N, 1, S, S]`.
   */
  score(images: HostTensor): Promise<{ scores: number[]; maps: HostTensor }>;
  /** The decision and class-normalised score of an image score. */
  judge(score: number, className?: string | null): BundleResult;
}

/** A loaded bundle as a {@link ServedModel}. */
export function servedBundle(bundle: DiadBundle): ServedModel {
  const m = bundle.manifest;
  return {
    imageSize: bundle.imageSize,
    classes: Object.keys(m.classScores),
    mapRange: m.decision!.mapRange,
    description: { bundle: bundle.dir, preset: m.preset, configHash: m.configHash, threshold: m.decision!.threshold, classes: Object.keys(m.classScores) },
    score: (images) => bundle.score(images),
    judge: (score, className) => bundle.judge(score, className),
  };
}
