/**
 * A small inference-only interpreter of Keras functional-model topologies (the JSON of a tfjs
 * layers model), for the conv backbones we ship (ResNet-50, MobileNetV2, InceptionV3): `parseKeras`
 * turns the layers into engine-free ops with host weights (BatchNormalization folded into convs);
 * `KerasGraph` runs them on tfjs-core, `kerasOnnxModel` (keras-onnx.ts) records them as ONNX.
 * One interpreter gives both engines the same graph (tfjs-layers could run it on tfjs only); convs
 * run as tfjs's fused ops, with the BatchNormalization that follows a conv folded into it.
 */
import * as tf from '@tensorflow/tfjs-core';

/** One layer of a Keras functional-model config (Keras 2.x JSON). */
export interface KerasLayerConfig {
  name: string;
  class_name: string;
  config: Record<string, unknown>;
  inbound_nodes: [string, number, number, unknown][][];
}

export type Pad = 'same' | 'valid';

/** A host array with its shape (Keras layouts: conv kernels `[kh, kw, in, out]`, depthwise `[kh, kw, in, multiplier]`). */
export interface HostArray {
  data: Float32Array;
  shape: number[];
}

/**
 * One step of a parsed Keras graph, engine-free (host weights). `conv` has any following
 * BatchNormalization folded in; `affine` is a BatchNormalization that could not be folded.
 */
export type KerasOp =
  | { kind: 'input'; name: string }
  | {
      kind: 'conv';
      name: string;
      src: string;
      depthwise: boolean;
      w: HostArray;
      b: Float32Array | null;
      strides: [number, number];
      pad: Pad;
      dilations: [number, number];
    }
  | { kind: 'affine'; name: string; src: string; scale: Float32Array; shift: Float32Array }
  | { kind: 'act'; name: string; src: string; fn: 'relu' | 'relu6' | 'linear' | 'sigmoid' | 'tanh' }
  | { kind: 'zeropad'; name: string; src: string; pad: [[number, number], [number, number]] }
  | { kind: 'pool'; name: string; src: string; max: boolean; size: [number, number]; strides: [number, number]; pad: Pad }
  | { kind: 'add'; name: string; srcs: string[] }
  | { kind: 'concat'; name: string; srcs: string[] };

type TfOp =
  | Exclude<KerasOp, { kind: 'conv' } | { kind: 'affine' }>
  | (Omit<Extract<KerasOp, { kind: 'conv' }>, 'w' | 'b'> & { w: tf.Tensor4D; b: tf.Tensor1D | null })
  | (Omit<Extract<KerasOp, { kind: 'affine' }>, 'scale' | 'shift'> & { scale: tf.Tensor1D; shift: tf.Tensor1D });

const SUPPORTED = 'InputLayer, Conv2D, DepthwiseConv2D, BatchNormalization, ReLU, Activation, ZeroPadding2D, MaxPooling2D, AveragePooling2D, Add, Concatenate';

function pair(v: unknown, name: string, what: string): [number, number] {
  const a = Array.isArray(v) ? v : [v, v];
  if (a.length !== 2 || !a.every((x) => Number.isInteger(x))) throw new Error(`Keras layer ${name}: bad ${what} ${JSON.stringify(v)}`);
  return a as [number, number];
}

/**
 * Names of the layers the `outputs` depend on (the outputs included).
 * @throws Error when an output is not a layer of the model.
 */
export function neededLayers(layers: readonly KerasLayerConfig[], outputs: readonly string[]): Set<string> {
  const byName = new Map(layers.map((l) => [l.name, l]));
  for (const o of outputs) if (!byName.has(o)) throw new Error(`the model has no layer "${o}"`);
  const needed = new Set<string>();
  const stack = [...outputs];
  while (stack.length) {
    const n = stack.pop()!;
    if (needed.has(n)) continue;
    needed.add(n);
    for (const node of byName.get(n)!.inbound_nodes) for (const [src] of node) stack.push(src);
  }
  return needed;
}

/**
 * Parses the layers the `outputs` depend on into engine-free ops, folding each BatchNormalization
 * that follows a conv (and is its only reader) into the conv's kernel and bias.
 * @param layers the model config's layers in file (topological) order.
 * @param weights decoded weights keyed `<layer>/<kernel|bias|depthwise_kernel|gamma|beta|moving_mean|moving_variance>`.
 * @throws Error naming the layer on an unsupported layer class, a missing weight, or a missing output layer.
 */
