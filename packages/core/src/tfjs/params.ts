/**
 * `ParamStore`: the parameters of a model as tfjs variables, keyed by official state-dict names.
 *
 * Each parameter is held in the layout tfjs kernels want: conv weights (official `[out, in, kh, kw]`)
 * as `[kh, kw, in, out]`, linear weights (official `[out, in]`) as `[in, out]`, everything else as
 * is. The layout follows from the official rank (4: conv, 2: linear), as in LDM/ControlNet state
 * dicts. The official shape is remembered, so loading and saving use the official layout
 * (safetensors files interchange with the PyTorch checkpoints).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ParamSpec } from '../ops.js';
import { Rng } from '../random.js';
import { sizeOf, tensor, type HostTensor } from '../tensor.js';
import { writeSafetensors, type SafetensorsFile } from '../safetensors.js';

/** Selects parameters by name: a prefix string, a regular expression or a predicate. */
export type ParamFilter = string | RegExp | ((name: string) => boolean);

/** Options of {@link ParamStore.load}. */
export interface LoadOptions {
  /** Reject missing and unexpected names (mis-shaped tensors are always rejected). Default true. */
  strict?: boolean;
  /** Only file tensors whose name starts with this prefix take part (e.g. `first_stage_model.`). */
  prefix?: string;
}

/** What a load did: names assigned, store names absent from the file, file names not in the store. */
export interface LoadReport {
  loaded: string[];
  missing: string[];
  unexpected: string[];
}

interface Entry {
  variable: tf.Variable;
  shape: readonly number[];
}

/**
 * Permutation from the official layout (conv `[out, in, kh, kw]`, linear `[out, in]`) to the tfjs
 * layout (conv `[kh, kw, in, out]`, linear `[in, out]`) for a parameter of this rank; null: same layout.
 */
export function toEnginePerm(rank: number): number[] | null {
  return rank === 4 ? [2, 3, 1, 0] : rank === 2 ? [1, 0] : null;
}

/** Inverse of {@link toEnginePerm}: tfjs layout to the official one. */
export function toOfficialPerm(rank: number): number[] | null {
  return rank === 4 ? [3, 2, 0, 1] : rank === 2 ? [1, 0] : null;
}

function matcher(filter: ParamFilter | undefined): (name: string) => boolean {
  if (filter === undefined) return () => true;
  if (typeof filter === 'string') return (n) => n.startsWith(filter);
  if (filter instanceof RegExp) return (n) => filter.test(n);
  return filter;
}

const same = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);
const fmt = (s: readonly number[]): string => `[${s.join(', ')}]`;

/**
 * Official-layout host data (a parameter, gradient or optimizer slot) to an engine-layout tfjs
 * tensor (one tf.transpose, no JS loops); the caller disposes it.
 */
export function engineTensor(data: Float32Array, shape: readonly number[]): tf.Tensor {
  const perm = toEnginePerm(shape.length);
  const x = tf.tensor(data, [...shape], 'float32');
  if (!perm) return x;
  const y = tf.transpose(x, perm);
  x.dispose();
  return y;
}

/** An engine-layout tfjs tensor (a parameter, gradient or optimizer slot) as an official-layout host tensor. */
export async function officialHost(t: tf.Tensor): Promise<HostTensor<'float32'>> {
  const perm = toOfficialPerm(t.rank);
  const o = perm ? tf.transpose(t, perm) : t;
  try {
    return tensor((await o.data()) as Float32Array, o.shape);
  } finally {
    if (o !== t) o.dispose();
  }
}

/**
 * Official-layout initial values of one spec, drawn from `rng` (PyTorch default inits; see
 * {@link ParamStore.create}). On the host, for models too big for a tfjs engine (e.g. random `sd15` weights).
 * @throws Error on an unknown init or a `bias` spec without `fanIn`.
 */
export function initialValues(spec: ParamSpec, rng: Rng): Float32Array {
  const n = sizeOf(spec.shape);
  const out = new Float32Array(n);
  switch (spec.init) {
    case 'zeros':
      return out;
    case 'ones':
      return out.fill(1);
    case 'kaiming':
    case 'bias': {
      // nn.Conv2d / nn.Linear reset_parameters: kaiming_uniform_(a=sqrt(5)) gives bound
      // sqrt(6 / ((1 + 5) * fan_in)) = 1/sqrt(fan_in); the bias uses the same bound.
      const fanIn = spec.fanIn ?? (spec.init === 'kaiming' ? sizeOf(spec.shape.slice(1)) : undefined);
      if (!fanIn || fanIn <= 0) {
        throw new Error(
          `parameter "${spec.name}": init "${spec.init}" needs a positive fanIn (got ${spec.fanIn}); give the fan-in of the layer the bias belongs to`,
        );
      }
      const bound = 1 / Math.sqrt(fanIn);
      for (let i = 0; i < n; i++) out[i] = (2 * rng.uniform() - 1) * bound;
      return out;
    }
    case 'normal': {
      const std = spec.std ?? 1;
      for (let i = 0; i < n; i++) out[i] = rng.normal() * std;
      return out;
    }
    default:
      throw new Error(`parameter "${spec.name}": unknown init "${(spec as ParamSpec).init}"`);
  }
}

