/**
 * `--init` with a Stable Diffusion checkpoint in the original single-file layout, at tiny shapes
 * (the `ci` preset's): every key family of `v1-5-pruned-emaonly.safetensors` (`first_stage_model.*`,
 * `model.diffusion_model.*`, `cond_stage_model.transformer.*`, the DDPM buffers, `model_ema.*`),
 * through `fit` (SG network made from the UNet encoder, context computed from the text encoder)
 * and `test`; and the refusals of the layouts `--init` does not take.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureSynthetic } from '@diad/datasets';
import { encodeSafetensors, int32, maxAbsDiff, readSafetensors, Rng, SafetensorsFile, tensor, type WritableTensor } from '@diad/core';
import { initialValues, initTfjs } from '@diad/core/tfjs';
import { configuredAutoencoder, DEFAULT_PREFIX as AE_PREFIX } from '@diad/autoencoder';
import { CLIP_VIT_L14_TEXT, clipEmptyPromptContext, clipTextParamSpec, parseDiadConfig, unetParamSpec, type ClipTextConfig } from '@diad/sg-diffusion';
import { resolveConfig } from '@diad/pipeline';
import { CLI, diad } from './run-cli.js';

describe('fit --init with a Stable Diffusion single-file checkpoint (tiny shapes), then test', () => {
  const dir = mkdtempSync(join(tmpdir(), 'diad-sd-init-'));
  const data = join(dir, 'data');
  const ckpt = join(dir, 'sd-tiny.safetensors');
  const run = join(dir, 'run');
  let bytes: Uint8Array;
  let fitResult: Awaited<ReturnType<typeof diad>>;

  beforeAll(async () => {
    await ensureSynthetic(data, { size: 64, train: 4 });
    const cfg = resolveConfig('ci', { roots: [data] });
    const ae = configuredAutoencoder(cfg.models.autoencoder, 'ci');
    const unet = parseDiadConfig(cfg.models.diad, 'ci').unet;
    // CLIP's real vocabulary and 77 positions (the empty prompt's ids are 49406, 49407), one
    // 64-wide layer: the ci UNet's context_dim.
    const clip: ClipTextConfig = {
      vocab_size: 49408,
      max_position_embeddings: 77,
      hidden_size: unet.context_dim,
      intermediate_size: 4 * unet.context_dim,
      num_hidden_layers: 1,
      num_attention_heads: 1,
      layer_norm_eps: 1e-5,
    };
    const rng = new Rng(11);
    const tensors: Record<string, WritableTensor> = {};
    for (const s of [...ae.kind.paramSpec(ae.config, AE_PREFIX), ...unetParamSpec(unet), ...clipTextParamSpec(clip)]) {
      // Random everywhere (LDM zero-initialises some convs; a pretrained UNet has none at zero).
      const v = s.init === 'zeros' ? Float32Array.from(rng.normals(s.shape.reduce((a, b) => a * b, 1)), (x) => 0.05 * x) : initialValues(s, rng);
      tensors[s.name] = tensor(v, s.shape);
    }
    // The other families of the real file, which --init ignores.
    tensors['cond_stage_model.transformer.text_model.embeddings.position_ids'] = int32(
      Int32Array.from({ length: 77 }, (_, i) => i),
      [1, 77],
    );
    tensors.alphas_cumprod = tensor(new Float32Array(1000).fill(0.5), [1000]);
    tensors['model_ema.decay'] = tensor(Float32Array.of(0.9999), []);
    tensors['model_ema.diffusion_modelinput_blocks00weight'] = tensors['model.diffusion_model.input_blocks.0.0.weight'];
    bytes = encodeSafetensors(tensors);
    writeFileSync(ckpt, bytes);
    fitResult = await diad(['fit', '--data', data, '--preset', 'ci', '--out', run, '--init', ckpt, '--sg-steps', '2'], 300_000);
  }, 300_000);

  it('fits: stages 1-2 from the checkpoint, the context from its text encoder', async () => {
    expect(fitResult.code, fitResult.stderr).toBe(0);
    expect(fitResult.stderr).toMatch(
      /memory: the SG stage needs about \d+ MiB at batch 4 \(weights \d+ MiB, gradients \d+ MiB, AdamW state \d+ MiB, activations \d+ MiB\)/,
    );
    const cfg = JSON.parse(readFileSync(join(run, 'config.json'), 'utf8')).config;
    expect(cfg.models.diad.context).toEqual({ kind: 'clip' });
    expect(existsSync(join(run, 'state', 'autoencoder.json'))).toBe(false);
    const ctx = await readSafetensors(join(run, 'context.safetensors'));
    expect(ctx.metadata.token_ids).toBe(JSON.stringify([49406, ...new Array(76).fill(49407)]));
    // The text encoder's own output on the empty prompt (checked against a reference in sg-diffusion).
    await initTfjs();
    const want = await clipEmptyPromptContext(new SafetensorsFile(bytes));
    expect(ctx.float32('context').shape).toEqual([1, 77, 64]);
    expect(maxAbsDiff(ctx.float32('context'), want)).toBe(0);
  });

  it("made the SG network from the UNet encoder (build_model.py): copies moved only by AdamW's two steps", async () => {
    const sg = JSON.parse(readFileSync(join(run, 'state', 'sg.json'), 'utf8'));
    const ck = await readSafetensors(join(run, sg.checkpoint));
    const init = new SafetensorsFile(bytes);
    const lr = JSON.parse(readFileSync(join(run, 'config.json'), 'utf8')).config.stages.sg.lr;
    for (const n of ['input_blocks.1.0.in_layers.2.weight', 'middle_block.1.proj_in.weight', 'time_embed.0.bias']) {
      const unet = init.float32(`model.diffusion_model.${n}`);
      // The frozen UNet encoder is the checkpoint's; its SG copy started equal and took 2 steps of about lr each.
      expect(maxAbsDiff(ck.float32(`model.diffusion_model.${n}`), unet)).toBe(0);
      expect(maxAbsDiff(ck.float32(`control_model.${n}`), unet), n).toBeLessThan(2.5 * lr);
      expect(Math.max(...unet.data.map(Math.abs)), n).toBeGreaterThan(20 * lr);
    }
    // Not in the UNet: freshly made, zero convs from zero.
    expect(Math.max(...ck.float32('control_model.zero_convs.0.0.weight').data.map(Math.abs))).toBeLessThan(2.5 * lr);
  });

  it('tests the run (the context from the run folder)', async () => {
    const r = await diad(['test', '--run', run, '--quiet'], 300_000);
    expect(r.code, r.stderr).toBe(0);
    const m = JSON.parse(readFileSync(join(run, 'test', 'metrics.json'), 'utf8'));
    for (const v of Object.values(m.modes.diad.mean) as number[]) expect(v >= 0 && v <= 1).toBe(true);
  }, 300_000);

  it('refuses a diffusers folder and a .ckpt pickle, saying how to convert, and sd15 without --init', async () => {
    const folder = join(dir, 'stable-diffusion-v1-5');
    mkdirSync(join(folder, 'unet'), { recursive: true });
    writeFileSync(join(folder, 'model_index.json'), '{}');
    const a = await diad(['fit', '--data', data, '--preset', 'ci', '--out', join(dir, 'r-a'), '--init', folder]);
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(
      /is a diffusers-layout folder .*convert_diffusers_to_original_stable_diffusion\.py --model_path .*stable-diffusion-v1-5 --checkpoint_path sd15\.safetensors --use_safetensors/,
    );
    const pickle = join(dir, 'v1-5-pruned.ckpt');
    writeFileSync(pickle, Buffer.from('PK\x03\x04 a zip of pickles'));
    const b = await diad(['fit', '--data', data, '--preset', 'ci', '--out', join(dir, 'r-b'), '--init', pickle]);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/v1-5-pruned\.ckpt is a PyTorch pickle checkpoint.*save_file\(.*'.*v1-5-pruned\.safetensors'\)/);
    const c = await diad(['fit', '--data', data, '--preset', 'sd15', '--out', join(dir, 'r-c')]);
    expect(c.code).toBe(1);
    expect(c.stderr).toMatch(/preset sd15 conditions on CLIP's encoding of the empty prompt.*give --init/);
    for (const r of ['r-a', 'r-b', 'r-c']) expect(existsSync(join(dir, r))).toBe(false);
  });
});

describe('fit --preset sd15 with an SD-1.5-shaped checkpoint (a sparse file: header only, data zeros)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'diad-sd15-'));
  const ckpt = join(dir, 'v1-5-shaped.safetensors');
  const fit = (out: string, env: Record<string, string>, ...more: string[]) =>
    spawnSync(process.execPath, [CLI, 'fit', '--data', dir, '--preset', 'sd15', '--out', join(dir, out), '--init', ckpt, ...more], {
      encoding: 'utf8',
      env: { ...process.env, ...env },
      timeout: 120_000,
    });

  beforeAll(() => {
    const cfg = resolveConfig('sd15', { roots: [dir] });
    const ae = configuredAutoencoder(cfg.models.autoencoder, 'sd15');
    const specs = [
      ...ae.kind.paramSpec(ae.config, AE_PREFIX),
      ...unetParamSpec(parseDiadConfig(cfg.models.diad, 'sd15').unet),
      ...clipTextParamSpec(CLIP_VIT_L14_TEXT),
    ];
    const header: Record<string, unknown> = {};
    let at = 0;
    for (const s of specs) {
      const end = at + 4 * s.shape.reduce((a, b) => a * b, 1);
      header[s.name] = { dtype: 'F32', shape: s.shape, data_offsets: [at, end] };
      at = end;
    }
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeFileSync(ckpt, Buffer.concat([len, json]));
    truncateSync(ckpt, 8 + json.length + at); // about 4 GB, no disk blocks
  });

  it('refuses up front: the weights past the tfjs-wasm heap, then the training memory with its estimate', () => {
    const a = fit('r-wasm', { DIAD_TFJS_ENGINE: 'wasm' });
    expect(a.status).toBe(1);
    expect(a.stderr).toMatch(/preset sd15: the denoiser's 5\.0 GiB of float32 weights do not fit the 4 GiB heap of tfjs-wasm.*DIAD_TFJS_ENGINE=cpu/);
    // A batch no machine holds, so the refusal does not depend on this one's memory.
    const b = fit('r-mem', { DIAD_TFJS_ENGINE: 'cpu' }, '--batch-size', '4000');
    expect(b.status).toBe(1);
    expect(b.stderr).toMatch(
      /preset sd15: the SG stage needs about [\d.]+ GiB at batch 4000 \(weights 9\.9 GiB, gradients 3\.7 GiB, AdamW state 7\.3 GiB, activations [\d.]+ GiB\), but this machine offers [\d.]+ GiB .*(lower --batch-size \(batch 1 needs 22\.6 GiB|even batch 1 needs 22\.6 GiB)/,
    );
    for (const r of ['r-wasm', 'r-mem']) expect(existsSync(join(dir, r))).toBe(false);
    rmSync(dir, { recursive: true, force: true });
  });
});
