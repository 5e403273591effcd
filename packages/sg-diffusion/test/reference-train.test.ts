/**
 * train_step parity with the official DiAD training (fixture `train_step` in DIAD_REFERENCE_DIR):
 * loss, the step-0 gradient of every trainable parameter, which parameters get none, and the
 * parameters after two AdamW steps, on both engines (tfjs through `tf.variableGrads`, onnxruntime
 * through the recorded training graph). Configs, names, learning rate and tolerances come from the JSON.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type * as tf from '@tensorflow/tfjs-core';
import { DiffusionSchedule, readSafetensors, type HostTensor, type SafetensorsFile } from '@diad/core';
import { ParamStore, TfjsOps, Trainer } from '@diad/core/tfjs';
import { OrtTrainer } from '@diad/core/ort';
import { OFFICIAL_HINT_WIDTHS, parseDiadConfig, parseUNetConfig, type DiadConfig } from '../src/config.js';
import { diadParamSpec, trainableFilter } from '../src/denoiser.js';
import { timestepEmbedding } from '../src/layers.js';
import { denoiserEps, epsLoss } from '../src/loss.js';
import { recordDenoiserTraining } from '../src/train-graph.js';
import { useBackend } from './backend.js';
import { dir, json, present } from './fixtures.js';

interface Meta {
  weights: string;
  unet_config: unknown;
  hint_channels?: number;
  only_mid_control?: boolean;
  lr: number;
  trainable: string[];
  trainable_without_gradient: string[];
  losses: number[];
  gradient_scale: number;
  tolerance: string;
}

/** A decimal number (no trailing sentence dot). */
const NUM = String.raw`[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?`;

/** The numbers of the JSON's tolerance text. */
function tolerances(text: string) {
  const num = (re: string, what: string) => {
    const m = text.match(new RegExp(re));
    if (!m) throw new Error(`train_step.json tolerance: cannot read ${what} from "${text}"`);
    return Number(m[1]);
  };
  return {
    loss: num(String.raw`loss: relative error <= (${NUM})`, 'the loss tolerance'),
    grad: num(String.raw`max abs error <= (${NUM}) \* max\(max\|expected tensor\|`, 'the gradient tolerance'),
    gradFloor: num(String.raw`max\(max\|expected tensor\|, (${NUM}) \* G\)`, 'the gradient floor'),
    after: num(String.raw`after2: each element within (${NUM}) \* max\(1, \|expected\|\)`, 'the after2 tolerance'),
    noisy: num(String.raw`\|step0 gradient\| < (${NUM}) \* G`, 'the noise-level gradient bound'),
    noisyLr: num(String.raw`must be within (${NUM}) \* lr`, 'the noise-level update tolerance'),
  };
}

interface Step {
  xNoisy: HostTensor;
  noise: HostTensor;
  tEmb: HostTensor;
  hint: HostTensor;
  context: HostTensor;
}

