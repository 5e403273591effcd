/**
 * Parity with the official DiAD code (fixtures in DIAD_REFERENCE_DIR, default ../shared/fixtures/reference):
 * every config, shape and tolerance comes from the fixture JSON.
 */
import { describe, expect, it, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { DiffusionSchedule, maxAbsDiff, readSafetensors, type HostTensor, type SafetensorsFile } from '@diad/core';
import { ParamStore, TfjsOps } from '@diad/core/tfjs';
import { OFFICIAL_HINT_WIDTHS, parseUNetConfig, type SGNConfig } from '../src/config.js';
import { controlledUnet, hintBlock, semanticGuidedNetwork } from '../src/model.js';
import { timestepEmbedding } from '../src/layers.js';
import { sgnParamSpec, unetParamSpec } from '../src/spec.js';
import { useBackend } from './backend.js';
import { dir, json, present } from './fixtures.js';

const maxAbs = (t: HostTensor): number => t.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/** Absolute tolerance `a * max(1, max|expected|)` as the JSON's tolerance text states it (after `label`, if given). */
function absTolerance(text: string, label = ''): (want: HostTensor) => number {
  const m = text.slice(text.indexOf(label)).match(/max abs error <= ([0-9.e+-]+) \* max\(1, max\|expected\|\)/);
  if (!m) throw new Error(`cannot read an absolute tolerance${label ? ` for "${label}"` : ''} from "${text}"`);
  return (want) => Number(m[1]) * Math.max(1, maxAbs(want));
}

/** Relative tolerance `rel error <= r` after `label` in the JSON's tolerance text. */
function relTolerance(text: string, label: string): number {
  const m = text.slice(text.indexOf(label)).match(/rel error <= ([0-9.e+-]+)/);
  if (!m) throw new Error(`cannot read a relative tolerance for "${label}" from "${text}"`);
  return Number(m[1]);
}

/** Loads the fixture's SGN + UNet into a store; the SG config comes from the JSON. */
async function loadModel(file: SafetensorsFile, meta: { unet_config: unknown; hint_channels: number }) {
  const unet = parseUNetConfig(meta.unet_config, 'sgn_unet.json unet_config');
  const sgn: SGNConfig = { unet, hint_channels: meta.hint_channels, hint_widths: [...OFFICIAL_HINT_WIDTHS], hint_downsample: 8, sff: true };
  const store = ParamStore.create([...unetParamSpec(unet), ...sgnParamSpec(sgn)], 0);
  const report = store.load(file, { strict: false });
  expect(report.missing).toEqual([]);
  expect(report.unexpected.filter((n) => !n.startsWith('input.') && !n.startsWith('output.'))).toEqual([]);
  return { unet, sgn, store, ops: new TfjsOps(store) };
}

describe.runIf(present)('sgn_unet parity', () => {
  beforeAll(() => useBackend());

  it('parameter names and shapes equal the official state dict', async () => {
    const meta = json('sgn_unet');
    const file = await readSafetensors(`${dir}/sgn_unet.safetensors`);
    const unet = parseUNetConfig(meta.unet_config);
    const specs = [
      ...unetParamSpec(unet),
      ...sgnParamSpec({ unet, hint_channels: meta.hint_channels, hint_widths: [...OFFICIAL_HINT_WIDTHS], hint_downsample: 8, sff: true }),
    ];
    const ours = new Map(specs.map((p) => [p.name, p.shape.join(',')]));
    const theirs = new Map(
      file
        .names()
        .filter((n) => !n.startsWith('input.') && !n.startsWith('output.'))
        .map((n) => [n, file.entry(n).shape.join(',')]),
    );
    expect([...ours.keys()].filter((k) => !theirs.has(k))).toEqual([]);
    expect([...theirs.keys()].filter((k) => !ours.has(k))).toEqual([]);
    for (const [k, shape] of ours) expect(shape, k).toBe(theirs.get(k));
  });

  it('13 control tensors, eps_only_mid_control, eps_full_control', async () => {
    const meta = json('sgn_unet');
    const file = await readSafetensors(`${dir}/sgn_unet.safetensors`);
    const { unet, sgn, store, ops } = await loadModel(file, meta);
    const scales: number[] = meta.control_scales;
    const ts = [...file.int32('input.timesteps').data];
    const results = tf.tidy(() => {
      const x = ops.input(file.float32('input.x'));
      const ctx = ops.input(file.float32('input.context'));
      const tEmb = ops.input(timestepEmbedding(ts, unet.model_channels));
      const g = hintBlock(ops, ops.input(file.float32('input.hint')));
      const control = semanticGuidedNetwork(ops, sgn, x, g, tEmb, ctx).map((c, i) => (scales[i] === 1 ? c : ops.scale(c, scales[i])));
      return {
        control,
        mid: controlledUnet(ops, unet, x, tEmb, ctx, control, true),
        full: controlledUnet(ops, unet, x, tEmb, ctx, control, false),
      };
    });
    const tol = absTolerance(meta.tolerance);
    const errors: Record<string, number> = {};
    const check = async (name: string, t: tf.Tensor) => {
      const want = file.float32(name);
      const got = await ops.read(t);
      expect(got.shape, name).toEqual(want.shape);
      const err = maxAbsDiff(got, want);
      errors[name] = err;
      expect(err, name).toBeLessThanOrEqual(tol(want));
    };
    expect(results.control.length).toBe(file.names().filter((n) => n.startsWith('output.control.')).length);
    for (let i = 0; i < results.control.length; i++) await check(`output.control.${i}`, results.control[i]);
    await check('output.eps_only_mid_control', results.mid);
    await check('output.eps_full_control', results.full);
    console.log('sgn_unet max abs errors', JSON.stringify(errors));
    tf.dispose([results.control, results.mid, results.full]);
    store.dispose();
  });
});

describe.runIf(present)('ddim parity', () => {
  const relErr = (got: ArrayLike<number>, want: ArrayLike<number>) => {
    let m = 0;
    for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs(got[i] - want[i]) / Math.max(Math.abs(want[i]), 1e-30));
    return m;
  };

  it('betas, alphas_cumprod, DDIM timesteps, alphas and the visited timesteps', async () => {
    const meta = json('ddim');
    const file = await readSafetensors(`${dir}/ddim.safetensors`);
    const s = new DiffusionSchedule({ numTimesteps: file.entry('schedule.betas').shape[0] });
    const rel = relTolerance(meta.tolerance, 'schedule');
    expect(relErr(s.betas, file.float32('schedule.betas').data)).toBeLessThanOrEqual(rel);
    expect(relErr(s.alphasCumprod, file.float32('schedule.alphas_cumprod').data)).toBeLessThanOrEqual(rel);
    const d = s.ddim(meta.ddim_steps, meta.eta);
    expect(d.timesteps).toEqual([...file.int32('ddim.timesteps').data]);
    expect(relErr(d.alphas, file.float32('ddim.alphas').data)).toBeLessThanOrEqual(rel);
    expect(relErr(d.alphasPrev, file.float32('ddim.alphas_prev').data)).toBeLessThanOrEqual(rel);
    const visited = s.visitOrder(d, meta.t_start, 'official').map((i) => d.timesteps[i]);
    expect(visited).toEqual([...file.int32('ddim.timesteps_visited').data]);
  });

  it('q_sample gives x_T', async () => {
    const meta = json('ddim');
    const file = await readSafetensors(`${dir}/ddim.safetensors`);
    const s = new DiffusionSchedule({ numTimesteps: file.entry('schedule.betas').shape[0] });
    const want = file.float32('input.x_T');
    const got = s.qSample(file.float32('input.z'), meta.t_start, file.float32('input.noise'));
    expect(maxAbsDiff(got, want)).toBeLessThanOrEqual(relTolerance(meta.tolerance, 'schedule') * Math.max(1, maxAbs(want)));
  });

  it('the full DDIM run (SGN + UNet of sgn_unet, only_mid_control) gives the samples', async () => {
    await useBackend();
    const meta = json('ddim');
    const file = await readSafetensors(`${dir}/ddim.safetensors`);
    const model = await readSafetensors(`${dir}/sgn_unet.safetensors`);
    const { unet, sgn, store, ops } = await loadModel(model, json('sgn_unet'));
    const s = new DiffusionSchedule({ numTimesteps: file.entry('schedule.betas').shape[0] });
    const d = s.ddim(meta.ddim_steps, meta.eta);
    let x = file.float32('input.x_T');
    const n = x.shape[0];
    const ctx = ops.input(file.float32('input.context'));
    const g = tf.tidy(() => hintBlock(ops, ops.input(file.float32('input.hint'))));
    for (const index of s.visitOrder(d, meta.t_start, 'official')) {
      const t = new Array<number>(n).fill(d.timesteps[index]);
      const epsT = tf.tidy(() => {
        const xt = ops.input(x);
        const tEmb = ops.input(timestepEmbedding(t, unet.model_channels));
        const control = semanticGuidedNetwork(ops, sgn, xt, g, tEmb, ctx);
        return controlledUnet(ops, unet, xt, tEmb, ctx, control, true);
      });
      const eps = await ops.read(epsT);
      epsT.dispose();
      x = s.ddimStep(d, index, x, eps).prev;
    }
    const want = file.float32('output.samples');
    const err = maxAbsDiff(x, want);
    console.log('ddim samples max abs error', err, 'max |expected|', maxAbs(want));
    expect(err).toBeLessThanOrEqual(absTolerance(meta.tolerance, 'samples')(want));
    tf.dispose([ctx, g]);
    store.dispose();
  });
});
