/** @diad/serve: an HTTP server for a diad export bundle (see README.md). */
export * from './batcher.js';
export * from './metrics.js';
export * from './model.js';
export * from './server.js';
export * from './decoder.js';
