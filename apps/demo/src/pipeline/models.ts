/**
 * The models of a run on the tfjs engine, built from the run config: the three stage trainers of
 * `diad fit` and the inference stages of `diad test` / `predict`.
 *
 * Each trainer draws its batch, timesteps and noise from `Rng(seed, stream + step)`, so a resumed
 * stage repeats exactly what an uninterrupted one would do; a checkpoint holds every parameter of
 * the stage's model (official names and layouts) plus the AdamW state under `optimizer.`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Rng, tensor, type HostTensor, type SafetensorsFile, type WritableTensor, sliceBatch, concatBatch, readSafetensors } from '@diad/core';
import { initTfjs, ParamStore, TfjsOps, Trainer, type ParamFilter } from '@diad/core/tfjs';
import {
  parseAutoencoderConfig, paramSpec as autoencoderParamSpec, encodeMoments, decodeLatent, posterior, samplePosterior, tfjsAutoencoder,
  DEFAULT_PREFIX as AE_PREFIX, type AutoencoderConfig,
} from '@diad/autoencoder';
import {
  parseDiadConfig, DiadDenoiser, DdimReconstructor, DiffusionSchedule, copyUnetEncoderToSgn, controlledUnet, hintBlock, timestepEmbedding,
  trainableFilter, UNET_PREFIX, LEARNED_CONTEXT, hostContext, readConstantContext, type DiadConfig,
} from '@diad/sg-diffusion';
import { TfjsFeatureExtractor, OnnxFeatureExtractor, DEFAULT_BACKBONE, type TfjsBackboneName } from '@diad/feature-extractor';
import type { FeatureExtractor } from '@diad/core';
import type { RunConfig, StageConfig } from './config.js';
import type { RunDir, StageName } from './run-dir.js';
import type { StageTrainer } from './train-loop.js';
import type { Stages } from './score.js';
import { batchIndices, gather } from './batching.js';

/** A stage trainer that owns engine memory. */
export type DisposableTrainer = StageTrainer & { dispose(): void };

/** Prefix of the optimiser state in a checkpoint (`optimizer.exp_avg.<param>`, `optimizer.exp_avg_sq.<param>`). */
const OPT = 'optimizer.';

/** Per-stage stream offsets of `Rng(seed, stream + step)`. */
const STREAM: Record<StageName, number> = { autoencoder: 1_000_000, diffusion: 2_000_000, sg: 3_000_000 };

export interface Models {
  /** Engine description, e.g. `tfjs wasm (1 thread, simd)`. */
  engine: string;
  autoencoderTrainer(images: HostTensor): Promise<DisposableTrainer>;
  /** Scaled latents (posterior mode) of the train images, from the stage-1 (or `--init`) autoencoder. */
  encodeTrain(images: HostTensor): Promise<HostTensor>;
  diffusionTrainer(latents: HostTensor): Promise<DisposableTrainer>;
  sgTrainer(latents: HostTensor, images: HostTensor): Promise<DisposableTrainer>;
  /** Autoencoder, DDIM reconstructor and feature extractor of the finished run. */
  inferenceStages(): Promise<Stages & { dispose(): void }>;
  /** Host parameters of the finished run (official names) and its context `[1, L, D]`, for ONNX export. */
  inferenceParams(): Promise<InferenceParams>;
  dispose(): void;
}

/** What the ONNX export of a finished run needs. */
export interface InferenceParams {
  autoencoderConfig: AutoencoderConfig;
  diadConfig: DiadConfig;
  autoencoder: Record<string, HostTensor<'float32'>>;
  denoiser: Record<string, HostTensor<'float32'>>;
  /** Cross-attention context of one item `[1, L, D]`. */
  context: HostTensor<'float32'>;
}

/**
 * Wraps core's `Trainer` (AdamW, NaN guard) as a resumable stage trainer over a `ParamStore`.
 * @param loss builds the scalar loss of step `step` (called inside `variableGrads`).
 */
