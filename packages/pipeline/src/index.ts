/**
 * @diad/pipeline: the DiAD job as importable functions (fit, test, validate, predict, export,
 * baseline scoring), over the stage packages. The `diad` CLI is a thin layer over this.
 */
export * from './config.js';
export * from './run-dir.js';
export * from './data.js';
export * from './batching.js';
export * from './train-loop.js';
export * from './models.js';
export * from './fit.js';
export * from './preflight.js';
export * from './init-checkpoint.js';
export * from './run-context.js';
export * from './memory.js';
export * from './step-bench.js';
export * from './inference.js';
export * from './export.js';
export * from './evaluate.js';
export * from './validate.js';
export * from './validate-run.js';
export * from './predict.js';
export * from './progress.js';
export * from './versions.js';
export * from './report/index.js';
export * from './settings.js';
export * from './ablate.js';
export * from './trainers.js';
export * from './shard.js';
