import type { Command } from 'commander';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DdimReconstructor, DiffusionSchedule, Rng, scoreImages, tensor, type HostTensor } from '@diad/core';
import { initTfjs, formatEngineInfo, ParamStore, WASM_HEAP_BYTES } from '@diad/core/tfjs';
import { configuredAutoencoder, DEFAULT_PREFIX as AE_PREFIX } from '@diad/autoencoder';
import {
  DiadDenoiser,
  exportDenoiserOnnx,
  hostContext,
  parseDiadConfig,
  recordDenoiserTraining,
  trainableFilter,
  OFFICIAL_HINT_WIDTHS,
  createReconstructor,
  CLIP_VIT_L14_TEXT,
  diadParamSpec,
  parameterCount,
} from '@diad/sg-diffusion';
import { OrtGuidedDenoiser, OrtTrainer } from '@diad/core/ort';
import {
  availableMemory,
  denoiserWeightBytes,
  estimateTrainingMemory,
  formatTrainingMemory,
  resolveConfig,
  stepBenchmark,
  type TrainingMemory,
} from '@diad/pipeline';
import { denoiserProblem, describeSampler, noisedBatch, openFeatureExtractor, tfjsStageTrainer, type StageBatch } from '@diad/pipeline';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * float32 peak of the 2-core development machine (AMD EPYC with AVX-512: 2 cores x 2 FMA units x 16
 * lanes x 2 FLOP x ~4.1 GHz); `--peak-gflops` for another machine.
 */
