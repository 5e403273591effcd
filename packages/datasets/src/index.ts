/**
 * @diad/datasets: anomaly-detection datasets for DiAD. Loaders for the MVTec AD layout, VisA
 * (`split_csv/1cls.csv`) and plain image folders; Pillow-exact resizing and the official ImageNet
 * normalisation to NCHW host tensors; batching with seeded shuffling; a synthetic multi-class
 * dataset; `inspect` for counts and problems.
 */
export * from './types.js';
export * from './errors.js';
export { IMAGE_EXTENSIONS, isImageFile } from './files.js';
export type { ClassScan } from './scan.js';
export { scanMvtecClass } from './mvtec.js';
export { scanVisa, parseVisaCsv, VISA_SPLIT_CSV } from './visa.js';
export * from './folder.js';
export * from './open.js';
export * from './resample.js';
export * from './image.js';
export * from './heatmap.js';
export * from './tensors.js';
export * from './load.js';
export * from './batches.js';
export * from './inspect.js';
export * from './synthetic/generate.js';
export * from './defects.js';
