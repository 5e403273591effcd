/**
 * `OnnxRecorderOps`: an {@link Ops} that runs nothing and records every call into an ONNX graph
 * (opset 18, IR version 8), so the model code written against `Ops` exports to onnxruntime with
 * no second definition of the networks.
 *
 * - Symbols ({@link Sym}) carry a value name and the static logical shape (NCHW maps, `[N, L, C]`
 *   tokens); shapes are checked as the tfjs engine checks them.
 * - The batch axis may be dynamic: graph inputs declared with `batched` get the symbolic dim `N`,
 *   and every reshape keeps axis 0 with ONNX's `0` (copy) so no batch size is baked in.
 * - Parameters come from a `Record<official name, HostTensor>` in the official layout and become
 *   initializers on first use: conv weights `[out, in, kh, kw]` as they are (ONNX's layout), linear
 *   weights `[out, in]` transposed to `[in, out]` for `MatMul`, per-channel affines as `[C, 1, 1]`.
 * - GroupNorm is Reshape + InstanceNormalization + affine (ONNX GroupNormalization changed meaning
 *   at opset 21), LayerNorm is `LayerNormalization`, GELU is exact (`Erf`), attention is
 *   `MatMul`/`Softmax` over `[N, heads, L, d]`, upsampling is `Resize` nearest (asymmetric, floor:
 *   exact for 2x), asymmetric conv padding goes into `Conv`'s `pads`.
 * - For training graphs (`paramInputs`), parameters are graph inputs in the official layout instead
 *   of initializers (the views above become `Transpose`/`Reshape` nodes), so `appendBackward`
 *   (`grad.ts`) can differentiate the loss with respect to them and the host can feed new values
 *   every step.
 */
import { basename, dirname, join } from 'node:path';
import { writeFileAtomic } from '../atomic.js';
import { causalMask, pads, type AttentionOptions, type Conv2dOptions, type Ops } from '../ops.js';
import { sizeOf, type HostTensor } from '../tensor.js';
import { attribute, floatTensor, int64Tensor, onnx, valueInfo, type AttrValue, type NodeProto, type TensorProto, type ValueInfoProto } from './proto.js';

/** The ONNX opset the recorder writes. */
export const ONNX_OPSET = 18;

/** Protobuf's message size limit (2 GB). */
const PROTOBUF_LIMIT = 2 ** 31 - 1;
/** Weight bytes above which {@link OnnxRecorderOps.writeModel} stores them externally by default. */
const AUTO_EXTERNAL_BYTES = 1.5 * 2 ** 30;

/** A recorded value: its graph name and static logical shape (axis 0 may be dynamic in the graph). */
export class Sym {
  constructor(
    readonly name: string,
    readonly shape: readonly number[],
  ) {}
}

/** Options of {@link OnnxRecorderOps}. */
export interface RecorderOptions {
  /** Graph name written into the model. Default `diad`. */
  graphName?: string;
  /** Free-form `metadata_props` of the model (e.g. config JSON, version). */
  metadata?: Record<string, string>;
  /**
   * Parameters become graph inputs named by their official name, in the official layout
   * (unbatched), declared on first use, instead of initializers. Default false.
   */
  paramInputs?: boolean;
}

const fmt = (s: readonly number[]): string => `[${s.join(', ')}]`;

function broadcast(op: string, a: readonly number[], b: readonly number[]): number[] {
  if (a.length !== b.length && a.length !== 0 && b.length !== 0 && (a.length === 4 || b.length === 4)) {
    throw new Error(`${op}: shapes ${fmt(a)} and ${fmt(b)} have different ranks; broadcast a map only with a map (use addChannels for per-channel vectors)`);
  }
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`${op}: shapes ${fmt(a)} and ${fmt(b)} do not broadcast`);
    out.push(Math.max(x, y));
  }
  return out;
}

/**
 * Records `Ops` calls into an ONNX graph. Declare inputs with {@link graphInput}, run the model
 * code with this object as its `ops`, then serialise with {@link toModel}.
 */
export class OnnxRecorderOps implements Ops<Sym> {
  readonly engine = 'onnx-recorder';
  private readonly nodes: NodeProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly inputs: ValueInfoProto[] = [];
  private readonly batchedInputs = new Set<string>();
  private readonly cache = new Map<string, string>();
  /** Static logical shape of every value (inputs, initializers, node outputs). */
  private readonly shapes = new Map<string, readonly number[]>();
  private readonly paramInputList: string[] = [];
  private counter = 0;
  private flopCount = 0;