export function parseKeras(layers: readonly KerasLayerConfig[], weights: Record<string, HostArray>, outputs: readonly string[]): KerasOp[] {
  const needed = neededLayers(layers, outputs);
  const readers = new Map<string, number>();
  for (const l of layers) if (needed.has(l.name)) for (const node of l.inbound_nodes) for (const [src] of node) readers.set(src, (readers.get(src) ?? 0) + 1);
  const w = (layer: string, key: string): HostArray => {
    const t = weights[`${layer}/${key}`];
    if (!t) throw new Error(`Keras layer ${layer}: weight "${layer}/${key}" is missing`);
    return t;
  };
  const ops: KerasOp[] = [];
  const opByName = new Map<string, KerasOp>();
  const push = (op: KerasOp) => {
    ops.push(op);
    opByName.set(op.name, op);
  };
  for (const l of layers) {
    if (!needed.has(l.name)) continue;
    const c = l.config;
    const srcs = (l.inbound_nodes[0] ?? []).map(([s]) => s);
    const src = srcs[0];
    switch (l.class_name) {
      case 'InputLayer':
        push({ kind: 'input', name: l.name });
        break;
      case 'Conv2D':
      case 'DepthwiseConv2D': {
        const depthwise = l.class_name === 'DepthwiseConv2D';
        const k = w(l.name, depthwise ? 'depthwise_kernel' : 'kernel');
        const act = c.activation && c.activation !== 'linear' ? String(c.activation) : null;
        if (act && !['relu', 'relu6', 'sigmoid', 'tanh'].includes(act)) throw new Error(`Keras layer ${l.name}: activation "${act}" is not supported`);
        // With an activation, the layer's output (its name) is the activation's.
        const convName = act ? `${l.name}/preactivation` : l.name;
        push({
          kind: 'conv',
          name: convName,
          src,
          depthwise,
          w: { data: Float32Array.from(k.data), shape: [...k.shape] },
          b: c.use_bias ? Float32Array.from(w(l.name, 'bias').data) : null,
          strides: pair(c.strides, l.name, 'strides'),
          pad: c.padding as Pad,
          dilations: pair(c.dilation_rate ?? 1, l.name, 'dilation_rate'),
        });
        if (act) push({ kind: 'act', name: l.name, src: convName, fn: act as 'relu' });
        break;
      }
      case 'BatchNormalization': {
        const eps = Number(c.epsilon ?? 1e-3);
        const variance = w(l.name, 'moving_variance').data;
        const mean = w(l.name, 'moving_mean').data;
        const gamma = c.scale === false ? null : w(l.name, 'gamma').data;
        const beta = c.center === false ? null : w(l.name, 'beta').data;
        const scale = Float32Array.from(variance, (v, i) => (gamma ? gamma[i] : 1) / Math.sqrt(v + eps));
        const shift = Float32Array.from(mean, (m, i) => (beta ? beta[i] : 0) - m * scale[i]);
        const prev = opByName.get(src);
        if (prev?.kind === 'conv' && readers.get(src) === 1 && !outputs.includes(src)) {
          // Fold: conv(x, W) * s + t == conv(x, W * s) + (b * s + t); the output channel is the
          // flattened last axis (depthwise: input channel * multiplier + j).
          const cout = scale.length;
          const kernel = Float32Array.from(prev.w.data, (v, i) => v * scale[i % cout]);
          const bias = Float32Array.from(shift, (t, o) => (prev.b ? prev.b[o] * scale[o] : 0) + t);
          const fused: KerasOp = { ...prev, name: l.name, w: { data: kernel, shape: prev.w.shape }, b: bias };
          ops[ops.indexOf(prev)] = fused;
          opByName.delete(src);
          opByName.set(l.name, fused);
        } else {
          push({ kind: 'affine', name: l.name, src, scale, shift });
        }
        break;
      }
      case 'ReLU': {
        const max = c.max_value == null ? null : Number(c.max_value);
        if ((c.negative_slope && Number(c.negative_slope) !== 0) || (c.threshold && Number(c.threshold) !== 0) || (max !== null && max !== 6)) {
          throw new Error(`Keras layer ${l.name}: ReLU with ${JSON.stringify(c)} is not supported (only plain ReLU and ReLU6)`);
        }
        push({ kind: 'act', name: l.name, src, fn: max === 6 ? 'relu6' : 'relu' });
        break;
      }
      case 'Activation': {
        const fn = String(c.activation);
        if (!['relu', 'relu6', 'linear', 'sigmoid', 'tanh'].includes(fn)) throw new Error(`Keras layer ${l.name}: activation "${fn}" is not supported`);
        push({ kind: 'act', name: l.name, src, fn: fn as 'relu' });
        break;
      }
      case 'ZeroPadding2D': {
        const p = c.padding as number | [number, number] | [[number, number], [number, number]];
        const pp: [[number, number], [number, number]] =
          typeof p === 'number'
            ? [
                [p, p],
                [p, p],
              ]
            : typeof p[0] === 'number'
              ? [
                  [p[0], p[0]],
                  [p[1] as number, p[1] as number],
                ]
              : (p as [[number, number], [number, number]]);
        push({ kind: 'zeropad', name: l.name, src, pad: pp });
        break;
      }
      case 'MaxPooling2D':
      case 'AveragePooling2D':
        push({
          kind: 'pool',
          name: l.name,
          src,
          max: l.class_name === 'MaxPooling2D',
          size: pair(c.pool_size, l.name, 'pool_size'),
          strides: pair(c.strides ?? c.pool_size, l.name, 'strides'),
          pad: c.padding as Pad,
        });
        break;
      case 'Add':
        push({ kind: 'add', name: l.name, srcs });
        break;
      case 'Concatenate': {
        if (c.axis !== -1 && c.axis !== 3) throw new Error(`Keras layer ${l.name}: concatenation axis ${c.axis} is not supported (only channels)`);
        push({ kind: 'concat', name: l.name, srcs });
        break;
      }
      default:
        throw new Error(`Keras layer ${l.name}: class ${l.class_name} is not supported here (supported: ${SUPPORTED}); tap a shallower layer`);
    }
  }
  return ops;
}

