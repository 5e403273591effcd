// Benchmark of the `tiny` preset on the tfjs engine chosen by initTfjs (DIAD_TFJS_ENGINE to override):
// training images/s (AdamW updates, official trainable groups) and 10-step DDIM reconstruction images/s.
// BENCH_BATCH (8), BENCH_TRAIN_STEPS (4), BENCH_OFFICIAL_HINT=1 for the official hint widths (like the
// PyTorch yardstick). Prints wall and process CPU seconds (the machine is shared; CPU time is steadier).
import { Rng, tensor } from '@diad/core';
import { initTfjs, formatEngineInfo, Trainer } from '@diad/core/tfjs';
import {
  DdimReconstructor,
  DiadDenoiser,
  DiffusionSchedule,
  denoiserEps,
  epsLoss,
  preset,
  parameterCount,
  diadParamSpec,
  timestepEmbedding,
  OFFICIAL_HINT_WIDTHS,
} from '../dist/index.js';

const batch = Number(process.env.BENCH_BATCH ?? 8);
const trainSteps = Number(process.env.BENCH_TRAIN_STEPS ?? 4);
const info = await initTfjs();
const config = preset('tiny');
if (process.env.BENCH_OFFICIAL_HINT === '1') config.hint_widths = [...OFFICIAL_HINT_WIDTHS];
const d = await DiadDenoiser.create(config, 0);
const hw = config.unet.image_size;
const rng = new Rng(1);
const latents = tensor(rng.normals(batch * 4 * hw * hw), [batch, 4, hw, hw], 'NCHW');
const hint = tensor(rng.normals(batch * 3 * hw * 8 * hw * 8), [batch, 3, hw * 8, hw * 8], 'NCHW');

console.log(`engine: ${formatEngineInfo(info)}`);
console.log(
  `tiny preset (hint widths ${config.hint_widths.join(',')}): ${(parameterCount(diadParamSpec(config)) / 1e6).toFixed(2)} M parameters, ${hw * 8} px images, ${hw}x${hw} latents, batch ${batch}`,
);

// One AdamW update of the eps-MSE (`loss.ts`) over the official trainable groups, at fixed timesteps and noise.
const vars = d.setTrainable('official');
const trainer = new Trainer(Object.fromEntries(d.store.trainableNames().map((n, i) => [n, vars[i]])), { optimizer: { lr: 1e-4 } });
const t = Array.from({ length: batch }, (_, i) => (i * 997) % 1000);
const noise = tensor(rng.normals(latents.data.length), latents.shape, 'NCHW');
const [xt, tEmb] = [new DiffusionSchedule().qSample(latents, t, noise), timestepEmbedding(t, config.unet.model_channels)];
const ops = d.ops;
const step = () =>
  trainer.trainStep([() => epsLoss(ops, denoiserEps(ops, config, ops.input(xt), ops.input(hint), ops.input(tEmb), d.context(batch)), ops.input(noise))]);
await step(); // warm-up (kernel compilation, optimizer state)
const cpuSeconds = (c0) => {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1e6;
};
let c0 = process.cpuUsage();
let t0 = performance.now();
for (let i = 0; i < trainSteps; i++) await step();
const train = (performance.now() - t0) / 1000 / trainSteps;
console.log(
  `training: ${(train).toFixed(3)} s per step of ${batch} (CPU ${(cpuSeconds(c0) / trainSteps).toFixed(3)} s) -> ${(batch / train).toFixed(2)} images/s`,
);

const ddim = { tStart: 999, steps: 10, eta: 0, schedule: 'official' };
const rec = new DdimReconstructor(d, ddim);
const opts = { seed: 0 };
await new DdimReconstructor(d, { ...ddim, steps: 1 }).reconstruct(latents, hint, opts);
c0 = process.cpuUsage();
t0 = performance.now();
await rec.reconstruct(latents, hint, opts);
const recon = (performance.now() - t0) / 1000;
console.log(
  `10-step DDIM reconstruction: ${recon.toFixed(3)} s for ${batch} (CPU ${cpuSeconds(c0).toFixed(3)} s) -> ${(batch / recon).toFixed(2)} images/s (${(recon / 10).toFixed(3)} s per SGN+UNet forward)`,
);
trainer.dispose();
d.dispose();
