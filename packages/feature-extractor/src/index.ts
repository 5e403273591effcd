export * from './nsfwjs-models.js';
export * from './tfjs-extractor.js';
export * from './patch-bank.js';
export * from './load.js';
export * from './registry.js';
export * from './baseline.js';
export * from './resnet-imagenet.js';
export * from './keras-onnx.js';
