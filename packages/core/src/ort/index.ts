/** onnxruntime-node engine (`@diad/core/ort`): sessions over host tensors, and training on training graphs. */
export * from './session.js';
export * from './train.js';
export * from './stages.js';