/**
 * A parsed Keras graph on tfjs-core, cut at `outputs`; owns its weight tensors (call {@link dispose}).
 */
export class KerasGraph {
  private constructor(
    private readonly ops: TfOp[],
    readonly outputs: readonly string[],
  ) {}

  /** Uploads the parsed ops' weights as tfjs tensors. */
  static build(ops: readonly KerasOp[], outputs: readonly string[]): KerasGraph {
    const tfOps: TfOp[] = ops.map((op) => {
      if (op.kind === 'conv') return { ...op, w: tf.tensor4d(op.w.data, op.w.shape as [number, number, number, number]), b: op.b ? tf.tensor1d(op.b) : null };
      if (op.kind === 'affine') return { ...op, scale: tf.tensor1d(op.scale), shift: tf.tensor1d(op.shift) };
      return op;
    });
    return new KerasGraph(tfOps, outputs);
  }

  /**
   * Runs the graph. Intermediate tensors are disposed as the caller's `tf.tidy` ends.
   * @param x `[N, H, W, C]` in the model's own input range.
   * @returns the output layers' tensors, in `outputs` order.
   */
  run(x: tf.Tensor4D): tf.Tensor4D[] {
    const vals = new Map<string, tf.Tensor4D>();
    for (const op of this.ops) {
      let y: tf.Tensor4D;
      switch (op.kind) {
        case 'input':
          y = x;
          break;
        case 'conv': {
          const v = vals.get(op.src)!;
          y = op.depthwise
            ? tf.fused.depthwiseConv2d({ x: v, filter: op.w, strides: op.strides, pad: op.pad, dilations: op.dilations, bias: op.b ?? undefined })
            : tf.fused.conv2d({ x: v, filter: op.w, strides: op.strides, pad: op.pad, dilations: op.dilations, bias: op.b ?? undefined });
          break;
        }
        case 'affine':
          y = tf.add(tf.mul(vals.get(op.src)!, op.scale), op.shift);
          break;
        case 'act': {
          const v = vals.get(op.src)!;
          y = op.fn === 'relu' ? tf.relu(v) : op.fn === 'relu6' ? tf.relu6(v) : op.fn === 'sigmoid' ? tf.sigmoid(v) : op.fn === 'tanh' ? tf.tanh(v) : v;
          break;
        }
        case 'zeropad':
          y = tf.pad(vals.get(op.src)!, [[0, 0], op.pad[0], op.pad[1], [0, 0]]);
          break;
        case 'pool': {
          const v = vals.get(op.src)!;
          y = op.max ? tf.maxPool(v, op.size, op.strides, op.pad) : tf.avgPool(v, op.size, op.strides, op.pad);
          break;
        }
        case 'add':
          y = tf.addN(op.srcs.map((s) => vals.get(s)!));
          break;
        case 'concat':
          y = tf.concat(
            op.srcs.map((s) => vals.get(s)!),
            3,
          );
          break;
      }
      vals.set(op.name, y);
    }
    return this.outputs.map((o) => vals.get(o)!);
  }

  /** Frees the weight tensors. */
  dispose(): void {
    for (const op of this.ops) {
      if (op.kind === 'conv') {
        op.w.dispose();
        op.b?.dispose();
      }
      if (op.kind === 'affine') {
        op.scale.dispose();
        op.shift.dispose();
      }
    }
  }
}
