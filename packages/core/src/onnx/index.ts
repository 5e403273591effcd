/** ONNX export: record model code written against `Ops` into an ONNX graph (`@diad/core/onnx`). */
export * from './recorder.js';
