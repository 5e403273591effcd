/** ONNX export and training graphs: record model code written against `Ops` into an ONNX graph, and differentiate it (`@diad/core/onnx`). */
export * from './recorder.js';
export * from './grad.js';