const DEV_PEAK_GFLOPS = 530;

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
 * (DdimReconstructor over OrtGuidedDenoiser on the exported graphs), and the whole test-time scoring per image on ort
 * (encode, the preset's DDIM, decode, feature extractor, anomaly map). Each figure is the median of
 * `--runs` runs after a warm-up. GFLOP per image counts the hint block and 10 steps. By default
 * the SG network uses the official hint widths, as the PyTorch yardstick of the issue.
 * Training: images/s of one AdamW step of the SG network + UNet (official trainable groups: SG
 * network, UNet output blocks and `out`) at batch `--batch`, on ort (`OrtTrainer` on the recorded
 * training graph) and tfjs (the pipeline's tfjs stage trainer), and ort's fraction of the CPU's float32 peak.
 * A preset too big for tfjs (`sd15`) gets {@link largeModelBench} instead: one DDIM step's time
 * and peak RSS on ort, and the training-memory estimate.
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
    .option('--peak-gflops <n>', `the CPU's float32 peak, for the fraction of peak (default ${DEV_PEAK_GFLOPS}: the 2-core development machine)`)
    .option('--json', 'print only the JSON line on stdout')
    .action(async (f: { preset: string; batch: string; runs: string; hintWidths: string; skipTfjs?: boolean; peakGflops?: string; json?: boolean }) => {
      const log = (l: string) => process.stderr.write(l + '\n');
      const batch = Number(f.batch);
      const runs = Number(f.runs);
      if (!(batch >= 1 && runs >= 1)) throw new Error('--batch and --runs must be positive integers');
      if (!['official', 'preset'].includes(f.hintWidths)) throw new Error(`--hint-widths ${f.hintWidths}: use official or preset`);
      const peak = f.peakGflops === undefined ? DEV_PEAK_GFLOPS : Number(f.peakGflops);
      if (!(peak > 0)) throw new Error(`--peak-gflops ${f.peakGflops}: give the CPU's float32 peak in GFLOP/s, a positive number`);
      const cfg = resolveConfig(f.preset, { roots: ['(bench: random weights, no data)'] });
      const settings = { ...cfg.inference, batchSize: batch };
      if (f.hintWidths === 'official') cfg.models.diad.hint_widths = [...OFFICIAL_HINT_WIDTHS];
      const { kind: aeKind, config: aeCfg } = configuredAutoencoder(cfg.models.autoencoder, `preset ${f.preset}`);
      const dCfg = parseDiadConfig(cfg.models.diad, `preset ${f.preset}`);
      if (denoiserWeightBytes(dCfg) > WASM_HEAP_BYTES) {
        await largeModelBench(f.preset, cfg, dCfg, cfg.data.imageSize / aeKind.downsampleFactor(aeCfg), batch, runs, peak, log);
        return;
      }
      const info = await initTfjs();
      const d = await DiadDenoiser.create(dCfg, 0);
      let disposed = false; // the tfjs training bench's trainer frees the denoiser
      const aeStore = ParamStore.create(aeKind.paramSpec(aeCfg, AE_PREFIX), 0);
      const dir = mkdtempSync(join(tmpdir(), 'diad-bench-'));
      try {
        const size = cfg.data.imageSize;
        const hw = size / aeKind.downsampleFactor(aeCfg);
        const params = await d.store.toHost();
        const context = hostContext(dCfg, params, null, 1);
        const den = await exportDenoiserOnnx(dir, dCfg, params, { latentHeight: hw, latentWidth: hw, contextTokens: context.shape[1] });
        const aeFiles = await aeKind.exportOnnx(dir, aeCfg, await aeStore.toHost(), { height: size, width: size });
        const flops = den.flopsPerImage!;
        const gflop = (flops.hint + 10 * flops.step) / 1e9;
        const rng = new Rng(1);
        const latents = tensor(rng.normals(batch * 4 * hw * hw), [batch, 4, hw, hw], 'NCHW');
        const images: HostTensor = tensor(rng.normals(batch * 3 * size * size), [batch, 3, size, size], 'NCHW');
        const ddim10 = { tStart: 999, steps: 10, eta: 0, schedule: 'official' as const };
        const seed = { seed: 0 };

        const ortDenoiser = await OrtGuidedDenoiser.open(den, context);
        const ort = new DdimReconstructor(ortDenoiser, ddim10);
        const ortWarm = new DdimReconstructor(ortDenoiser, { ...ddim10, steps: 2 });
        const ortAe = await aeKind.openOnnx(aeFiles, aeCfg);
        const fe = await openFeatureExtractor({ engineName: 'ort', imageSize: size }, settings);
        let ortRuns: number[];
        let testRuns: number[];
        try {
          ortRuns = await timed(
            runs,
            () => ortWarm.reconstruct(latents, images, seed),
            () => ort.reconstruct(latents, images, seed),
          );
          log(`ort 10-step DDIM, batch ${batch}: ${ortRuns.map((s) => s.toFixed(2)).join(', ')} s`);
          const stages = { autoencoder: ortAe, reconstructor: createReconstructor(settings.reconstructor, ortDenoiser), featureExtractor: fe.extractor };
          testRuns = await timed(
            runs,
            () => scoreImages(stages, images, settings, 0),
            () => scoreImages(stages, images, settings, 0),
          );
          log(`ort test-time scoring (${describeSampler(settings)}), batch ${batch}: ${testRuns.map((s) => s.toFixed(2)).join(', ')} s`);
        } finally {
          await ortDenoiser.release();
          await ortAe.release();
          await fe.dispose();
        }
        const train = await trainingBench(dCfg, d, params, context, latents, images, runs, log);
        let tfjs: number | null = null;
        let tfjsTrain: number | null = null;
        if (!f.skipTfjs) {
          const rec = new DdimReconstructor(d, ddim10);
          const warm = new DdimReconstructor(d, { ...ddim10, steps: 2 });
          const t = await timed(
            runs,
            () => warm.reconstruct(latents, images, seed),
            () => rec.reconstruct(latents, images, seed),
          );
          log(`tfjs (${formatEngineInfo(info)}) 10-step DDIM, batch ${batch}: ${t.map((s) => s.toFixed(2)).join(', ')} s`);
          tfjs = batch / median(t);
          // What `diad fit --engine tfjs` runs for the SG stage: the pipeline's tfjs stage trainer on the same batch.
          const feeds: StageBatch = { ...noisedBatch(new Rng(2), latents, new DiffusionSchedule(), dCfg.unet.model_channels), hint: images };
          const sc = { steps: 1, batchSize: batch, lr: 1e-5, checkpointEvery: 1 };
          const trainer = tfjsStageTrainer(
            denoiserProblem('sg', sc, dCfg, d, trainableFilter('official'), () => feeds, hw, dCfg.context.kind === 'file' ? context : null),
          );
          const step = () => trainer.step(0);
          const tt = await timed(runs, step, step);
          trainer.dispose(); // frees the denoiser's parameters too
          disposed = true;
          log(`tfjs (${formatEngineInfo(info)}) training step, batch ${batch}: ${tt.map((s) => s.toFixed(2)).join(', ')} s`);
          tfjsTrain = batch / median(tt);
        }
        const result = {
          preset: f.preset,
          batch,
          hint_widths: f.hintWidths,
          gflop_per_image: gflop,
          ddim10_images_per_s: { tfjs, ort: batch / median(ortRuns) },
          ddim10_fraction_of_peak: ((batch / median(ortRuns)) * gflop) / peak,
          train_images_per_s: { tfjs: tfjsTrain, ort: train.imagesPerSecond },
          train_gflop_per_image: train.gflopPerImage,
          train_fraction_of_peak: (train.imagesPerSecond * train.gflopPerImage) / peak,
          peak_gflops: peak,
          test_ms_per_image: (1000 * median(testRuns)) / batch,
          runs,
          peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
        };
        if (!f.json) log(`10-step DDIM: ${gflop.toFixed(2)} GFLOP per image; PyTorch yardstick 2.3 images/s (2 threads)`);
        process.stdout.write(JSON.stringify(result) + '\n');
      } finally {
        if (!disposed) d.dispose();
        aeStore.dispose();
        rmSync(dir, { recursive: true, force: true });
      }
    });
}

const GIB = 2 ** 30;
const inGib = (m: TrainingMemory) =>
  Object.fromEntries(Object.entries(m).map(([k, v]) => [k, k === 'batch' ? v : Number((v / GIB).toFixed(2))])) as Record<keyof TrainingMemory, number>;

/**
 * The bench of a denoiser too big for tfjs (`sd15`): one DDIM step (one run of the step graph:
 * SG network + UNet) at `batch` on onnxruntime-node with external-data weights, its time and the
 * peak RSS of the process that ran it (`stepBenchmark`: random weights of the official shapes in
 * a temporary folder, removed afterwards), and the training-memory estimate at batch 1 and 12
 * (`estimateTrainingMemory`: what `diad fit` checks before it starts).
 */
async function largeModelBench(
  preset: string,
  cfg: ReturnType<typeof resolveConfig>,
  dCfg: ReturnType<typeof parseDiadConfig>,
  latentSize: number,
  batch: number,
  runs: number,
  peak: number,
  log: (l: string) => void,
): Promise<void> {
  const contextTokens = dCfg.context.kind === 'learned' ? dCfg.context.tokens : CLIP_VIT_L14_TEXT.max_position_embeddings;
  log(
    `${preset}: ${(parameterCount(diadParamSpec(dCfg)) / 1e6).toFixed(1)} M denoiser parameters, more than tfjs-wasm holds: ` +
      'timing one DDIM step on onnxruntime-node only (random weights written to a temporary folder first, about 5.3 GB)',
  );
  const r = await stepBenchmark(dCfg, { latentSize, contextTokens, batch, runs });
  const step = median(r.step.stepSeconds);
  log(
    `export: ${(r.export.weightBytes / GIB).toFixed(2)} GiB of weights in ${r.export.seconds.toFixed(0)} s (peak RSS ${r.export.peakRssMb} MB); ` +
      `sessions opened in ${r.step.openSeconds.toFixed(0)} s (RSS ${r.step.rssAfterOpenMb} MB); hint block ${r.step.hintSeconds.toFixed(2)} s; ` +
      `DDIM step, batch ${batch}: ${r.step.stepSeconds.map((x) => x.toFixed(2)).join(', ')} s`,
  );
  const train = { batch1: await estimateTrainingMemory(cfg, 1), batch12: await estimateTrainingMemory(cfg, 12) };
  const seen = availableMemory();
  log(
    `training memory (SG stage, estimate): ${formatTrainingMemory(train.batch1)}; ${formatTrainingMemory(train.batch12)}; this machine offers ${(seen.bytes / GIB).toFixed(1)} GiB`,
  );
  const gflop = r.export.flops.step / 1e9;
  const result = {
    preset,
    batch,
    engine: 'onnxruntime-node (external-data weights)',
    weights_gib: Number((r.export.weightBytes / GIB).toFixed(2)),
    gflop_per_step_image: gflop,
    ddim_step_s: step,
    ddim10_images_per_s: batch / (10 * step + r.step.hintSeconds),
    ddim_step_fraction_of_peak: (batch * gflop) / step / peak,
    hint_s: r.step.hintSeconds,
    session_open_s: r.step.openSeconds,
    step_peak_rss_mb: r.step.peakRssMb,
    export_peak_rss_mb: r.export.peakRssMb,
    train_memory_gib: { batch1: inGib(train.batch1), batch12: inGib(train.batch12) },
    memory_seen_gib: Number((seen.bytes / GIB).toFixed(1)),
    runs,
    peak_gflops: peak,
  };
  process.stdout.write(JSON.stringify(result) + '\n');
}

/**
 * ort training throughput: the SG network + UNet training graph (official trainable groups) at
 * the batch of `latents`, median of `runs` AdamW steps after two warm-up steps (onnxruntime's first
 * runs size its memory arenas).
 */
async function trainingBench(
  dCfg: ReturnType<typeof parseDiadConfig>,
  _d: DiadDenoiser,
  params: Record<string, HostTensor<'float32'>>,
  context: HostTensor,
  latents: HostTensor,
  images: HostTensor,
  runs: number,
  log: (l: string) => void,
): Promise<{ imagesPerSecond: number; gflopPerImage: number }> {
  const [batch, , hw] = latents.shape;
  const trainable = trainableFilter('official');
  const graph = recordDenoiserTraining(dCfg, params, { batch, latentHeight: hw, latentWidth: hw, guided: true, trainable, contextTokens: context.shape[1] });
  const feeds: StageBatch = { ...noisedBatch(new Rng(2), latents, new DiffusionSchedule(), dCfg.unet.model_channels), hint: images };
  if (dCfg.context.kind === 'file') feeds.context = hostContext(dCfg, params, context, batch);
  const trainer = await OrtTrainer.open(graph, params, { optimizer: { lr: 1e-5 } });
  try {
    const step = () => trainer.trainStep([feeds]);
    const s = await timed(
      runs,
      async () => {
        await step();
        await step();
      },
      step,
    );
    log(`ort training step (SG network + UNet, ${graph.trainable.length} trainable tensors), batch ${batch}: ${s.map((x) => x.toFixed(2)).join(', ')} s`);
    return { imagesPerSecond: batch / median(s), gflopPerImage: (graph.flops.forward + graph.flops.backward) / batch / 1e9 };
  } finally {
    await trainer.release();
  }
}
