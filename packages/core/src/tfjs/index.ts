export * from './engine.js';
export * from './conv-grad.js';
export * from './convert.js';
export * from './params.js';
export * from './ops.js';
export * from './train.js';
