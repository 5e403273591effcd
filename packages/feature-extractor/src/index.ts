export * from './anomaly-map.js';
export * from './onnx.js';
export * from './nsfwjs-models.js';
export * from './depthwise-grad.js';
export * from './tfjs-extractor.js';
export * from './perceptual.js';