/**
 * One tfjs variable per official parameter name, in the engine layout (see the module comment).
 * Create it with {@link ParamStore.create} (seeded init from specs) or
 * {@link ParamStore.fromSafetensors}; fill it with {@link ParamStore.load}; export with
 * {@link ParamStore.toHost} / {@link ParamStore.save}. Call {@link ParamStore.dispose} when done.
 */
export class ParamStore {
  private readonly entries = new Map<string, Entry>();

  private constructor() {}

  /**
   * Creates every parameter of `specs`, initialised in spec order from one seeded stream
   * (`zeros`, `ones`, `kaiming` = U(+-1/sqrt(fan_in)) with fan_in = prod(shape[1:]) unless
   * `fanIn` is given, `bias` = U(+-1/sqrt(fanIn)), `normal` = N(0, std (default 1))). All
   * parameters start trainable.
   * @param rng a seed or an `Rng`; equal seeds and specs give identical parameters.
   * @throws Error on a duplicate name, an invalid shape or a `bias` spec without `fanIn`.
   */
  static create(specs: readonly ParamSpec[], rng: number | Rng): ParamStore {
    const r = typeof rng === 'number' ? new Rng(rng) : rng;
    const store = new ParamStore();
    try {
      for (const spec of specs) store.add(spec.name, spec.shape, initialValues(spec, r));
    } catch (e) {
      store.dispose();
      throw e;
    }
    return store;
  }

  /**
   * A store holding every tensor of `file` (optionally only those whose name starts with
   * `prefix`), shapes taken from the file. Names are kept whole (prefix included).
   * @throws Error naming the file when no tensor matches.
   */
  static fromSafetensors(file: SafetensorsFile, prefix = ''): ParamStore {
    const names = file.names().filter((n) => n.startsWith(prefix));
    if (names.length === 0) throw new Error(`${file.source}: no tensors${prefix ? ` with prefix "${prefix}"` : ''} to load`);
    const store = new ParamStore();
    try {
      for (const name of names) {
        const t = file.float32(name);
        store.add(name, t.shape, t.data);
      }
    } catch (e) {
      store.dispose();
      throw e;
    }
    return store;
  }

  private add(name: string, shape: readonly number[], data: Float32Array): void {
    if (this.entries.has(name)) throw new Error(`parameter "${name}" declared twice`);
    const value = engineTensor(data, shape);
    // tf.variable takes over the tensor's data (no copy); no tfjs name, so stores never collide.
    const variable = tf.variable(value, true);
    value.dispose();
    this.entries.set(name, { variable, shape: [...shape] });
  }

  /**
   * Assigns parameters from a safetensors file in the official layout (F16/BF16/F64 are converted).
   * With `strict` (default) the store's names and the file's names (those starting with `prefix`)
   * must be the same set; shapes must always match. All checks run before anything is assigned.
   * @throws Error naming the file and listing missing, unexpected and mis-shaped keys.
   */
  load(file: SafetensorsFile, options: LoadOptions = {}): LoadReport {
    const { strict = true, prefix = '' } = options;
    const fileNames = file.names().filter((n) => n.startsWith(prefix));
    const fileSet = new Set(fileNames);
    const missing = [...this.entries.keys()].filter((n) => !fileSet.has(n));
    const unexpected = fileNames.filter((n) => !this.entries.has(n));
    const misShaped: string[] = [];
    const loaded: string[] = [];
    for (const n of fileNames) {
      const e = this.entries.get(n);
      if (!e) continue;
      const s = file.entry(n).shape;
      if (!same(s, e.shape)) misShaped.push(`${n} (file ${fmt(s)}, model ${fmt(e.shape)})`);
      else loaded.push(n);
    }
    if (misShaped.length || (strict && (missing.length || unexpected.length))) {
      const parts = [`${file.source}: cannot load parameters${prefix ? ` (prefix "${prefix}")` : ''}`];
      if (strict && missing.length) parts.push(`missing ${missing.length}: ${missing.join(', ')}`);
      if (strict && unexpected.length) parts.push(`unexpected ${unexpected.length}: ${unexpected.join(', ')}`);
      if (misShaped.length) parts.push(`mis-shaped ${misShaped.length}: ${misShaped.join(', ')}`);
      parts.push(strict ? 'check the checkpoint matches the model config, or load with { strict: false }' : 'check the checkpoint matches the model config');
      throw new Error(parts.join('\n  '));
    }
    for (const n of loaded) {
      const e = this.entries.get(n)!;
      const value = engineTensor(file.float32(n).data, e.shape);
      e.variable.assign(value);
      value.dispose();
    }
    return { loaded, missing, unexpected };
  }

