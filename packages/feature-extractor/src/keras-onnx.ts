/**
 * Records a parsed Keras backbone (`parseKeras`) as an ONNX model with core's `OnnxRecorderOps`, so
 * the shipped backbones run on onnxruntime-node like every other stage. The model takes the
 * pipeline's images (`[N, 3, H, W]`, ImageNet-normalised RGB) and converts them to the backbone's
 * own input with a 1x1 conv; its outputs are the tapped layers, NCHW.
 */
import { tensor, type HostTensor, IMAGENET_MEAN, IMAGENET_STD } from '@diad/core';
import { OnnxRecorderOps, type Sym } from '@diad/core/onnx';
import type { KerasOp, Pad } from './keras-graph.js';

/** Keras `preprocess_input(mode='caffe')` channel means, BGR order, 0-255 units. */
export const CAFFE_BGR_MEAN = [103.939, 116.779, 123.68] as const;

/** A backbone's own input: RGB in [0, 1] (`unit`) or Keras' caffe mode (BGR, 0-255 minus {@link CAFFE_BGR_MEAN}). */
export type BackboneInput = 'unit' | 'caffe';

/**
 * The per-channel affine map from ImageNet-normalised RGB to the backbone's input, as a 3x3 matrix
 * (row = output channel) and a bias: `out_o = sum_i W[o][i] x_i + b_o`.
 */
export function inputTransform(input: BackboneInput): { weight: number[][]; bias: number[] } {
  const weight = [0, 1, 2].map(() => [0, 0, 0]);
  const bias = [0, 0, 0];
  for (let o = 0; o < 3; o++) {
    // caffe: output channel o (B, G, R) reads RGB channel 2 - o, in 0-255 units.
    const i = input === 'caffe' ? 2 - o : o;
    const k = input === 'caffe' ? 255 : 1;
    weight[o][i] = k * IMAGENET_STD[i];
    bias[o] = k * IMAGENET_MEAN[i] - (input === 'caffe' ? CAFFE_BGR_MEAN[o] : 0);
  }
  return { weight, bias };
}

/** Options of {@link kerasOnnxModel}. */
export interface KerasOnnxOptions {
  input: BackboneInput;
  /** Image size the graph is recorded for (batch stays dynamic). */
  height: number;
  width: number;
  /** Model metadata (provenance). */
  metadata?: Record<string, string>;
}

