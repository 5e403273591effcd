export * from './anomaly-map.js';
export * from './onnx.js';
