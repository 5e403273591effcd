/**
 * The DiAD denoiser recorded to ONNX and run on onnxruntime-node: the official fixtures
 * (`sgn_unet` eps with only_mid_control, and the full `ddim` run over ORT sessions; DIAD_REFERENCE_DIR,
 * configs, shapes and tolerances from the JSONs) and TfjsOps on random weights (1e-4 relative).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { DdimReconstructor, DiffusionSchedule, int32, maxAbsDiff, readSafetensors, Rng, tensor, type HostTensor, type ParamSpec } from '@diad/core';
import { ParamStore, TfjsOps } from '@diad/core/tfjs';
import { createOrtSession } from '@diad/core/ort';
import { OFFICIAL_HINT_WIDTHS, parseUNetConfig, preset, sgnConfigOf, type DiadConfig } from '../src/config.js';
import { contextFor } from '../src/context.js';
import { diadParamSpec } from '../src/denoiser.js';
import { timestepEmbedding } from '../src/layers.js';
import { controlledUnet, hintBlock, semanticGuidedNetwork } from '../src/model.js';
import { exportDenoiserOnnx, hostContext } from '../src/onnx.js';
import { OrtGuidedDenoiser } from '@diad/core/ort';
import { DiadDenoiser } from '../src/denoiser.js';
import { useBackend } from './backend.js';
import { fixturesPresent, REFERENCE_DIR } from '@diad/core/testing';

const refDir = REFERENCE_DIR;
const present = fixturesPresent('ONNX parity tests', refDir);
const json = (name: string) => JSON.parse(readFileSync(`${refDir}/${name}.json`, 'utf8'));
const maxAbs = (t: HostTensor): number => t.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

const tmp = mkdtempSync(join(tmpdir(), 'diad-sgn-onnx-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Absolute tolerance `a * max(1, max|expected|)` after `label` in the JSON's tolerance text. */
function absTolerance(text: string, label = ''): (want: HostTensor) => number {
  const m = text.slice(text.indexOf(label)).match(/max abs error <= ([0-9.e+-]+) \* max\(1, max\|expected\|\)/);
  if (!m) throw new Error(`cannot read an absolute tolerance${label ? ` for "${label}"` : ''} from "${text}"`);
  return (want) => Number(m[1]) * Math.max(1, maxAbs(want));
}

const i32 = (ts: ArrayLike<number>) => int32(Int32Array.from(ts), [ts.length]);

/** The fixture's SGN + UNet exported as hint and step sessions (only_mid_control true, as the DDIM fixture). */
async function fixtureSessions() {
  const meta = json('sgn_unet');
  const file = await readSafetensors(`${refDir}/sgn_unet.safetensors`);
  const unet = parseUNetConfig(meta.unet_config, 'sgn_unet.json unet_config');
  const L = file.entry('input.context').shape[1];
  const config: DiadConfig = {
    unet,
    hint_channels: meta.hint_channels,
    hint_widths: [...OFFICIAL_HINT_WIDTHS],
    hint_downsample: 8,
    sff: true,
    only_mid_control: true,
    context: { kind: 'learned', tokens: L },
  } as DiadConfig;
  const params: Record<string, HostTensor<'float32'>> = {};
  for (const n of file.names()) if (!n.startsWith('input.') && !n.startsWith('output.')) params[n] = file.float32(n);
  const [, , h, w] = file.entry('input.x').shape;
  const files = await exportDenoiserOnnx(join(tmp, 'fixture'), config, params, { latentHeight: h, latentWidth: w, contextTokens: L });
  return { meta, file, hint: await createOrtSession(files.hint), step: await createOrtSession(files.step) };
}

