// 10-step DDIM reconstruction images/s of the tiny-like configuration (128 px, model_channels 32,
// channel_mult [1,2,2,2], official hint widths, batch 8): onnxruntime-node (exported hint + step
// graphs, OrtGuidedDenoiser) against tfjs (DdimReconstructor on initTfjs's engine).
// Warm-up, then the median of BENCH_RUNS (3) ORT runs; tfjs runs once after its warm-up (it is
// ~10x slower). BENCH_BATCH (8), BENCH_THREADS (ORT intra-op threads, default ORT's choice),
// BENCH_SKIP_TFJS=1, BENCH_ATTENTION. Prints wall and process CPU seconds (the machine may be shared) and one JSON line.
// Run after `pnpm --filter @diad/sg-diffusion build`: node packages/sg-diffusion/bench/ort-bench.mjs
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng, tensor } from '@diad/core';
import { initTfjs, formatEngineInfo } from '@diad/core/tfjs';
import { DdimReconstructor, DiadDenoiser, OrtGuidedDenoiser, exportDenoiserOnnx, hostContext, preset, OFFICIAL_HINT_WIDTHS } from '../dist/index.js';

const batch = Number(process.env.BENCH_BATCH ?? 8);
const runs = Number(process.env.BENCH_RUNS ?? 3);
const threads = process.env.BENCH_THREADS ? Number(process.env.BENCH_THREADS) : undefined;
const info = await initTfjs();
const config = preset('tiny');
config.hint_widths = [...OFFICIAL_HINT_WIDTHS];
// BENCH_ATTENTION=4,2,1 puts attention at every level, as the sgn_unet fixture (the preset: 4,2).
if (process.env.BENCH_ATTENTION) config.unet.attention_resolutions = process.env.BENCH_ATTENTION.split(',').map(Number);
const d = await DiadDenoiser.create(config, 0);
const hw = config.unet.image_size;
const rng = new Rng(1);
const latents = tensor(rng.normals(batch * 4 * hw * hw), [batch, 4, hw, hw], 'NCHW');
const hint = tensor(rng.normals(batch * 3 * 64 * hw * hw), [batch, 3, hw * 8, hw * 8], 'NCHW');
const ddim = { tStart: 999, steps: 10, eta: 0, schedule: 'official' };
const opts = { seed: 0 };
const cpu = (c0) => {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1e6;
};
async function time(f) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await f();
  return { wall: (performance.now() - t0) / 1000, cpu: cpu(c0) };
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const dir = mkdtempSync(join(tmpdir(), 'diad-ort-bench-'));
const params = await d.store.toHost();
const t0 = performance.now();
const files = await exportDenoiserOnnx(dir, config, params, { latentHeight: hw, latentWidth: hw, contextTokens: config.context.tokens });
const gflopPerImage = (files.flopsPerImage.hint + 10 * files.flopsPerImage.step) / 1e9;
console.log(
  `export (hint + step graphs): ${((performance.now() - t0) / 1000).toFixed(2)} s; ${(files.flopsPerImage.step / 1e9).toFixed(3)} GFLOP per step and image, ${gflopPerImage.toFixed(2)} GFLOP per image for 10 steps (limit at 530 GFLOP/s: ${(530 / gflopPerImage).toFixed(1)} images/s)`,
);
const ortDenoiser = await OrtGuidedDenoiser.open(files, hostContext(config, params, null, 1), { threads });
const ort = new DdimReconstructor(ortDenoiser, ddim);
await new DdimReconstructor(ortDenoiser, { ...ddim, steps: 2 }).reconstruct(latents, hint, opts);
const ortRuns = [];
for (let i = 0; i < runs; i++) ortRuns.push(await time(() => ort.reconstruct(latents, hint, opts)));
const ortWall = median(ortRuns.map((r) => r.wall));
console.log(
  `ORT 10-step DDIM, batch ${batch}: runs ${ortRuns.map((r) => `${r.wall.toFixed(2)} s (CPU ${r.cpu.toFixed(2)} s)`).join(', ')} -> median ${(batch / ortWall).toFixed(2)} images/s (${(ortWall / 10).toFixed(3)} s per SGN+UNet forward)`,
);
await ortDenoiser.release();
rmSync(dir, { recursive: true, force: true });

let tfjsImagesPerS = null;
if (process.env.BENCH_SKIP_TFJS !== '1') {
  const rec = new DdimReconstructor(d, ddim);
  await new DdimReconstructor(d, { ...ddim, steps: 2 }).reconstruct(latents, hint, opts);
  const r = await time(() => rec.reconstruct(latents, hint, opts));
  tfjsImagesPerS = batch / r.wall;
  console.log(
    `tfjs (${formatEngineInfo(info)}) 10-step DDIM, batch ${batch}: ${r.wall.toFixed(2)} s (CPU ${r.cpu.toFixed(2)} s) -> ${tfjsImagesPerS.toFixed(2)} images/s`,
  );
}
d.dispose();
console.log(
  JSON.stringify({
    preset: 'tiny',
    hint_widths: 'official',
    attention_resolutions: config.unet.attention_resolutions,
    batch,
    gflop_per_image: gflopPerImage,
    ddim10_images_per_s: { tfjs: tfjsImagesPerS, ort: batch / ortWall },
    pytorch_yardstick_images_per_s: 2.3,
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  }),
);
