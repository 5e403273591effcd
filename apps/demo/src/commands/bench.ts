import type { Command } from 'commander';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng, tensor, type HostTensor } from '@diad/core';
import { initTfjs, formatEngineInfo, ParamStore } from '@diad/core/tfjs';
import { exportAutoencoderOnnx, OrtAutoencoder, parseAutoencoderConfig, paramSpec as autoencoderParamSpec, DEFAULT_PREFIX as AE_PREFIX } from '@diad/autoencoder';
import { DdimReconstructor, DiadDenoiser, exportDenoiserOnnx, hostContext, OrtDdimReconstructor, parseDiadConfig, OFFICIAL_HINT_WIDTHS } from '@diad/sg-diffusion';
import { resolveConfig } from '../pipeline/config.js';
import { featureExtractor } from '../pipeline/models.js';
import { scoreImages } from '../pipeline/score.js';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Wall seconds of `f`, `runs` times after one warm-up call of `warm`. */
async function timed(runs: number, warm: () => Promise<unknown>, f: () => Promise<unknown>): Promise<number[]> {
  await warm();
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await f();
    out.push((performance.now() - t0) / 1000);
  }
  return out;
}

/**
 * `diad bench --preset tiny --batch 8 [--runs 3] [--json]`: speed of test-time reconstruction with
 * random weights of a preset's sizes (the logic of `packages/sg-diffusion/bench/ort-bench.mjs`):
 * 10-step DDIM (tStart 999) images/s on tfjs (DdimReconstructor) and onnxruntime-node
 * (OrtDdimReconstructor on the exported graphs), and the whole test-time scoring per image on ort
 * (encode, the preset's DDIM, decode, feature extractor, anomaly map). Each figure is the median of
 * `--runs` runs after a warm-up. GFLOP per image counts the hint block and 10 steps. By default
 * the SG network uses the official hint widths, as the PyTorch yardstick of the issue.
 */
export function register(program: Command): void {
  program
    .command('bench')
    .description('benchmark DDIM reconstruction on tfjs and onnxruntime-node (random weights of a preset)')
    .option('--preset <name>', 'size preset', 'tiny')
    .option('--batch <n>', 'images per batch', '8')
    .option('--runs <n>', 'timed runs per figure (median), after one warm-up', '3')
    .option('--hint-widths <w>', 'official | preset', 'official')
    .option('--skip-tfjs', 'do not time the tfjs engine (it is about 10x slower)')
    .option('--json', 'print only the JSON line on stdout')
    .action(async (f: { preset: string; batch: string; runs: string; hintWidths: string; skipTfjs?: boolean; json?: boolean }) => {
      const log = (l: string) => process.stderr.write(l + '\n');
      const batch = Number(f.batch);
      const runs = Number(f.runs);
      if (!(batch >= 1 && runs >= 1)) throw new Error('--batch and --runs must be positive integers');
      if (!['official', 'preset'].includes(f.hintWidths)) throw new Error(`--hint-widths ${f.hintWidths}: use official or preset`);
      const cfg = resolveConfig(f.preset, { roots: ['(bench: random weights, no data)'] });
      cfg.testBatchSize = batch;
      if (f.hintWidths === 'official') cfg.models.diad.hint_widths = [...OFFICIAL_HINT_WIDTHS];
      const aeCfg = parseAutoencoderConfig(cfg.models.autoencoder, `preset ${f.preset}`);
      const dCfg = parseDiadConfig(cfg.models.diad, `preset ${f.preset}`);
      const info = await initTfjs();
      const d = await DiadDenoiser.create(dCfg, 0);
      const aeStore = ParamStore.create(autoencoderParamSpec(aeCfg, AE_PREFIX), 0);
      const dir = mkdtempSync(join(tmpdir(), 'diad-bench-'));
      try {
        const size = cfg.data.imageSize;
        const hw = size / 2 ** (aeCfg.ddconfig.ch_mult.length - 1);
        const params = await d.store.toHost();
        const context = hostContext(dCfg, params, null, 1);
        const den = await exportDenoiserOnnx(dir, dCfg, params, { latentHeight: hw, latentWidth: hw, contextTokens: context.shape[1] });
        const aeFiles = await exportAutoencoderOnnx(dir, aeCfg, await aeStore.toHost(), { height: size, width: size });
        const flops = den.flopsPerImage!;
        const gflop = (flops.hint + 10 * flops.step) / 1e9;
        const rng = new Rng(1);
        const latents = tensor(rng.normals(batch * 4 * hw * hw), [batch, 4, hw, hw], 'NCHW');
        const images: HostTensor = tensor(rng.normals(batch * 3 * size * size), [batch, 3, size, size], 'NCHW');
        const ddim10 = { tStart: 999, steps: 10, eta: 0, schedule: 'official' as const, seed: 0 };
        const warmOpts = { ...ddim10, steps: 2 };

        const ort = await OrtDdimReconstructor.open(den, context);
        const ortAe = await OrtAutoencoder.open(aeFiles, aeCfg);
        const fe = await featureExtractor(cfg);
        let ortRuns: number[];
        let testRuns: number[];
        try {
          ortRuns = await timed(runs, () => ort.reconstruct(latents, images, warmOpts), () => ort.reconstruct(latents, images, ddim10));
          log(`ort 10-step DDIM, batch ${batch}: ${ortRuns.map((s) => s.toFixed(2)).join(', ')} s`);
          const stages = { autoencoder: ortAe, reconstructor: ort, featureExtractor: fe };
          testRuns = await timed(runs, () => scoreImages(stages, images, cfg, 0), () => scoreImages(stages, images, cfg, 0));
          log(`ort test-time scoring (${cfg.ddim.steps} DDIM steps from t=${cfg.ddim.tStart}), batch ${batch}: ${testRuns.map((s) => s.toFixed(2)).join(', ')} s`);
        } finally {
          await ort.release();
          await ortAe.release();
          (fe as { dispose?: () => void }).dispose?.();
        }
        let tfjs: number | null = null;
        if (!f.skipTfjs) {
          const rec = new DdimReconstructor(d);
          const t = await timed(runs, () => rec.reconstruct(latents, images, warmOpts), () => rec.reconstruct(latents, images, ddim10));
          log(`tfjs (${formatEngineInfo(info)}) 10-step DDIM, batch ${batch}: ${t.map((s) => s.toFixed(2)).join(', ')} s`);
          tfjs = batch / median(t);
        }
        const result = {
          preset: f.preset,
          batch,
          hint_widths: f.hintWidths,
          gflop_per_image: gflop,
          ddim10_images_per_s: { tfjs, ort: batch / median(ortRuns) },
          ddim10_limit_images_per_s_at_530_gflops: 530 / gflop,
          test_ms_per_image: (1000 * median(testRuns)) / batch,
          runs,
          peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
        };
        if (!f.json) log(`10-step DDIM: ${gflop.toFixed(2)} GFLOP per image; PyTorch yardstick 2.3 images/s (2 threads)`);
        process.stdout.write(JSON.stringify(result) + '\n');
      } finally {
        d.dispose();
        aeStore.dispose();
        rmSync(dir, { recursive: true, force: true });
      }
    });
}