describe.runIf(present)('ONNX parity with the official fixtures', () => {
  it('sgn_unet: eps_only_mid_control from the exported hint + step graphs', async () => {
    const { meta, file, hint, step } = await fixtureSessions();
    const ts = i32(file.int32('input.timesteps').data);
    const guided = (await hint.run({ hint: file.float32('input.hint') })).guided_hint as HostTensor;
    const eps = (await step.run({ latent: file.float32('input.x'), guided_hint: guided, timestep: ts, context: file.float32('input.context') }))
      .eps as HostTensor;
    const want = file.float32('output.eps_only_mid_control');
    const tol = absTolerance(meta.tolerance)(want);
    const err = maxAbsDiff(eps, want);
    console.log(`[sgn_unet onnx] max abs error ${err} (tolerance ${tol})`);
    expect(eps.shape).toEqual(want.shape);
    expect(err).toBeLessThanOrEqual(tol);
    for (const s of [hint, step]) await s.release();
  });

  it('ddim: the full DDIM run over onnxruntime sessions gives the samples', async () => {
    const meta = json('ddim');
    const file = await readSafetensors(`${refDir}/ddim.safetensors`);
    const { hint, step } = await fixtureSessions();
    const s = new DiffusionSchedule({ numTimesteps: file.entry('schedule.betas').shape[0] });
    const d = s.ddim(meta.ddim_steps, meta.eta);
    let x = file.float32('input.x_T');
    const n = x.shape[0];
    const context = file.float32('input.context');
    const guided = (await hint.run({ hint: file.float32('input.hint') })).guided_hint as HostTensor;
    for (const index of s.visitOrder(d, meta.t_start, 'official')) {
      const eps = (await step.run({ latent: x, guided_hint: guided, timestep: i32(new Array(n).fill(d.timesteps[index])), context })).eps as HostTensor;
      x = s.ddimStep(d, index, x, eps).prev;
    }
    const want = file.float32('output.samples');
    const err = maxAbsDiff(x, want);
    console.log(`[ddim onnx] samples max abs error ${err}, max |expected| ${maxAbs(want)}`);
    expect(err).toBeLessThanOrEqual(absTolerance(meta.tolerance, 'samples')(want));
    await hint.release();
    await step.release();
  });
});

describe('ONNX vs TfjsOps on random weights', () => {
  it('exported hint + step reproduce the tfjs eps within 1e-4 relative (batch 2 and 3), host context equals contextFor', async () => {
    await useBackend();
    const config = preset('tiny');
    const hw = config.unet.image_size ?? 16; // 16: latents 16x16, 128 px hints (an 8x8 latent has 1x1 maps at level 4, where norms amplify float32 noise: 2e-4 between tfjs backends)
    // Zero convs get random values too, so the SG network's controls reach eps.
    const specs: ParamSpec[] = diadParamSpec(config).map((p) => (p.init === 'zeros' ? { ...p, init: 'normal', std: 0.05 } : p));
    const store = ParamStore.create(specs, 11);
    const ops = new TfjsOps(store);
    const sgn = sgnConfigOf(config);
    try {
      const params = await store.toHost();
      const L = config.context.kind === 'learned' ? config.context.tokens : 0;
      const files = await exportDenoiserOnnx(join(tmp, 'random'), config, params, { latentHeight: hw, latentWidth: hw, contextTokens: L });
      const hint = await createOrtSession(files.hint);
      const step = await createOrtSession(files.step);
      const errors: Record<string, number> = {};
      for (const n of [2, 3]) {
        const r = new Rng(n);
        const x = tensor(r.normals(n * 4 * hw * hw), [n, 4, hw, hw], 'NCHW');
        const img = tensor(r.normals(n * 3 * 64 * hw * hw), [n, 3, 8 * hw, 8 * hw], 'NCHW');
        const ts = Array.from({ length: n }, (_, i) => 37 + 450 * i);
        const ctxT = tf.tidy(() => contextFor(ops, config.context, null, n));
        const ctx = hostContext(config, params, null, n);
        expect(maxAbsDiff(await ops.read(ctxT), ctx)).toBe(0);
        const epsT = tf.tidy(() => {
          const xt = ops.input(x);
          const tEmb = ops.input(timestepEmbedding(ts, config.unet.model_channels));
          const control = semanticGuidedNetwork(ops, sgn, xt, hintBlock(ops, ops.input(img)), tEmb, ctxT);
          return controlledUnet(ops, config.unet, xt, tEmb, ctxT, control, config.only_mid_control);
        });
        const want = await ops.read(epsT);
        tf.dispose([epsT, ctxT]);
        const guided = (await hint.run({ hint: img })).guided_hint as HostTensor;
        const got = (await step.run({ latent: x, guided_hint: guided, timestep: i32(ts), context: ctx })).eps as HostTensor;
        expect(got.shape).toEqual(want.shape);
        errors[`eps@${n}`] = maxAbsDiff(got, want) / maxAbs(want);
        expect(errors[`eps@${n}`]).toBeLessThanOrEqual(1e-4);
      }
      console.log(`[denoiser onnx vs tfjs-wasm] relative errors ${JSON.stringify(errors)}`);
      await hint.release();
      await step.release();
    } finally {
      store.dispose();
    }
  });
});