  /**
   * @param params parameters by official name, official layout (float32); read when first used.
   * @param options graph name and metadata.
   */
  constructor(
    readonly params: Readonly<Record<string, HostTensor<'float32'>>>,
    readonly options: RecorderOptions = {},
  ) {}

  /**
   * Declares a graph input (float32; int32 for indices such as timesteps, used by {@link custom} nodes).
   * @param shape the logical shape for this recording (NCHW maps, `[N, L, C]` tokens, `[N, D]`).
   * @param batched axis 0 is the batch: dynamic (`N`) in the graph. Default true.
   * @throws Error on a duplicate name.
   */
  graphInput(name: string, shape: readonly number[], batched = true, dtype: 'float32' | 'int32' = 'float32'): Sym {
    if (this.inputs.some((i) => i.name === name)) throw new Error(`graphInput: input "${name}" declared twice`);
    sizeOf(shape);
    this.inputs.push(
      valueInfo(
        name,
        shape.map((d, i) => (batched && i === 0 ? 'N' : d)),
        dtype,
      ),
    );
    if (batched) this.batchedInputs.add(name);
    this.shapes.set(name, [...shape]);
    return new Sym(name, shape);
  }

  /** A host tensor as a constant of the graph (baked in, batch included; e.g. a file context). */
  input(t: HostTensor<'float32'>): Sym {
    const name = this.fresh('const');
    this.initializers.push(floatTensor(name, t.data.slice(), t.shape));
    this.shapes.set(name, [...t.shape]);
    return new Sym(name, t.shape);
  }

  /** With `paramInputs`: the parameters that became graph inputs, in order of first use. */
  get paramInputNames(): readonly string[] {
    return this.paramInputList;
  }

  /** Every graph input, in declaration order. */
  get inputNames(): string[] {
    return this.inputs.map((i) => i.name!);
  }

  /** Whether some graph input has a dynamic batch axis. */
  get hasBatchedInputs(): boolean {
    return this.batchedInputs.size > 0;
  }

  /** The recorded nodes, in order (read by `appendBackward`). */
  get graphNodes(): readonly NodeProto[] {
    return this.nodes;
  }

  /**
   * The static logical shape of a value of the graph.
   * @throws Error for a name the recorder did not create.
   */
  shapeOf(name: string): readonly number[] {
    const s = this.shapes.get(name);
    if (!s) throw new Error(`OnnxRecorderOps: no value named "${name}" in the graph`);
    return s;
  }

  /** Any ONNX node with several outputs of the given shapes (e.g. `Split`), by value names. */
  emitMulti(opType: string, inputs: string[], shapes: readonly (readonly number[])[], attrs: Record<string, AttrValue> = {}): Sym[] {
    return this.node(opType, inputs, attrs, shapes.length).map((name, i) => {
      this.shapes.set(name, [...shapes[i]]);
      return new Sym(name, shapes[i]);
    });
  }

  /** Any ONNX node with one output, by value names (`''` for an omitted optional input). */
  emit(opType: string, inputs: string[], shape: readonly number[], attrs: Record<string, AttrValue> = {}): Sym {
    return this.op(opType, inputs, shape, attrs);
  }

  /** A shared int64 constant (shapes, axes, sizes) by value. */
  intsConst(values: readonly number[]): string {
    return this.ints(values);
  }

  /** A shared float32 constant by value (`dims` `[]` for a scalar). */
  floatsConst(values: readonly number[], dims: readonly number[]): string {
    return this.floats(values, dims);
  }

  /**
   * Floating-point operations (2 per multiply-add) of the convolutions, linears and attention
   * matmuls recorded so far, at the recorded shapes (per item when inputs were declared with batch 1).
   * Norms, activations and elementwise ops are not counted (a few percent).
   */
  get flops(): number {
    return this.flopCount;
  }

  /** @throws Error always: a recorder computes nothing; run the exported model with onnxruntime. */
  read(x: Sym): Promise<HostTensor<'float32'>> {
    return Promise.reject(new Error(`OnnxRecorderOps cannot read ${x.name}: it only records a graph; run the exported model (createOrtSession)`));
  }