function stageTrainer(store: ParamStore, trainable: ParamFilter, cfg: StageConfig, stage: StageName, loss: (step: number) => () => tf.Scalar): DisposableTrainer {
  store.setTrainable(() => true, false);
  store.setTrainable(trainable, true);
  const names = store.names(trainable);
  const variables = Object.fromEntries(names.map((n) => [n, store.get(n)]));
  const trainer = new Trainer(variables, { optimizer: { lr: cfg.lr, weightDecay: 0.01 }, config: { stage, ...cfg } });
  return {
    batchSize: cfg.batchSize,
    async step(step: number): Promise<number> {
      try {
        return (await trainer.trainStep([loss(step)])).loss;
      } catch (e) {
        // core's Trainer refuses non-finite losses/gradients before updating; the loop reports the step.
        if (/non-finite/.test((e as Error).message)) return NaN;
        throw e;
      }
    },
    async state(): Promise<Record<string, WritableTensor>> {
      const out: Record<string, WritableTensor> = await store.toHost();
      for (const [n, t] of Object.entries(trainer.optimizer.stateTensors())) out[OPT + n] = tensor((await t.data()) as Float32Array, t.shape);
      out[`${OPT}step`] = tensor(new Float32Array([trainer.optimizer.step]), [1]);
      return out;
    },
    async load(file: SafetensorsFile): Promise<void> {
      const report = store.load(file, { strict: false });
      const lacking = report.missing;
      if (lacking.length) throw new Error(`${file.source}: checkpoint lacks ${lacking.length} parameters of stage ${stage} (${lacking.slice(0, 5).join(', ')}...); the run folder is damaged`);
      const state: Record<string, HostTensor<'float32'>> = {};
      for (const n of file.names()) if (n.startsWith(OPT) && n !== `${OPT}step`) state[n.slice(OPT.length)] = file.float32(n);
      trainer.optimizer.loadState(file.float32(`${OPT}step`).data[0], state, variables);
    },
    dispose(): void {
      trainer.dispose();
      store.setTrainable(() => true, true);
    },
  };
}

/**
 * One random `size x size` crop per image of `[N, C, H, W]` (positions from `rng`).
 * @throws Error when the crop is larger than the images.
 */
export function randomCrop(t: HostTensor, size: number, rng: Rng): HostTensor {
  const [n, c, h, w] = t.shape;
  if (size > h || size > w) throw new Error(`autoencoder crop ${size} is larger than the ${h}x${w} images; lower stages.autoencoder.crop or set it to null`);
  const out = new Float32Array(n * c * size * size);
  for (let b = 0; b < n; b++) {
    const y0 = rng.int(0, h - size);
    const x0 = rng.int(0, w - size);
    for (let ch = 0; ch < c; ch++)
      for (let y = 0; y < size; y++) {
        const src = ((b * c + ch) * h + y0 + y) * w + x0;
        out.set(t.data.subarray(src, src + size), ((b * c + ch) * size + y) * size);
      }
  }
  return tensor(out, [n, c, size, size], t.layout);
}

/** `mean((eps_pred - eps)^2)` of engine tensors. */
const mse = (a: tf.Tensor, b: tf.Tensor): tf.Scalar => tf.mean(tf.squaredDifference(a, b)) as tf.Scalar;

/** Timesteps uniform in [0, T-1] and Gaussian noise of step `step` of a stage. */
function draw(rng: Rng, n: number, latentShape: readonly number[], T: number): { t: number[]; noise: HostTensor } {
  const t = Array.from({ length: n }, () => rng.int(0, T - 1));
  const size = latentShape.slice(1).reduce((a, b) => a * b, 1) * n;
  return { t, noise: tensor(rng.normals(size), [n, ...latentShape.slice(1)], 'NCHW') };
}

/**
 * Builds the models of a run (selecting the tfjs engine first).
 * @throws Error from the packages' config parsers naming the invalid field, or a checkpoint error.
 */
