export * from './tensor.js';
export * from './safetensors.js';
export * from './atomic.js';
export * from './random.js';
export * from './ops.js';
export * from './stages.js';
export * from './adamw.js';
export * from './registry.js';
