// Overfits the `tiny` preset (trained from scratch: groups `all`) on a few latents whose content is
// a function of their hint image, and prints the loss curve, a fixed-(t, noise) eps-MSE and the
// reconstruction error of 10-step DDIM from t_start 999 before and after.
// Usage: node bench/overfit.mjs [updates=80] [batch=4]
import { Rng, tensor } from '@diad/core';
import { initTfjs, formatEngineInfo } from '@diad/core/tfjs';
import { DdimReconstructor, DiadDenoiser, DiadTrainer, preset } from '../dist/index.js';

const updates = Number(process.argv[2] ?? 80);
const n = Number(process.argv[3] ?? 4);
const info = await initTfjs();
console.log(`engine: ${formatEngineInfo(info)}`);
const config = preset('tiny');
const hw = config.unet.image_size;
const H = hw * 8;
const rng = new Rng(7);
// Smooth random hint images (sums of a few low-frequency waves); latents = their 8x8 block means
// (3 channels) plus the channel mean, standardised: the SG network can read the latent off the hint.
const hint = new Float32Array(n * 3 * H * H);
for (let b = 0; b < n; b++) for (let c = 0; c < 3; c++) {
  const w = Array.from({ length: 3 }, () => [rng.uniform() * 6, rng.uniform() * 6, rng.uniform() * 6.28, rng.normal()]);
  for (let y = 0; y < H; y++) for (let x = 0; x < H; x++) {
    hint[((b * 3 + c) * H + y) * H + x] = w.reduce((s, [fx, fy, ph, a]) => s + a * Math.sin((fx * x + fy * y) / H * 6.28 + ph), 0);
  }
}
const lat = new Float32Array(n * 4 * hw * hw);
for (let b = 0; b < n; b++) for (let y = 0; y < hw; y++) for (let x = 0; x < hw; x++) {
  let m = 0;
  for (let c = 0; c < 3; c++) {
    let s = 0;
    for (let dy = 0; dy < 8; dy++) for (let dx = 0; dx < 8; dx++) s += hint[((b * 3 + c) * H + y * 8 + dy) * H + x * 8 + dx];
    lat[((b * 4 + c) * hw + y) * hw + x] = s / 64;
    m += s / 64 / 3;
  }
  lat[((b * 4 + 3) * hw + y) * hw + x] = m;
}
const std = Math.sqrt(lat.reduce((s, v) => s + v * v, 0) / lat.length);
const latents = tensor(lat.map((v) => v / std), [n, 4, hw, hw], 'NCHW');
const hints = tensor(hint, [n, 3, H, H], 'NCHW');

const d = await DiadDenoiser.create(config, 0);
const trainer = new DiadTrainer(d, { optimizer: { lr: 1e-3, warmupSteps: 5 }, groups: 'all', seed: 1 });
const evalT = [100, 300, 600, 900].slice(0, n).concat(new Array(Math.max(0, n - 4)).fill(500));
const evalNoise = tensor(new Rng(99).normals(latents.data.length), latents.shape, 'NCHW');
const evalLoss = async () => {
  const f = trainer.lossFn({ latents, hint: hints }, evalT, evalNoise)();
  const v = (await f.data())[0];
  f.dispose();
  return v;
};
const rec = new DdimReconstructor(d, { tStart: 999, steps: 10, eta: 0, schedule: 'official' });
const recMse = async () => {
  const out = await rec.reconstruct(latents, hints, { seed: 3 });
  return out.data.reduce((s, v, i) => s + (v - latents.data[i]) ** 2, 0) / out.data.length;
};
console.log(`tiny preset from scratch, ${n} latents [4, ${hw}, ${hw}], AdamW lr 1e-3 (warm-up 5), wd 0.01, ${updates} updates of batch ${n}`);
console.log(`before: fixed-(t, noise) eps-MSE ${(await evalLoss()).toFixed(4)}, 10-step DDIM reconstruction MSE ${(await recMse()).toFixed(4)} (latent variance 1)`);
const t0 = performance.now();
const window = [];
for (let i = 1; i <= updates; i++) {
  const r = await trainer.trainStep([{ latents, hint: hints }]);
  window.push(r.loss);
  if (i % 10 === 0) {
    console.log(`update ${i}: mean train loss of the last 10 ${(window.reduce((a, b) => a + b, 0) / window.length).toFixed(4)}, fixed eps-MSE ${(await evalLoss()).toFixed(4)}, ${((performance.now() - t0) / 1000 / i).toFixed(2)} s/update`);
    window.length = 0;
  }
}
console.log(`after: fixed-(t, noise) eps-MSE ${(await evalLoss()).toFixed(4)}, 10-step DDIM reconstruction MSE ${(await recMse()).toFixed(4)}`);
trainer.dispose();
d.dispose();