/** TF 'same' padding of one axis: `[before, after]`. */
function samePad(size: number, kernel: number, stride: number, dilation: number): [number, number] {
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

/**
 * The ONNX model (bytes) of `ops` cut at `outputs`: input `images` `[N, 3, height, width]`,
 * one output per tap (named after the layer), `[N, C, h, w]`.
 * @throws Error when an op's input is missing or a shape does not work out (naming the layer).
 */
export function kerasOnnxModel(ops: readonly KerasOp[], outputs: readonly string[], o: KerasOnnxOptions): Uint8Array {
  const params: Record<string, HostTensor> = {};
  const t = inputTransform(o.input);
  params['preprocess.weight'] = tensor(Float32Array.from(t.weight.flat()), [3, 3, 1, 1]);
  params['preprocess.bias'] = tensor(Float32Array.from(t.bias), [3]);
  for (const op of ops) {
    if (op.kind !== 'conv' || op.depthwise) continue;
    // Keras [kh, kw, in, out] -> official [out, in, kh, kw].
    const [kh, kw, cin, cout] = op.w.shape;
    const w = new Float32Array(op.w.data.length);
    for (let y = 0; y < kh; y++)
      for (let x = 0; x < kw; x++)
        for (let i = 0; i < cin; i++)
          for (let c = 0; c < cout; c++) {
            w[((c * cin + i) * kh + y) * kw + x] = op.w.data[((y * kw + x) * cin + i) * cout + c];
          }
    params[`${op.name}.weight`] = tensor(w, [cout, cin, kh, kw]);
    if (op.b) params[`${op.name}.bias`] = tensor(op.b, [cout]);
  }
  const rec = new OnnxRecorderOps(params, { graphName: 'keras_backbone', metadata: o.metadata });
  const readers = new Map<string, KerasOp[]>();
  for (const op of ops) for (const s of 'srcs' in op ? op.srcs : 'src' in op ? [op.src] : []) readers.set(s, [...(readers.get(s) ?? []), op]);
  const vals = new Map<string, Sym>();
  const get = (name: string, by: string): Sym => {
    const v = vals.get(name);
    if (!v) throw new Error(`Keras layer ${by}: input ${name} was not recorded`);
    return v;
  };
  /** Zero padding still to be applied to a value (folded into the conv or max-pool reading it). */
  const pending = new Map<string, { src: string; pad: [[number, number], [number, number]] }>();
  const nonNegative = new Set<string>();
  const images = rec.graphInput('images', [1, 3, o.height, o.width]);

  for (const op of ops) {
    switch (op.kind) {
      case 'input':
        vals.set(op.name, rec.conv2d(images, 'preprocess.weight', 'preprocess.bias'));
        break;
      case 'zeropad': {
        const rs = readers.get(op.name) ?? [];
        const foldable =
          rs.length === 1 && (rs[0].kind === 'conv' || (rs[0].kind === 'pool' && rs[0].max && nonNegative.has(op.src))) && !outputs.includes(op.name);
        if (foldable) {
          pending.set(op.name, { src: op.src, pad: op.pad });
        } else {
          const x = get(op.src, op.name);
          const [[t, b], [l, r]] = op.pad;
          const [n, c, h, w] = x.shape;
          vals.set(op.name, rec.emit('Pad', [x.name, rec.intsConst([0, 0, t, l, 0, 0, b, r])], [n, c, h + t + b, w + l + r]));
        }
        break;
      }
      case 'conv':
      case 'pool': {
        const pad = pending.get(op.src);
        const x = get(pad ? pad.src : op.src, op.name);
        const [, , h, w] = x.shape;
        const [[pt, pb], [pl, pr]] = pad?.pad ?? [
          [0, 0],
          [0, 0],
        ];
        const [kh, kw] = op.kind === 'conv' ? [op.w.shape[0], op.w.shape[1]] : op.size;
        const dil: [number, number] = op.kind === 'conv' ? op.dilations : [1, 1];
        const same = (op.pad as Pad) === 'same';
        const [st, sb] = same ? samePad(h + pt + pb, kh, op.strides[0], dil[0]) : [0, 0];
        const [sl, sr] = same ? samePad(w + pl + pr, kw, op.strides[1], dil[1]) : [0, 0];
        const pads = [pt + st, pl + sl, pb + sb, pr + sr];
        const oh = Math.floor((h + pads[0] + pads[2] - ((kh - 1) * dil[0] + 1)) / op.strides[0]) + 1;
        const ow = Math.floor((w + pads[1] + pads[3] - ((kw - 1) * dil[1] + 1)) / op.strides[1]) + 1;
        if (op.kind === 'pool') {
          vals.set(
            op.name,
            rec.emit(op.max ? 'MaxPool' : 'AveragePool', [x.name], [x.shape[0], x.shape[1], oh, ow], {
              kernel_shape: [kh, kw],
              strides: [...op.strides],
              pads,
            }),
          );
          if (op.max && nonNegative.has(pad ? pad.src : op.src)) nonNegative.add(op.name);
        } else if (!op.depthwise) {
          if (op.dilations[0] !== 1 || op.dilations[1] !== 1 || op.strides[0] !== op.strides[1]) {
            throw new Error(`Keras layer ${op.name}: dilated or anisotropic-stride convs are not supported by the ONNX export`);
          }
          vals.set(
            op.name,
            rec.conv2d(x, `${op.name}.weight`, op.b ? `${op.name}.bias` : null, { stride: op.strides[0], padding: [pads[0], pads[2], pads[1], pads[3]] }),
          );
        } else {
          // Depthwise: a grouped Conv, weight [in * multiplier, 1, kh, kw] (channel = in * m + j, as Keras flattens it).
          const [, , cin, m] = op.w.shape;
          const wd = new Float32Array(op.w.data.length);
          for (let y = 0; y < kh; y++)
            for (let xk = 0; xk < kw; xk++)
              for (let i = 0; i < cin; i++)
                for (let j = 0; j < m; j++) {
                  wd[((i * m + j) * kh + y) * kw + xk] = op.w.data[((y * kw + xk) * cin + i) * m + j];
                }
          const inputs = [x.name, rec.input(tensor(wd, [cin * m, 1, kh, kw])).name];
          if (op.b) inputs.push(rec.input(tensor(op.b, [cin * m])).name);
          vals.set(
            op.name,
            rec.emit('Conv', inputs, [x.shape[0], cin * m, oh, ow], {
              kernel_shape: [kh, kw],
              strides: [...op.strides],
              pads,
              group: cin,
              dilations: [...op.dilations],
            }),
          );
        }
        break;
      }
      case 'affine': {
        const x = get(op.src, op.name);
        const c = op.scale.length;
        vals.set(op.name, rec.add(rec.mul(x, rec.input(tensor(op.scale, [1, c, 1, 1]))), rec.input(tensor(op.shift, [1, c, 1, 1]))));
        break;
      }
      case 'act': {
        const x = get(op.src, op.name);
        const y =
          op.fn === 'relu'
            ? rec.emit('Relu', [x.name], x.shape)
            : op.fn === 'relu6'
              ? rec.clamp(x, 0, 6)
              : op.fn === 'sigmoid'
                ? rec.emit('Sigmoid', [x.name], x.shape)
                : op.fn === 'tanh'
                  ? rec.emit('Tanh', [x.name], x.shape)
                  : x;
        if (op.fn === 'relu' || op.fn === 'relu6' || op.fn === 'sigmoid') nonNegative.add(op.name);
        vals.set(op.name, y);
        break;
      }
      case 'add':
        vals.set(
          op.name,
          op.srcs.map((s) => get(s, op.name)).reduce((a, b) => rec.add(a, b)),
        );
        break;
      case 'concat':
        vals.set(op.name, rec.concatChannels(op.srcs.map((s) => get(s, op.name))));
        break;
    }
  }
  return rec.toModel(Object.fromEntries(outputs.map((name) => [name, get(name, 'output')])));
}