describe('hint_downsample', () => {
  it('4: the hint block strides twice (convs 3 and 5), same parameters; ONNX equals tfjs', async () => {
    await useBackend();
    const config = { ...preset('tiny'), hint_downsample: 4 as const };
    const store = ParamStore.create(
      diadParamSpec(config).map((p) => (p.init === 'zeros' ? { ...p, init: 'normal' as const, std: 0.05 } : p)),
      5,
    );
    try {
      expect(store.names().length).toBe(ParamStore.create(diadParamSpec(preset('tiny')), 5).names().length);
      const ops = new TfjsOps(store);
      const img = tensor(new Rng(3).normals(2 * 3 * 64 * 48), [2, 3, 64, 48], 'NCHW');
      const want = await ops.read(tf.tidy(() => hintBlock(ops, ops.input(img), 4)));
      expect(want.shape).toEqual([2, config.unet.model_channels, 16, 12]);
      const files = await exportDenoiserOnnx(join(tmp, 'hint4'), config, await store.toHost(), { latentHeight: 16, latentWidth: 12, contextTokens: 4 });
      const hint = await createOrtSession(files.hint);
      const got = (await hint.run({ hint: img })).guided_hint as HostTensor;
      expect(got.shape).toEqual(want.shape);
      expect(maxAbsDiff(got, want) / maxAbs(want)).toBeLessThan(1e-5);
      await hint.release();
    } finally {
      store.dispose();
    }
  });
});

describe('OrtGuidedDenoiser', () => {
  it('DDIM over the exported sessions reconstructs as over the tfjs DiadDenoiser (same noise, schedule and steps), and a bad context is refused', async () => {
    await useBackend();
    const config = preset('tiny');
    const hw = config.unet.image_size ?? 16;
    const d = await DiadDenoiser.create(config, 3);
    try {
      // Zero convs (and the UNet's zero `out` conv) get random values, or eps would be exactly 0.
      const zr = new Rng(5);
      for (const p of diadParamSpec(config).filter((q) => q.init === 'zeros')) {
        const v = d.store.get(p.name);
        const t = tf.tensor(
          zr.normals(v.size).map((x) => 0.05 * x),
          v.shape,
        );
        v.assign(t);
        t.dispose();
      }
      const params = await d.store.toHost();
      const L = config.context.kind === 'learned' ? config.context.tokens : 0;
      const files = await exportDenoiserOnnx(join(tmp, 'recon'), config, params, { latentHeight: hw, latentWidth: hw, contextTokens: L });
      const ort = await OrtGuidedDenoiser.open(files, hostContext(config, params, null, 1));
      const r = new Rng(4);
      const latents = tensor(r.normals(2 * 4 * hw * hw), [2, 4, hw, hw], 'NCHW');
      const hint = tensor(r.normals(2 * 3 * 64 * hw * hw), [2, 3, 8 * hw, 8 * hw], 'NCHW');
      const ddim = { tStart: 999, steps: 4, eta: 0, schedule: 'official' as const };
      const want = await new DdimReconstructor(d, ddim).reconstruct(latents, hint, { seed: 9 });
      const got = await new DdimReconstructor(ort, ddim).reconstruct(latents, hint, { seed: 9 });
      const rel = maxAbsDiff(got, want) / maxAbs(want);
      console.log(`[DDIM on OrtGuidedDenoiser vs tfjs-wasm] 4 DDIM steps, relative error ${rel}`);
      expect(got.shape).toEqual(latents.shape);
      expect(rel).toBeLessThanOrEqual(1e-4);
      await ort.release();
      await expect(OrtGuidedDenoiser.open(files, tensor(new Float32Array(8), [2, 1, 4]))).rejects.toThrow(/context must be \[1, L, D\]/);
    } finally {
      d.dispose();
    }
  });
});
