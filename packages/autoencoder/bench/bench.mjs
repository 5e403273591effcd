// Throughput of the `tiny` AutoencoderKL preset (128 px, ch 32, f=8) on a tfjs engine (default
// wasm; DIAD_TFJS_ENGINE or --engine to change): encode, decode and training-step images/s.
// Usage: pnpm --filter @diad/autoencoder bench [-- --batch 2 --reps 2 --engine wasm]
// Training needs batch >= 2 until core's TfjsOps.attention handles N*heads = 1 in backward.
import { parseArgs } from 'node:util';
import { Rng, tensor } from '@diad/core';
import { formatEngineInfo, initTfjs, TfjsOps, Trainer } from '@diad/core/tfjs';
import { autoencoderLoss, createAutoencoderParams, downsampleFactor, PRESETS, tfjsAutoencoder } from '../dist/index.js';

const { values } = parseArgs({ options: { batch: { type: 'string', default: '2' }, reps: { type: 'string', default: '2' }, engine: { type: 'string' } } });
const batch = Number(values.batch),
  reps = Number(values.reps);
const info = await initTfjs({ engine: values.engine ?? process.env.DIAD_TFJS_ENGINE ?? 'wasm' });
console.log(formatEngineInfo(info));

const cfg = PRESETS.tiny;
const size = cfg.ddconfig.resolution;
const store = createAutoencoderParams(cfg, 0);
const stage = tfjsAutoencoder(store, cfg);
const images = tensor(new Rng(1).normals(batch * 3 * size * size), [batch, 3, size, size], 'NCHW');

async function time(label, fn, n = reps) {
  await fn(); // warm-up (kernel setup, first allocations)
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await fn();
  const s = (performance.now() - t0) / 1000 / n;
  console.log(`${label.padEnd(22)} ${(batch / s).toFixed(2).padStart(7)} images/s  (${(s * 1000).toFixed(0)} ms per batch of ${batch})`);
}

console.log(`AutoencoderKL tiny: ${size} px, ch ${cfg.ddconfig.ch}, ch_mult [${cfg.ddconfig.ch_mult}], ${store.count()} parameters, engine ${info.engine}`);
const z = await stage.encode(images);
await time('encode (mode)', () => stage.encode(images));
await time('decode', () => stage.decode(z));
// One AdamW step of the autoencoder loss (L1 + KL, `loss.ts`) with the official optimizer settings.
store.setTrainable(() => true, true);
const trainer = new Trainer(Object.fromEntries(store.names().map((n) => [n, store.get(n)])), { optimizer: { lr: 1e-4, betas: [0.5, 0.9], weightDecay: 0 } });
const ops = new TfjsOps(store);
const hw = size / downsampleFactor(cfg);
const noise = tensor(new Rng(2).normals(batch * cfg.embed_dim * hw * hw), [batch, cfg.embed_dim, hw, hw], 'NCHW');
await time('train step (enc+dec)', () => trainer.trainStep([() => autoencoderLoss(ops, cfg, ops.input(images), ops.input(noise), { klWeight: 1e-6 }).loss]), 1);
trainer.dispose();
store.dispose();
