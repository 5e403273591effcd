/** Deployment bundles (`@diad/core/bundle`): the manifest format and the onnxruntime-node runtime that loads one. */
export * from './manifest.js';
export * from './runtime.js';
