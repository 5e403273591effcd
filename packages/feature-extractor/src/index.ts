export * from './anomaly-map.js';