export async function createModels(cfg: RunConfig, run: RunDir, log: (l: string) => void = () => {}): Promise<Models> {
  const info = await initTfjs();
  const engine = `tfjs ${info.engine}${info.threads ? ` (${info.threads} thread${info.threads > 1 ? 's' : ''}${info.simd ? ', simd' : ''})` : ''}`;
  const aeCfg: AutoencoderConfig = parseAutoencoderConfig(cfg.models.autoencoder, `${run.path('config.json')} models.autoencoder`);
  const dCfg: DiadConfig = parseDiadConfig(cfg.models.diad, `${run.path('config.json')} models.diad`);
  const schedule = new DiffusionSchedule();

  /** Autoencoder parameters: stage-1 checkpoint, else `--init`, else fresh (stage 1 starts from these). */
  const autoencoderStore = async (fresh: boolean): Promise<ParamStore> => {
    const store = ParamStore.create(autoencoderParamSpec(aeCfg, AE_PREFIX), cfg.seed);
    try {
      const st = await run.readStage('autoencoder');
      if (!fresh && st?.checkpoint) store.load(await run.loadCheckpoint('autoencoder'), { strict: false, prefix: AE_PREFIX });
      else if (!fresh && cfg.models.init) {
        // Official checkpoints may carry extra first_stage_model.* entries (e.g. loss modules); only missing ones matter.
        const { missing } = store.load(await readSafetensors(cfg.models.init), { prefix: AE_PREFIX, strict: false });
        if (missing.length) throw new Error(`${cfg.models.init}: --init checkpoint lacks ${missing.length} autoencoder parameters (${missing.slice(0, 5).join(', ')}, ...); it does not match models.autoencoder of the config`);
      }
      else if (!fresh && cfg.stages.autoencoder.steps > 0) throw new Error(`${run.dir}: stage 1 (autoencoder) has no checkpoint; run \`diad fit --resume ${run.dir}\` first`);
      return store;
    } catch (e) {
      store.dispose();
      throw e;
    }
  };

  /** The denoiser after `stage` (its checkpoint), else `--init`, else fresh. */
  const denoiserAfter = async (stage: 'diffusion' | 'sg'): Promise<DiadDenoiser> => {
    const st = await run.readStage(stage);
    if (st?.checkpoint) return DiadDenoiser.load(dCfg, run.path(st.checkpoint));
    if (cfg.models.init) return DiadDenoiser.load(dCfg, cfg.models.init);
    if (cfg.stages[stage].steps > 0) throw new Error(`${run.dir}: stage ${stage} has no checkpoint; run \`diad fit --resume ${run.dir}\` first`);
    return DiadDenoiser.create(dCfg, cfg.seed);
  };

  return {
    engine,

    async autoencoderTrainer(images) {
      const store = await autoencoderStore(true);
      const ops = new TfjsOps(store);
      const sc = cfg.stages.autoencoder;
      const t = stageTrainer(store, AE_PREFIX, sc, 'autoencoder', (step) => {
        const idx = batchIndices(step, images.shape[0], sc.batchSize, cfg.seed);
        const rng = new Rng(cfg.seed, STREAM.autoencoder + step);
        const x = sc.crop ? randomCrop(gather(images, idx), sc.crop, rng) : gather(images, idx);
        const f = 2 ** (aeCfg.ddconfig.ch_mult.length - 1);
        const zShape = [idx.length, aeCfg.embed_dim, x.shape[2] / f, x.shape[3] / f];
        const noise = tensor(rng.normals(zShape.reduce((a, b) => a * b, 1)), zShape, 'NCHW');
        const perImage = x.shape[1] * x.shape[2] * x.shape[3];
        // LDM's loss (ldm/modules/losses/contperceptual.py without discriminator): L1 summed per
        // image + kl_weight * KL summed per image, averaged over the batch; divided by the pixel
        // count so the logged loss reads as a mean absolute error (Adam is scale-invariant).
        return () => {
          const xin = ops.input(x);
          const p = posterior(ops, encodeMoments(ops, aeCfg, xin, AE_PREFIX));
          const rec = decodeLatent(ops, aeCfg, samplePosterior(ops, p, ops.input(noise)), AE_PREFIX);
          const l1 = tf.mean(tf.abs(tf.sub(rec, xin)));
          const kl = tf.mul(0.5, tf.sum(tf.sub(tf.add(tf.square(p.mean), tf.exp(p.logvar)), tf.add(1, p.logvar))));
          return tf.add(l1, tf.mul(kl, cfg.models.klWeight / (idx.length * perImage))) as tf.Scalar;
        };
      });
      return { ...t, dispose: () => { t.dispose(); store.dispose(); } };
    },

    async encodeTrain(images) {
      const store = await autoencoderStore(false);
      try {
        const ae = tfjsAutoencoder(store, aeCfg);
        const parts: HostTensor[] = [];
        for (let i = 0; i < images.shape[0]; i += cfg.testBatchSize) parts.push(await ae.encode(sliceBatch(images, i, Math.min(images.shape[0], i + cfg.testBatchSize))));
        return concatBatch(parts);
      } finally {
        store.dispose();
      }
    },

    async diffusionTrainer(latents) {
      // Stage 2 trains a plain UNet (no control) from scratch; the SG network is not used.
      const d = await DiadDenoiser.create(dCfg, cfg.seed);
      const sc = cfg.stages.diffusion;
      const trainable: ParamFilter = (n) => n.startsWith(UNET_PREFIX) || n === LEARNED_CONTEXT;
      const t = stageTrainer(d.store, trainable, sc, 'diffusion', (step) => {
        const idx = batchIndices(step, latents.shape[0], sc.batchSize, cfg.seed + 1);
        const z = gather(latents, idx);
        const { t: ts, noise } = draw(new Rng(cfg.seed, STREAM.diffusion + step), idx.length, z.shape, schedule.numTimesteps);
        const xt = schedule.qSample(z, ts, noise);
        return () => {
          const tEmb = d.ops.input(timestepEmbedding(ts, dCfg.unet.model_channels));
          const eps = controlledUnet(d.ops, dCfg.unet, d.ops.input(xt), tEmb, d.context(idx.length), null, dCfg.only_mid_control);
          return mse(eps, d.ops.input(noise));
        };
      });
      return { ...t, dispose: () => { t.dispose(); d.dispose(); } };
    },

    async sgTrainer(latents, images) {
      // Stage 3 starts from the stage-2 UNet with the SG network's encoder copied from it
      // (ControlNet's tool_add_control); a resumed stage 3 then loads its own checkpoint over it.
      const d = await denoiserAfter('diffusion');
      if (!cfg.models.init && !(await run.readStage('sg'))?.checkpoint) log(`stage 3: SG network initialised from the UNet encoder (${copyUnetEncoderToSgn(d.store)} tensors copied)`);
      const sc = cfg.stages.sg;
      const t = stageTrainer(d.store, trainableFilter('official'), sc, 'sg', (step) => {
        const idx = batchIndices(step, latents.shape[0], sc.batchSize, cfg.seed + 2);
        const z = gather(latents, idx);
        const hint = gather(images, idx);
        const { t: ts, noise } = draw(new Rng(cfg.seed, STREAM.sg + step), idx.length, z.shape, schedule.numTimesteps);
        const xt = schedule.qSample(z, ts, noise);
        return () => {
          const eps = d.epsTensor(d.ops.input(xt), hintBlock(d.ops, d.ops.input(hint)), ts, d.context(idx.length));
          return mse(eps, d.ops.input(noise));
        };
      });
      return { ...t, dispose: () => { t.dispose(); d.dispose(); } };
    },

    async inferenceStages() {
      const aeStore = await autoencoderStore(false);
      const denoiser = await denoiserAfter(cfg.stages.sg.steps > 0 ? 'sg' : 'diffusion').catch((e) => {
        aeStore.dispose();
        throw e;
      });
      const fe = await featureExtractor(cfg).catch((e) => {
        aeStore.dispose();
        denoiser.dispose();
        throw e;
      });
      return {
        autoencoder: tfjsAutoencoder(aeStore, aeCfg),
        reconstructor: new DdimReconstructor(denoiser, schedule),
        featureExtractor: fe,
        dispose() {
          aeStore.dispose();
          denoiser.dispose();
          (fe as { dispose?: () => void }).dispose?.();
        },
      };
    },

    async inferenceParams() {
      const aeStore = await autoencoderStore(false);
      try {
        const d = await denoiserAfter(cfg.stages.sg.steps > 0 ? 'sg' : 'diffusion');
        try {
          const denoiser = await d.store.toHost();
          const constant = dCfg.context.kind === 'file' ? await readConstantContext(dCfg.context.path, dCfg.context.tensor, dCfg.unet.context_dim) : null;
          return { autoencoderConfig: aeCfg, diadConfig: dCfg, autoencoder: await aeStore.toHost(), denoiser, context: hostContext(dCfg, denoiser, constant, 1) };
        } finally {
          d.dispose();
        }
      } finally {
        aeStore.dispose();
      }
    },

    dispose() {},
  };
}

/**
 * The configured feature extractor: a backbone shipped with @diad/feature-extractor (`default` =
 * its chosen default) or a user ONNX file.
 */
export async function featureExtractor(cfg: RunConfig): Promise<FeatureExtractor & { name?: string }> {
  const fe = cfg.featureExtractor;
  if (fe.kind === 'onnx') return OnnxFeatureExtractor.create(fe.path);
  const name = (fe.name === 'default' ? DEFAULT_BACKBONE : fe.name) as TfjsBackboneName;
  return TfjsFeatureExtractor.load(name);
}

/** A short description of the configured feature extractor for reports. */
export function featureExtractorName(cfg: RunConfig): string {
  const fe = cfg.featureExtractor;
  return fe.kind === 'onnx' ? `ONNX ${fe.path}` : fe.name === 'default' ? `${DEFAULT_BACKBONE} (bundled default)` : fe.name;
}