  shape(x: Sym): number[] {
    return [...x.shape];
  }

  /**
   * The serialised ModelProto with the given outputs (name -> symbol); outputs whose symbol
   * derives from a batched input get the dynamic batch dim `N`. Protobuf limits a model to 2 GB:
   * use {@link writeModel} for bigger ones.
   * @throws Error when an output name collides with another value, or the model passes 2 GB.
   */
  toModel(outputs: Record<string, Sym>): Uint8Array {
    const bytes = this.initializers.reduce((a, t) => a + t.rawData.byteLength, 0);
    if (bytes > PROTOBUF_LIMIT)
      throw new Error(
        `toModel: ${(bytes / 2 ** 30).toFixed(2)} GiB of weights do not fit one protobuf (2 GB); use writeModel, which stores them as ONNX external data`,
      );
    return onnx.ModelProto.encode(this.build(outputs)).finish();
  }

  /**
   * Writes the model to `path` (atomically). With `external` (`auto`: when the weights pass
   * 1.5 GiB, as the `sd15` sizes do) every initializer of 1 KiB or more goes to the ONNX
   * external-data file `<basename>.data` beside it (4 KiB-aligned offsets, so onnxruntime can map
   * it); onnxruntime finds it when it opens `path` by file name.
   * @returns the model file, the data file (null when inline), and the weight bytes.
   * @throws Error naming the path when a write fails (no partial files are left).
   */
  async writeModel(
    path: string,
    outputs: Record<string, Sym>,
    options: { external?: boolean | 'auto' } = {},
  ): Promise<{ model: string; data: string | null; bytes: number }> {
    const model = this.build(outputs);
    const bytes = this.initializers.reduce((a, t) => a + t.rawData.byteLength, 0);
    const external = options.external === true || ((options.external ?? 'auto') === 'auto' && bytes > AUTO_EXTERNAL_BYTES);
    if (!external) {
      await writeFileAtomic(path, onnx.ModelProto.encode(model).finish());
      return { model: path, data: null, bytes };
    }
    const location = `${basename(path)}.data`;
    const dataPath = join(dirname(path), location);
    const chunks: Uint8Array[] = [];
    let offset = 0;
    const tensors = model.graph?.initializer ?? [];
    model.graph!.initializer = tensors.map((t) => {
      const raw = t.rawData;
      if (!raw || raw.byteLength < 1024) return t;
      const start = Math.ceil(offset / 4096) * 4096;
      if (start > offset) chunks.push(new Uint8Array(start - offset));
      chunks.push(raw);
      offset = start + raw.byteLength;
      return onnx.TensorProto.create({
        name: t.name,
        dims: t.dims,
        dataType: t.dataType,
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: location },
          { key: 'offset', value: String(start) },
          { key: 'length', value: String(raw.byteLength) },
        ],
      });
    });
    await writeFileAtomic(dataPath, chunks);
    await writeFileAtomic(path, onnx.ModelProto.encode(model).finish());
    return { model: path, data: dataPath, bytes };
  }

  private build(outputs: Record<string, Sym>): InstanceType<typeof onnx.ModelProto> {
    const nodes = [...this.nodes];
    const outInfos: ValueInfoProto[] = [];
    for (const [name, s] of Object.entries(outputs)) {
      if (name !== s.name) {
        if (this.inputs.some((i) => i.name === name) || this.nodes.some((n) => n.output.includes(name))) {
          throw new Error(`toModel: output name "${name}" is already a value of the graph`);
        }
        nodes.push(onnx.NodeProto.create({ opType: 'Identity', input: [s.name], output: [name], name: `out_${name}` }));
      }
      outInfos.push(
        valueInfo(
          name,
          s.shape.map((d, i) => (i === 0 && this.batchedInputs.size > 0 && s.shape.length > 1 ? 'N' : d)),
        ),
      );
    }
    const graph = onnx.GraphProto.create({
      name: this.options.graphName ?? 'diad',
      node: nodes,
      initializer: [...this.initializers],
      input: this.inputs,
      output: outInfos,
    });
    return onnx.ModelProto.create({
      irVersion: 8,
      producerName: '@diad/core onnx recorder',
      producerVersion: '0.1.0',
      opsetImport: [{ domain: '', version: ONNX_OPSET }],
      graph,
      metadataProps: Object.entries(this.options.metadata ?? {}).map(([key, value]) => ({ key, value })),
    });
  }

  /**
   * Any ONNX (default domain, opset 18) node with one output, for graph pieces outside `Ops`
   * (e.g. a `Gather` from a table made with {@link input}). The caller states the output's logical shape.
   */
  custom(opType: string, inputs: Sym[], shape: readonly number[], attrs: Record<string, AttrValue> = {}): Sym {
    return this.op(
      opType,
      inputs.map((x) => x.name),
      shape,
      attrs,
    );
  }

  // ---- graph building -------------------------------------------------------------------

  private fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  private node(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outputs = 1): string[] {
    const out = Array.from({ length: outputs }, () => this.fresh(opType.toLowerCase()));
    this.nodes.push(
      onnx.NodeProto.create({
        opType,
        input: inputs,
        output: out,
        name: `${opType}_${this.nodes.length}`,
        attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
      }),
    );
    return out;
  }

  private op(opType: string, inputs: string[], shape: readonly number[], attrs: Record<string, AttrValue> = {}): Sym {
    const name = this.node(opType, inputs, attrs)[0];
    this.shapes.set(name, [...shape]);
    return new Sym(name, shape);
  }

  /** A shared constant by key (int64 shapes/axes or float scalars/vectors). */
  private constant(key: string, make: (name: string) => TensorProto): string {
    let name = this.cache.get(key);
    if (!name) {
      name = this.fresh('c');
      const t = make(name);
      this.initializers.push(t);
      this.shapes.set(name, (t.dims as number[]).map(Number));
      this.cache.set(key, name);
    }
    return name;
  }

  private ints(values: readonly number[]): string {
    return this.constant(`i64:${values.join(',')}`, (n) => int64Tensor(n, values));
  }

  private floats(values: readonly number[], dims: readonly number[]): string {
    return this.constant(`f32:${dims.join(',')}:${values.join(',')}`, (n) => floatTensor(n, Float32Array.from(values), dims));
  }

  private param(name: string): HostTensor<'float32'> {
    const p = this.params[name];
    if (!p) throw new Error(`OnnxRecorderOps: parameter ${name} is missing from the weights given to the recorder`);
    return p;
  }

  /**
   * A parameter as an initializer, transformed once per `view` (as is, transposed, `[C, 1, 1]`);
   * with `paramInputs`, the graph input of that name and the view as a node.
   */
  private weight(name: string, view: 'asis' | 'linear' | 'channel'): string {
    if (this.options.paramInputs) return this.paramView(name, view);
    return this.constant(`p:${view}:${name}`, (n) => {
      const p = this.param(name);
      if (view === 'channel') return floatTensor(n, p.data, [p.data.length, 1, 1]);
      if (view === 'asis') return floatTensor(n, p.data, p.shape);
      const [out, inp] = p.shape;
      const t = new Float32Array(out * inp);
      for (let o = 0; o < out; o++) for (let i = 0; i < inp; i++) t[i * out + o] = p.data[o * inp + i];
      return floatTensor(n, t, [inp, out]);
    });
  }

  private paramView(name: string, view: 'asis' | 'linear' | 'channel'): string {
    const key = `pv:${view}:${name}`;
    const cached = this.cache.get(key);
    if (cached) return cached;
    const shape = this.param(name).shape;
    if (!this.paramInputList.includes(name)) {
      this.graphInput(name, shape, false);
      this.paramInputList.push(name);
    }
    let out = name;
    if (view === 'linear') out = this.op('Transpose', [name], [shape[1], shape[0]], { perm: [1, 0] }).name;
    if (view === 'channel') out = this.op('Reshape', [name, this.ints([sizeOf(shape), 1, 1])], [sizeOf(shape), 1, 1]).name;
    this.cache.set(key, out);
    return out;
  }

  private reshape(x: Sym, shape: number[]): Sym {
    // Axis 0 kept with ONNX's 0 (copy), so a dynamic batch passes through.
    return this.op('Reshape', [x.name, this.ints([0, ...shape.slice(1)])], shape);
  }

  private transpose(x: Sym, perm: number[]): Sym {
    return this.op(
      'Transpose',
      [x.name],
      perm.map((p) => x.shape[p]),
      { perm },
    );
  }

  private map4(x: Sym, op: string): [number, number, number, number] {
    if (x.shape.length !== 4) throw new Error(`${op}: needs a feature map (4-D), got shape ${fmt(x.shape)}`);
    return x.shape as unknown as [number, number, number, number];
  }

  private affine(x: Sym, weight: string | null, bias: string | null, view: 'channel' | 'asis'): Sym {
    let y = weight === null ? x : this.op('Mul', [x.name, this.weight(weight, view)], x.shape);
    if (bias !== null) y = this.op('Add', [y.name, this.weight(bias, view)], x.shape);
    return y;
  }

  // ---- Ops ------------------------------------------------------------------------------

  /** `nn.Conv2d` as ONNX `Conv`; `[top, bottom, left, right]` padding becomes `pads` `[t, l, b, r]`. */
  conv2d(x: Sym, weight: string, bias: string | null, options: Conv2dOptions = {}): Sym {
    const stride = options.stride ?? 1;
    const [t, b, l, r] = pads(options.padding);
    const [n, c, h, w] = this.map4(x, `conv2d(${weight})`);
    const ws = this.param(weight).shape;
    if (ws.length !== 4 || ws[1] !== c) {
      throw new Error(`conv2d(${weight}): input has ${c} channels, weight expects ${ws[1]} (official shape ${fmt(ws)})`);
    }
    const [out, , kh, kw] = ws;
    const shape = [n, out, Math.floor((h + t + b - kh) / stride) + 1, Math.floor((w + l + r - kw) / stride) + 1];
    this.flopCount += 2 * sizeOf(shape) * c * kh * kw;
    const inputs = [x.name, this.weight(weight, 'asis')];
    if (bias !== null) inputs.push(this.weight(bias, 'asis'));
    return this.op('Conv', inputs, shape, { kernel_shape: [kh, kw], strides: [stride, stride], pads: [t, l, b, r] });
  }

  /** `nn.Linear` as `MatMul` with the transposed weight (`[in, out]`) and `Add` of the bias. */
  linear(x: Sym, weight: string, bias: string | null): Sym {
    const [out, inp] = this.param(weight).shape;
    if (x.shape[x.shape.length - 1] !== inp) {
      throw new Error(`linear(${weight}): last axis is ${x.shape[x.shape.length - 1]}, weight expects ${inp} (official shape ${fmt([out, inp])})`);
    }
    const shape = [...x.shape.slice(0, -1), out];
    this.flopCount += 2 * sizeOf(shape) * inp;
    const y = this.op('MatMul', [x.name, this.weight(weight, 'linear')], shape);
    return bias === null ? y : this.op('Add', [y.name, this.weight(bias, 'asis')], shape);
  }

  /** ONNX InstanceNormalization with unit scale and zero bias over axes 2.. of `[N, C, ...]`. */
  private instanceNormalization(x: Sym, channels: number, eps: number): Sym {
    const ones = this.floats(new Array(channels).fill(1), [channels]);
    const zeros = this.floats(new Array(channels).fill(0), [channels]);
    return this.op('InstanceNormalization', [x.name, ones, zeros], x.shape, { epsilon: { float: eps } });
  }

  /** `nn.GroupNorm`: Reshape to `[N, G, C/G*H*W]`, InstanceNormalization, back, affine. */
  groupNorm(x: Sym, groups: number, weight: string | null, bias: string | null, eps: number): Sym {
    const [n, c, h, w] = this.map4(x, 'groupNorm');
    if (!Number.isInteger(groups) || groups <= 0 || c % groups !== 0) throw new Error(`groupNorm: ${c} channels cannot be split into ${groups} groups`);
    const g = this.reshape(x, [n, groups, (c / groups) * h * w]);
    return this.affine(this.reshape(this.instanceNormalization(g, groups, eps), [n, c, h, w]), weight, bias, 'channel');
  }

  /** `nn.InstanceNorm2d` defaults: per sample and channel over (H, W), no affine. */
  instanceNorm(x: Sym, eps: number): Sym {
    const [, c] = this.map4(x, 'instanceNorm');
    return this.instanceNormalization(x, c, eps);
  }

  /** `nn.LayerNorm(C)` as `LayerNormalization` over the last axis. */
  layerNorm(x: Sym, weight: string, bias: string, eps: number): Sym {
    return this.op('LayerNormalization', [x.name, this.weight(weight, 'asis'), this.weight(bias, 'asis')], x.shape, { axis: -1, epsilon: { float: eps } });
  }

  silu(x: Sym): Sym {
    return this.op('Mul', [x.name, this.op('Sigmoid', [x.name], x.shape).name], x.shape);
  }

  /** Exact GELU `0.5 x (1 + erf(x / sqrt 2))`. */
  gelu(x: Sym): Sym {
    const e = this.op('Erf', [this.op('Mul', [x.name, this.floats([Math.SQRT1_2], [])], x.shape).name], x.shape);
    const one = this.op('Add', [e.name, this.floats([1], [])], x.shape);
    return this.op('Mul', [this.op('Mul', [x.name, this.floats([0.5], [])], x.shape).name, one.name], x.shape);
  }

  /** softmax(q k^T / sqrt(d) (+ the causal mask, a constant `[L, L]`)) v over `[N, heads, L, d]`, heads merged back to `[N, Lq, C]`. */
  attention(q: Sym, k: Sym, v: Sym, heads: number, options: AttentionOptions = {}): Sym {
    if (q.shape.length !== 3 || k.shape.length !== 3 || v.shape.length !== 3) {
      throw new Error(`attention: q, k, v must be tokens [N, L, C], got ${fmt(q.shape)}, ${fmt(k.shape)}, ${fmt(v.shape)}`);
    }
    const [n, lq, c] = q.shape;
    const lk = k.shape[1];
    if (k.shape[0] !== n || v.shape[0] !== n || k.shape[2] !== c || v.shape[2] !== c || v.shape[1] !== lk) {
      throw new Error(`attention: shapes q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(v.shape)} do not agree`);
    }
    if (!Number.isInteger(heads) || heads <= 0 || c % heads !== 0) throw new Error(`attention: ${c} channels cannot be split into ${heads} heads`);
    const d = c / heads;
    this.flopCount += 4 * n * heads * lq * lk * d;
    const qs = this.op('Mul', [q.name, this.floats([1 / Math.sqrt(d)], [])], q.shape);
    const qh = this.transpose(this.reshape(qs, [n, lq, heads, d]), [0, 2, 1, 3]);
    const kt = this.transpose(this.reshape(k, [n, lk, heads, d]), [0, 2, 3, 1]);
    const vh = this.transpose(this.reshape(v, [n, lk, heads, d]), [0, 2, 1, 3]);
    if (options.causal && lq !== lk) throw new Error(`attention: a causal mask needs as many queries as keys, got ${lq} and ${lk}`);
    let scores = this.op('MatMul', [qh.name, kt.name], [n, heads, lq, lk]);
    if (options.causal)
      scores = this.op('Add', [scores.name, this.constant(`causal:${lq}`, (name) => floatTensor(name, causalMask(lq), [lq, lk]))], scores.shape);
    const p = this.op('Softmax', [scores.name], scores.shape, { axis: -1 });
    const o = this.op('MatMul', [p.name, vh.name], [n, heads, lq, d]);
    return this.reshape(this.transpose(o, [0, 2, 1, 3]), [n, lq, c]);
  }

  /** `Resize` nearest, scales `[1, 1, 2, 2]`, asymmetric coordinates, floor: output (i, j) = input (i/2, j/2). */
  upsampleNearest2x(x: Sym): Sym {
    const [n, c, h, w] = this.map4(x, 'upsampleNearest2x');
    return this.op('Resize', [x.name, '', this.floats([1, 1, 2, 2], [4])], [n, c, 2 * h, 2 * w], {
      mode: 'nearest',
      coordinate_transformation_mode: 'asymmetric',
      nearest_mode: 'floor',
    });
  }

  avgPool2d(x: Sym, kernel: number, stride: number): Sym {
    const [n, c, h, w] = this.map4(x, 'avgPool2d');
    const shape = [n, c, Math.floor((h - kernel) / stride) + 1, Math.floor((w - kernel) / stride) + 1];
    return this.op('AveragePool', [x.name], shape, { kernel_shape: [kernel, kernel], strides: [stride, stride] });
  }

  /** `Concat` on axis 1 for maps, the last axis otherwise. */
  concatChannels(xs: Sym[]): Sym {
    if (xs.length === 0) throw new Error('concatChannels: no tensors');
    const rank = xs[0].shape.length;
    if (xs.some((x) => x.shape.length !== rank)) throw new Error(`concatChannels: ranks differ: ${xs.map((x) => fmt(x.shape)).join(', ')}`);
    const axis = rank === 4 ? 1 : rank - 1;
    const shape = [...xs[0].shape];
    shape[axis] = xs.reduce((a, x) => a + x.shape[axis], 0);
    return this.op(
      'Concat',
      xs.map((x) => x.name),
      shape,
      { axis },
    );
  }

  /** `Split` along channels (maps) or the last axis. */
  split(x: Sym, sizes: number[]): Sym[] {
    const rank = x.shape.length;
    const axis = rank === 4 ? 1 : rank - 1;
    if (sizes.reduce((a, s) => a + s, 0) !== x.shape[axis]) {
      throw new Error(`split: sizes [${sizes.join(', ')}] do not add up to ${x.shape[axis]} channels of ${fmt(x.shape)}`);
    }
    return this.emitMulti(
      'Split',
      [x.name, this.ints(sizes)],
      sizes.map((n) => x.shape.map((d, i) => (i === axis ? n : d))),
      { axis },
    );
  }

  /** `[N, C, H, W]` to `[N, H*W, C]`: Reshape then Transpose. */
  toTokens(x: Sym): Sym {
    const [n, c, h, w] = this.map4(x, 'toTokens');
    return this.transpose(this.reshape(x, [n, c, h * w]), [0, 2, 1]);
  }

  fromTokens(x: Sym, height: number, width: number): Sym {
    if (x.shape.length !== 3 || x.shape[1] !== height * width) throw new Error(`fromTokens: tokens ${fmt(x.shape)} cannot form a ${height}x${width} map`);
    const [n, , c] = x.shape;
    return this.reshape(this.transpose(x, [0, 2, 1]), [n, c, height, width]);
  }

  add(a: Sym, b: Sym): Sym {
    return this.op('Add', [a.name, b.name], broadcast('add', a.shape, b.shape));
  }

  sub(a: Sym, b: Sym): Sym {
    return this.op('Sub', [a.name, b.name], broadcast('sub', a.shape, b.shape));
  }

  mul(a: Sym, b: Sym): Sym {
    return this.op('Mul', [a.name, b.name], broadcast('mul', a.shape, b.shape));
  }

  scale(x: Sym, s: number): Sym {
    return this.op('Mul', [x.name, this.floats([s], [])], x.shape);
  }

  /** `x + v[:, :, None, None]`: Unsqueeze v to `[N, C, 1, 1]`, then Add. */
  addChannels(x: Sym, v: Sym): Sym {
    const [n, c] = this.map4(x, 'addChannels');
    if (v.shape.length !== 2 || (v.shape[0] !== n && v.shape[0] !== 1) || v.shape[1] !== c) {
      throw new Error(`addChannels: vector ${fmt(v.shape)} does not match map ${fmt(x.shape)}; expected [${n}, ${c}]`);
    }
    const u = this.op('Unsqueeze', [v.name, this.ints([2, 3])], [...v.shape, 1, 1]);
    return this.op('Add', [x.name, u.name], x.shape);
  }

  clamp(x: Sym, lo: number, hi: number): Sym {
    return this.op('Clip', [x.name, this.floats([lo], []), this.floats([hi], [])], x.shape);
  }

  exp(x: Sym): Sym {
    return this.op('Exp', [x.name], x.shape);
  }

  abs(x: Sym): Sym {
    return this.op('Abs', [x.name], x.shape);
  }

  addScalar(x: Sym, s: number): Sym {
    return this.op('Add', [x.name, this.floats([s], [])], x.shape);
  }

  /** `ReduceMean` over every axis (no axes input), `keepdims` 0: shape `[]`. */
  mean(x: Sym): Sym {
    return this.op('ReduceMean', [x.name], [], { keepdims: 0 });
  }

  /** `ReduceSum` over every axis, `keepdims` 0: shape `[]`. */
  sum(x: Sym): Sym {
    return this.op('ReduceSum', [x.name], [], { keepdims: 0 });
  }
}
