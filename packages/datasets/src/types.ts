/** Where a sample sits: on-disk train split, validation carved from train, or test. */
export type Split = 'train' | 'val' | 'test';

/** Image-level label: 0 = good (normal), 1 = defective (anomalous). */
export type Label = 0 | 1;

/** Layout a sample was found in. */
export type SourceFormat = 'mvtec' | 'visa' | 'folder';

/** One image of an anomaly-detection dataset. Paths are absolute. */
export interface Sample {
  /** Class (category) name, e.g. `bottle`; with `prefixClasses` it is `<root name>/<class>`. */
  readonly className: string;
  readonly split: Split;
  readonly label: Label;
  /** Defect type (`good` for normal images), e.g. `broken_large`. */
  readonly defect: string;
  readonly imagePath: string;
  /** Ground-truth mask, or null for good images (their mask is all zero). */
  readonly maskPath: string | null;
  readonly format: SourceFormat;
  /** The dataset root the sample was found under. */
  readonly root: string;
}

/** A problem found while scanning or verifying a dataset: the file, what is wrong, and the fix. */
export interface Problem {
  readonly file: string;
  readonly message: string;
  readonly fix: string;
  /** The split the problem concerns (e.g. a test image without its mask); absent: the class as a whole. */
  readonly split?: 'train' | 'test';
}

/** Samples of one or more classes, possibly from several roots. */
export interface Dataset {
  /** Class names in the order they were found (roots in the given order, classes sorted). */
  readonly classes: readonly string[];
  /** All samples, sorted by class, split, defect and file name. */
  readonly samples: readonly Sample[];
}
