/**
 * @diad/autoencoder: the LDM AutoencoderKL (DiAD's first stage), written against core's `Ops`,
 * with the official state-dict names, a pipeline stage, its loss and its ONNX training graph.
 */
export * from './config.js';
export * from './architecture.js';
export * from './params.js';
export * from './model.js';
export * from './distribution.js';
export * from './stage.js';
export * from './tfjs.js';
export * from './onnx.js';
export * from './loss.js';
export * from './train-graph.js';
export * from './registry.js';
