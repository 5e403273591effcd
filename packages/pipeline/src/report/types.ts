/**
 * What `diad test` hands to the report writers: metrics per class and mode, curves, per-image
 * records, timings and the run's config. Metric values are fractions in [0, 1].
 */
import type { DefectsConfig } from '../config.js';
import type { MetricValues } from '@diad/metrics';
import type { Skipped } from '../data.js';

/** The seven metrics of the DiAD paper's tables (@diad/metrics' names; fractions, null where undefined). */
export type MetricRow = MetricValues;

/** `standard`: textbook definitions; `diad`: as the official evaluation computes them (see @diad/metrics). */
export type MetricMode = 'standard' | 'diad';
export const METRIC_MODES: readonly MetricMode[] = ['standard', 'diad'];

/** A curve as parallel arrays (x ascending). */
export interface Curve {
  x: number[];
  y: number[];
}

export interface ClassReport {
  className: string;
  good: number;
  defective: number;
  metrics: Record<MetricMode, MetricRow>;
  /** Image-level ROC, pixel-level ROC (FPR vs TPR), PRO curve (FPR up to 0.3 vs mean PRO). */
  curves: { imageRoc: Curve; pixelRoc: Curve; pro: Curve };
}

export interface ImageRecord {
  /** Unique id, also the strip's file stem. */
  id: string;
  className: string;
  /** `good` or the defect type. */
  defectType: string;
  label: 0 | 1;
  path: string;
  /** Image score (max of the anomaly map). */
  score: number;
  /** Strip PNG path relative to the report folder. */
  strip: string;
}

/** The fit's validation (normal validation images + synthesised defects), as the report shows it. */
export interface ValidationSummary {
  rule: string;
  /** How the defective images were made (the run's `validation.defects`; absent: one full-size copy each). */
  defects?: DefectsConfig;
  /** One point per validation: stage step and the class-mean metrics (fractions). */
  points: ({ stage: string; step: number; tStart?: number; value: number } & Pick<MetricValues, 'aurocImage' | 'aurocPixel' | 'auPro'>)[];
  /** The chosen point (the run's model). */
  selected: { stage: string; step: number; tStart?: number };
  /** Per class, on the normal validation images, by the chosen model. */
  reconstruction: Record<string, { autoencoderL1: number; diadL1: number; featureDistance: number }>;
  /** Per class metrics of the chosen model on the validation set. */
  classes: Record<string, Pick<MetricValues, 'aurocImage' | 'aurocPixel' | 'auPro'>>;
}

export interface ReportInput {
  title: string;
  /** Resolved config (shown verbatim) and its hash. */
  config: unknown;
  configHash: string;
  classes: ClassReport[];
  mean: Record<MetricMode, MetricRow>;
  images: ImageRecord[];
  /** Named durations in seconds (stages, test), in display order. */
  timings: { name: string; seconds: number }[];
  /** Images that could not be read (train and test), with why. */
  skipped: Skipped[];
  /** The fit's validation, when the run recorded it. */
  validation?: ValidationSummary;
  /** Free facts shown under the title: engine, feature extractor, date. */
  facts: Record<string, string>;
  /** What produced the result, as written into metrics.json. */
  provenance: {
    run: string;
    configHash: string;
    /** Stage checkpoints (run-relative paths), null for a stage without one. */
    checkpoints: Record<string, string | null>;
    dataRoots: string[];
    classes: string[];
    /** Tested classes the model was not trained on. */
    unseenClasses: string[];
    /** Inference engine and execution providers. */
    engine: string;
    /** Where the feature extractor's weights come from, and its engine. */
    featureExtractor: string;
    /** The inference settings used (sampler, feature extractor, anomaly map, threshold, batch size) and their hash. */
    inference: unknown;
    inferenceHash: string;
    versions: Record<string, string | null>;
    date: string;
  };
}