  /**
   * The variable of a parameter, in the engine layout (conv `[kh, kw, in, out]`, linear `[in, out]`).
   * @throws Error naming the parameter when the store has no such name.
   */
  get(name: string): tf.Variable {
    const e = this.entries.get(name);
    if (!e) {
      throw new Error(
        `parameter "${name}" is not in the store (${this.entries.size} parameters); check the name against the official state dict and the model config`,
      );
    }
    return e.variable;
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** The official (PyTorch) shape of a parameter. @throws Error when absent. */
  officialShape(name: string): readonly number[] {
    this.get(name);
    return this.entries.get(name)!.shape;
  }

  /** Parameter names in creation order, optionally filtered. */
  names(filter?: ParamFilter): string[] {
    const m = matcher(filter);
    return [...this.entries.keys()].filter(m);
  }

  /**
   * The variables of a group (for `tf.variableGrads(f, store.variables(filter))` and optimizers),
   * in the order of {@link names} with the same filter.
   */
  variables(filter?: ParamFilter): tf.Variable[] {
    return this.names(filter).map((n) => this.entries.get(n)!.variable);
  }

  /** Marks the parameters selected by `filter` trainable or frozen; returns how many were set. */
  setTrainable(filter: ParamFilter, trainable: boolean): number {
    const names = this.names(filter);
    for (const n of names) this.entries.get(n)!.variable.trainable = trainable;
    return names.length;
  }

  /** Names of the trainable parameters. */
  trainableNames(): string[] {
    return this.names((n) => this.entries.get(n)!.variable.trainable);
  }

  /** Number of scalar parameters (optionally of a group). */
  count(filter?: ParamFilter): number {
    let total = 0;
    for (const n of this.names(filter)) total += sizeOf(this.entries.get(n)!.shape);
    return total;
  }

  /**
   * A scalar loss and its gradient with respect to parameters of the store (`tf.variableGrads`),
   * the gradients in the official layout keyed by name; a parameter the loss does not reach gets no entry.
   * @param loss builds the loss from the store's variables (called once, inside the gradient tape).
   */
  async gradients(filter: ParamFilter, loss: () => tf.Scalar): Promise<{ loss: number; grads: Record<string, Float32Array> }> {
    const names = this.names(filter);
    const byId = new Map(names.map((n) => [this.entries.get(n)!.variable.name, n]));
    const { value, grads } = tf.variableGrads(
      loss,
      names.map((n) => this.entries.get(n)!.variable),
    );
    const out: Record<string, Float32Array> = {};
    try {
      for (const [id, g] of Object.entries(grads)) out[byId.get(id)!] = (await officialHost(g)).data;
      return { loss: (await value.data())[0], grads: out };
    } finally {
      tf.dispose([value, ...Object.values(grads)]);
    }
  }

  /** Number of parameters (tensors) in the store. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * Every parameter (optionally of a group) back in the official layout, as host tensors keyed by
   * official name (conv `[out, in, kh, kw]`, linear `[out, in]`).
   */
  async toHost(filter?: ParamFilter): Promise<Record<string, HostTensor<'float32'>>> {
    const out: Record<string, HostTensor<'float32'>> = {};
    for (const n of this.names(filter)) out[n] = await officialHost(this.entries.get(n)!.variable);
    return out;
  }

  /** Writes the parameters (optionally a group) to a safetensors file in the official layout, atomically. */
  async save(path: string, metadata: Record<string, string> = {}, filter?: ParamFilter): Promise<void> {
    await writeSafetensors(path, await this.toHost(filter), metadata);
  }

  /** Frees every variable; the store is empty afterwards. */
  dispose(): void {
    for (const e of this.entries.values()) e.variable.dispose();
    this.entries.clear();
  }
}