describe.runIf(present)('train_step parity', () => {
  let meta: Meta;
  let file: SafetensorsFile;
  let weights: SafetensorsFile;
  let config: DiadConfig;
  let params: Record<string, HostTensor<'float32'>>;
  let steps: Step[];
  let tol: ReturnType<typeof tolerances>;

  beforeAll(async () => {
    await useBackend();
    meta = json('train_step');
    tol = tolerances(meta.tolerance);
    file = await readSafetensors(`${dir}/train_step.safetensors`);
    weights = await readSafetensors(`${dir}/${meta.weights.split(/\s/)[0]}`);
    const hint0 = file.float32('step0.input.hint');
    const ctx0 = file.float32('step0.input.context');
    config = parseDiadConfig(
      {
        unet: parseUNetConfig(meta.unet_config, 'train_step.json unet_config'),
        hint_channels: meta.hint_channels ?? hint0.shape[1],
        hint_widths: [...OFFICIAL_HINT_WIDTHS],
        sff: true,
        only_mid_control: meta.only_mid_control ?? true,
        context: { kind: 'file', path: 'train_step.safetensors', tensor: 'step0.input.context' },
      },
      'train_step.json',
    );
    params = {};
    for (const spec of diadParamSpec(config)) params[spec.name] = weights.float32(spec.name);
    expect(ctx0.shape[2]).toBe(config.unet.context_dim);
    const schedule = new DiffusionSchedule();
    steps = [0, 1].map((s) => {
      const x0 = file.float32(`step${s}.input.x0`);
      const noise = file.float32(`step${s}.input.noise`);
      const t = [...file.int32(`step${s}.input.timesteps`).data];
      return {
        xNoisy: schedule.qSample(x0, t, noise),
        noise,
        tEmb: timestepEmbedding(t, config.unet.model_channels),
        hint: file.float32(`step${s}.input.hint`),
        context: file.float32(`step${s}.input.context`),
      };
    });
  });

  const isTrainable = (n: string) => meta.trainable.includes(n);

  it('train_step: the official trainable groups are ours', () => {
    const ours = Object.keys(params).filter(trainableFilter('official'));
    expect(ours.sort()).toEqual([...meta.trainable].sort());
  });

  /** Checks a step-0 gradient set, the losses and the parameters after two steps. */
  function check(engine: string, loss0: number, loss1: number, grads: Record<string, Float32Array>, after: Record<string, Float32Array>) {
    const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
    expect(rel(loss0, meta.losses[0]), `${engine} loss 0`).toBeLessThanOrEqual(tol.loss);
    expect(rel(loss1, meta.losses[1]), `${engine} loss 1`).toBeLessThanOrEqual(tol.loss);
    const G = meta.gradient_scale;
    let worstGrad = 0;
    for (const name of meta.trainable) {
      if (meta.trainable_without_gradient.includes(name)) {
        expect(grads[name], `${engine}: ${name} must get no gradient`).toBeUndefined();
        continue;
      }
      const want = file.float32(`step0.grad.${name}`).data;
      const got = grads[name];
      expect(got, `${engine}: gradient of ${name}`).toBeDefined();
      let err = 0;
      let scale = 0;
      for (let i = 0; i < want.length; i++) {
        err = Math.max(err, Math.abs(got[i] - want[i]));
        scale = Math.max(scale, Math.abs(want[i]));
      }
      const limit = tol.grad * Math.max(scale, tol.gradFloor * G);
      worstGrad = Math.max(worstGrad, err / limit);
      expect(err, `${engine}: gradient of ${name}`).toBeLessThanOrEqual(limit);
    }
    let worstAfter = 0;
    for (const name of meta.trainable) {
      const want = file.float32(`after2.${name}`).data;
      const g0 = meta.trainable_without_gradient.includes(name) ? null : file.float32(`step0.grad.${name}`).data;
      const got = after[name];
      for (let i = 0; i < want.length; i++) {
        const noisy = g0 !== null && Math.abs(g0[i]) < tol.noisy * G;
        const limit = noisy ? tol.noisyLr * meta.lr : tol.after * Math.max(1, Math.abs(want[i]));
        const err = Math.abs(got[i] - want[i]);
        worstAfter = Math.max(worstAfter, err / limit);
        if (err > limit) expect(err, `${engine}: after2.${name}[${i}] = ${got[i]}, expected ${want[i]}`).toBeLessThanOrEqual(limit);
      }
    }
    console.log(
      `[train_step ${engine}] losses ${loss0}, ${loss1} (expected ${meta.losses.join(', ')}); worst gradient error ${worstGrad.toFixed(3)} of its limit, worst after2 error ${worstAfter.toFixed(3)} of its limit`,
    );
  }

  it('train_step on onnxruntime: the training graph gives the official loss, gradients and AdamW steps', async () => {
    const graph = recordDenoiserTraining(config, params, {
      batch: steps[0].xNoisy.shape[0],
      latentHeight: steps[0].xNoisy.shape[2],
      latentWidth: steps[0].xNoisy.shape[3],
      guided: true,
      trainable: isTrainable,
      contextTokens: steps[0].context.shape[1],
    });
    expect([...graph.withoutGradient].sort()).toEqual([...meta.trainable_without_gradient].sort());
    const trainer = await OrtTrainer.open(graph, params, { optimizer: { lr: meta.lr, weightDecay: 0.01 } });
    try {
      const feeds = steps.map((s) => ({ x_noisy: s.xNoisy, noise: s.noise, t_emb: s.tEmb, hint: s.hint, context: s.context }));
      const { grads } = await trainer.lossAndGrads(feeds[0]);
      const r0 = await trainer.trainStep([feeds[0]]);
      const r1 = await trainer.trainStep([feeds[1]]);
      check('ort', r0.loss, r1.loss, grads, Object.fromEntries(meta.trainable.map((n) => [n, trainer.params[n].data])));
    } finally {
      await trainer.release();
    }
  });

  it('train_step on tfjs: tf.variableGrads through the same loss code gives the official loss, gradients and AdamW steps', async () => {
    const store = ParamStore.create(diadParamSpec(config), 0);
    try {
      expect(store.load(weights, { strict: false }).missing).toEqual([]);
      const ops = new TfjsOps(store);
      const names = meta.trainable;
      const trainer = new Trainer(Object.fromEntries(names.map((n) => [n, store.get(n)])), { optimizer: { lr: meta.lr, weightDecay: 0.01 } });
      const closure = (s: Step) => () =>
        epsLoss(
          ops,
          denoiserEps(ops, config, ops.input(s.xNoisy), ops.input(s.hint), ops.input(s.tEmb), ops.input(s.context)),
          ops.input(s.noise),
        ) as tf.Scalar;
      const { grads: g0 } = await store.gradients((n) => names.includes(n), closure(steps[0]));
      const r0 = await trainer.trainStep([closure(steps[0])]);
      const r1 = await trainer.trainStep([closure(steps[1])]);
      const after = await store.toHost((n) => names.includes(n));
      check('tfjs', r0.loss, r1.loss, g0, Object.fromEntries(names.map((n) => [n, after[n].data])));
      trainer.dispose();
    } finally {
      store.dispose();
    }
  }, 300_000);
});
