import type { Problem, Sample, SourceFormat } from './types.js';

/** What scanning one class of one root found: its samples, matched masks and problems. */
export interface ClassScan {
  /** Class name as it appears in the dataset (prefixed when `prefixClasses` is set). */
  readonly name: string;
  readonly root: string;
  readonly format: SourceFormat;
  readonly samples: Sample[];
  /** Number of mask files matched to a defective test image. */
  masks: number;
  readonly problems: Problem[];
}
