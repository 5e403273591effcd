/**
 * The models of a run, built from the run config: the three stage trainers of `diad fit` (on
 * onnxruntime-node or tfjs) and the trained autoencoder and denoiser on tfjs for inference.
 *
 * Each stage defines its batch of step `s` once, as named host tensors drawn from
 * `Rng(seed, stream + s)` (so a resumed stage repeats exactly what an uninterrupted one would do),
 * and its loss once, in the packages (`autoencoderLoss`, `denoiserEps` + `epsLoss`). The tfjs
 * trainer differentiates that loss with `tf.variableGrads`; the ort trainer runs the package's
 * training graph (the same loss recorded and differentiated), whose inputs carry the batch's names.
 * A checkpoint holds every parameter of the stage's model (official names and layouts) plus the
 * AdamW state under `optimizer.`, the same on both engines.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Rng, tensor, type Autoencoder, type HostTensor, type SafetensorsFile, type WritableTensor, sliceBatch, concatBatch, readSafetensors } from '@diad/core';
import { engineTensor, initTfjs, formatEngineInfo, officialHost, ParamStore, TfjsOps, Trainer } from '@diad/core/tfjs';
import type { TrainingGraph } from '@diad/core/onnx';
import {
  parseAutoencoderConfig, paramSpec as autoencoderParamSpec, autoencoderLoss, downsampleFactor, recordAutoencoderTraining, tfjsAutoencoder,
  DEFAULT_PREFIX as AE_PREFIX, type AutoencoderConfig,
} from '@diad/autoencoder';
import {
  parseDiadConfig, DiadDenoiser, DiffusionSchedule, copyUnetEncoderToSgn, denoiserEps, epsLoss, recordDenoiserTraining, timestepEmbedding,
  trainableFilter, UNET_PREFIX, LEARNED_CONTEXT, hostContext, readConstantContext, type DiadConfig, type GuidedDenoiser,
} from '@diad/sg-diffusion';
import type { RunConfig, StageConfig } from './config.js';
import type { RunDir, StageName } from './run-dir.js';
import type { StageTrainer } from './train-loop.js';
import { batchIndices, gather } from './batching.js';

/** Options of {@link createModels}. */
export interface ModelOptions {
  /** Engine of the stage trainers (default `ort`). */
  trainEngine?: TrainEngine;
  /** onnxruntime execution providers of the ort trainers (default `env.ortProviders`: `DIAD_ORT_PROVIDERS`, else cpu). */
  providers?: readonly string[];
}

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
  /** The finished run's autoencoder and guided denoiser (tfjs), which any sampler drives. */
  denoising(): Promise<{ autoencoder: Autoencoder; denoiser: GuidedDenoiser; dispose(): void }>;
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

/** The training engines of `diad fit`. */
export type TrainEngine = 'ort' | 'tfjs';
export const TRAIN_ENGINES: readonly TrainEngine[] = ['ort', 'tfjs'];

/** A stage's batch of one step: named host tensors (the input names of its training graph). */
export type StageBatch = Record<string, HostTensor>;

/** One stage's training problem, engine-free. */
interface StageProblem {
  stage: StageName;
  cfg: StageConfig;
  /** Every parameter of the stage's model (official layout): the initial values and what checkpoints hold. */
  store: ParamStore;
  trainable: (name: string) => boolean;
  batchOf(step: number): StageBatch;
  /** The scalar loss on tfjs tensors of a batch (the packages' loss code through TfjsOps). */
  tfjsLoss(ops: TfjsOps, batch: Record<string, tf.Tensor>): tf.Tensor;
  /** The package's training graph of the same loss, for the stage's batch shapes (ort). */
  graph(params: Record<string, HostTensor<'float32'>>): TrainingGraph;
}

const optimizerOf = (cfg: StageConfig) => ({ lr: cfg.lr, betas: cfg.betas, weightDecay: cfg.weightDecay ?? 0.01 });

/** core's tfjs `Trainer` over the stage's `ParamStore`, differentiating `tfjsLoss`. */
function tfjsStageTrainer(p: StageProblem): DisposableTrainer {
  const { store, cfg, stage } = p;
  store.setTrainable(() => true, false);
  store.setTrainable(p.trainable, true);
  const names = store.names(p.trainable);
  const variables = Object.fromEntries(names.map((n) => [n, store.get(n)]));
  const ops = new TfjsOps(store);
  const trainer = new Trainer(variables, { optimizer: optimizerOf(cfg), config: { stage, ...cfg } });
  return {
    batchSize: cfg.batchSize,
    async step(step: number): Promise<number> {
      const batch = p.batchOf(step);
      try {
        return (await trainer.trainStep([() => p.tfjsLoss(ops, Object.fromEntries(Object.entries(batch).map(([k, v]) => [k, ops.input(v)]))) as tf.Scalar])).loss;
      } catch (e) {
        // The trainers refuse non-finite losses/gradients before updating; the loop reports the step.
        if (/non-finite/.test((e as Error).message)) return NaN;
        throw e;
      }
    },
    async state(): Promise<Record<string, WritableTensor>> {
      // Optimizer slots in the official layout, like the parameters: the ort trainer reads them too.
      const state: Record<string, HostTensor<'float32'>> = {};
      for (const [n, t] of Object.entries(trainer.optimizer.stateTensors())) state[n] = await officialHost(t);
      return checkpointOf(await store.toHost(), state, trainer.optimizer.step);
    },
    async load(file: SafetensorsFile): Promise<void> {
      const report = store.load(file, { strict: false });
      if (report.missing.length) throw damaged(file, stage, report.missing);
      const { step, state } = optimizerStateOf(file);
      const engine: Record<string, HostTensor<'float32'>> = {};
      for (const [n, h] of Object.entries(state)) {
        const t = engineTensor(h.data, h.shape);
        engine[n] = tensor((await t.data()) as Float32Array, t.shape);
        t.dispose();
      }
      trainer.optimizer.loadState(step, engine, variables);
    },
    dispose(): void {
      trainer.dispose();
      store.dispose();
    },
  };
}

/** core's `OrtTrainer` on the stage's training graph: parameters on the host, fed every step. */
async function ortStageTrainer(p: StageProblem, providers: readonly string[] | undefined): Promise<DisposableTrainer & { providers: string }> {
  const { OrtTrainer } = await import('@diad/core/ort');
  const params = await p.store.toHost();
  p.store.dispose();
  const trainer = await OrtTrainer.open(p.graph(params), params, { optimizer: optimizerOf(p.cfg), providers, label: `stage ${p.stage} training graph` });
  return {
    batchSize: p.cfg.batchSize,
    providers: [trainer.providers.join(', '), ...trainer.session.skipped.map((k) => `skipped ${k.provider}: ${k.reason}`)].join('; '),
    async step(step: number): Promise<number> {
      try {
        return (await trainer.trainStep([p.batchOf(step)])).loss;
      } catch (e) {
        if (/non-finite/.test((e as Error).message)) return NaN;
        throw e;
      }
    },
    async state(): Promise<Record<string, WritableTensor>> {
      return checkpointOf({ ...params, ...trainer.params }, trainer.optimizerState(), trainer.step);
    },
    async load(file: SafetensorsFile): Promise<void> {
      const missing = Object.keys(params).filter((n) => !file.has(n));
      if (missing.length) throw damaged(file, p.stage, missing);
      const loaded: Record<string, HostTensor<'float32'>> = {};
      for (const n of Object.keys(params)) loaded[n] = file.float32(n);
      const { step, state } = optimizerStateOf(file);
      trainer.restore(step, loaded, state);
      for (const [n, t] of Object.entries(loaded)) if (!trainer.params[n]) params[n] = t;
    },
    dispose(): void {
      void trainer.release();
    },
  };
}

/** A checkpoint's tensors: parameters, AdamW state under `optimizer.`, and the update count. */
function checkpointOf(params: Record<string, HostTensor<'float32'>>, state: Record<string, HostTensor<'float32'>>, step: number): Record<string, WritableTensor> {
  const out: Record<string, WritableTensor> = { ...params };
  for (const [n, t] of Object.entries(state)) out[OPT + n] = t;
  out[`${OPT}step`] = tensor(new Float32Array([step]), [1]);
  return out;
}

function optimizerStateOf(file: SafetensorsFile): { step: number; state: Record<string, HostTensor<'float32'>> } {
  const state: Record<string, HostTensor<'float32'>> = {};
  for (const n of file.names()) if (n.startsWith(OPT) && n !== `${OPT}step`) state[n.slice(OPT.length)] = file.float32(n);
  return { step: file.float32(`${OPT}step`).data[0], state };
}

function damaged(file: SafetensorsFile, stage: StageName, missing: string[]): Error {
  return new Error(`${file.source}: checkpoint lacks ${missing.length} parameters of stage ${stage} (${missing.slice(0, 5).join(', ')}...); the run folder is damaged`);
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

/**
 * The eps-prediction batch of one step: timesteps uniform in [0, T-1], Gaussian noise, the noised
 * latents `x_noisy = qSample(z, t, noise)` and the timestep embedding `t_emb` (the input names of
 * the denoiser's training graph).
 */
export function noisedBatch(rng: Rng, z: HostTensor, schedule: DiffusionSchedule, modelChannels: number): StageBatch {
  const n = z.shape[0];
  const t = Array.from({ length: n }, () => rng.int(0, schedule.numTimesteps - 1));
  const noise = tensor(rng.normals(z.data.length), z.shape, 'NCHW');
  return { x_noisy: schedule.qSample(z, t, noise), noise, t_emb: timestepEmbedding(t, modelChannels) };
}

/**
 * Builds the models of a run (selecting the tfjs engine first).
 * @throws Error from the packages' config parsers naming the invalid field, or a checkpoint error.
 */
export async function createModels(cfg: RunConfig, run: RunDir, log: (l: string) => void = () => {}, options: ModelOptions = {}): Promise<Models> {
  const info = await initTfjs();
  const trainEngine = options.trainEngine ?? 'ort';
  const tfjsName = formatEngineInfo(info);
  const engine = trainEngine === 'ort' ? `onnxruntime-node (training); ${tfjsName} (initialisation, encoding, validation)` : tfjsName;
  const aeCfg: AutoencoderConfig = parseAutoencoderConfig(cfg.models.autoencoder, `${run.path('config.json')} models.autoencoder`);
  const dCfg: DiadConfig = parseDiadConfig(cfg.models.diad, `${run.path('config.json')} models.diad`);
  if (dCfg.hint_downsample !== downsampleFactor(aeCfg)) {
    throw new Error(`${run.path('config.json')}: models.diad.hint_downsample is ${dCfg.hint_downsample} but the autoencoder downsamples by ${downsampleFactor(aeCfg)} (ch_mult ${JSON.stringify(aeCfg.ddconfig.ch_mult)}); set hint_downsample to ${downsampleFactor(aeCfg)} so the hint block meets the latents`);
  }
  const schedule = new DiffusionSchedule();
  const constantContext = dCfg.context.kind === 'file' ? await readConstantContext(dCfg.context.path, dCfg.context.tensor, dCfg.unet.context_dim) : null;

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
    const checkpoint = await run.inferenceCheckpoint(stage);
    if (checkpoint) return DiadDenoiser.load(dCfg, run.path(checkpoint));
    if (cfg.models.init) return DiadDenoiser.load(dCfg, cfg.models.init);
    if (cfg.stages[stage].steps > 0) throw new Error(`${run.dir}: stage ${stage} has no checkpoint; run \`diad fit --resume ${run.dir}\` first`);
    return DiadDenoiser.create(dCfg, cfg.seed);
  };

  let reportedProviders = '';
  /** The stage's trainer on the chosen engine (the store is the trainer's from here on). */
  const trainerFor = async (p: StageProblem): Promise<DisposableTrainer> => {
    if (trainEngine === 'tfjs') return tfjsStageTrainer(p);
    const t = await ortStageTrainer(p, options.providers);
    // Which providers (and why one was skipped) once per run, not once per stage.
    if (t.providers !== reportedProviders) log(`stage ${p.stage}: training on onnxruntime-node (${t.providers})`);
    reportedProviders = t.providers;
    return t;
  };

  /** Stages 2 and 3: eps-MSE of the plain UNet (`diffusion`) or of the SG network + UNet (`sg`, batches with `hint`). */
  const denoiserProblem = (stage: 'diffusion' | 'sg', d: DiadDenoiser, trainable: (n: string) => boolean, batchOf: (step: number) => StageBatch): StageProblem => {
    const sc = cfg.stages[stage];
    const guided = stage === 'sg';
    const hw = cfg.data.imageSize / downsampleFactor(aeCfg);
    // A file context is an input of the batch; a learned one is a parameter.
    const context = constantContext ? hostContext(dCfg, {}, constantContext, sc.batchSize) : null;
    return {
      stage,
      cfg: sc,
      store: d.store,
      trainable,
      batchOf: (step) => (context ? { ...batchOf(step), context } : batchOf(step)),
      tfjsLoss: (ops, b) => epsLoss(ops, denoiserEps(ops, dCfg, b.x_noisy, guided ? b.hint : null, b.t_emb, b.context ?? d.context(sc.batchSize)), b.noise),
      graph: (params) => recordDenoiserTraining(dCfg, params, { batch: sc.batchSize, latentHeight: hw, latentWidth: hw, guided, trainable, contextTokens: context?.shape[1] }),
    };
  };

  return {
    engine,

    async autoencoderTrainer(images) {
      const sc = cfg.stages.autoencoder;
      const [height, width] = sc.crop ? [sc.crop, sc.crop] : [images.shape[2], images.shape[3]];
      const f = downsampleFactor(aeCfg);
      // LDM's loss divided by the pixels per image, so the logged loss reads as a mean absolute
      // error (Adam is scale-invariant).
      const lossScale = 1 / (images.shape[1] * height * width);
      return trainerFor({
        stage: 'autoencoder',
        cfg: sc,
        store: await autoencoderStore(true),
        trainable: (n: string) => n.startsWith(AE_PREFIX),
        batchOf(step) {
          const idx = batchIndices(step, images.shape[0], sc.batchSize, cfg.seed);
          const rng = new Rng(cfg.seed, STREAM.autoencoder + step);
          const x = sc.crop ? randomCrop(gather(images, idx), sc.crop, rng) : gather(images, idx);
          const zShape = [idx.length, aeCfg.embed_dim, x.shape[2] / f, x.shape[3] / f];
          return { images: x, noise: tensor(rng.normals(zShape.reduce((a, b) => a * b, 1)), zShape, 'NCHW') };
        },
        tfjsLoss: (ops, b) => ops.scale(autoencoderLoss(ops, aeCfg, b.images, b.noise, { klWeight: cfg.models.klWeight, prefix: AE_PREFIX }).loss, lossScale),
        graph: (params) =>
          recordAutoencoderTraining(aeCfg, params, { batch: sc.batchSize, height, width, klWeight: cfg.models.klWeight, prefix: AE_PREFIX, lossScale }),
      });
    },

    async encodeTrain(images) {
      const store = await autoencoderStore(false);
      try {
        const ae = tfjsAutoencoder(store, aeCfg);
        const parts: HostTensor[] = [];
        const bs = cfg.inference.batchSize;
        for (let i = 0; i < images.shape[0]; i += bs) parts.push(await ae.encode(sliceBatch(images, i, Math.min(images.shape[0], i + bs))));
        return concatBatch(parts);
      } finally {
        store.dispose();
      }
    },

    async diffusionTrainer(latents) {
      // Stage 2 trains a plain UNet (no control) from scratch; the SG network is not used.
      const d = await DiadDenoiser.create(dCfg, cfg.seed);
      const sc = cfg.stages.diffusion;
      const trainable = (n: string) => n.startsWith(UNET_PREFIX) || n === LEARNED_CONTEXT;
      return trainerFor(denoiserProblem('diffusion', d, trainable, (step) => {
        const idx = batchIndices(step, latents.shape[0], sc.batchSize, cfg.seed + 1);
        return noisedBatch(new Rng(cfg.seed, STREAM.diffusion + step), gather(latents, idx), schedule, dCfg.unet.model_channels);
      }));
    },

    async sgTrainer(latents, images) {
      // Stage 3 starts from the stage-2 UNet with the SG network's encoder copied from it
      // (ControlNet's tool_add_control); a resumed stage 3 then loads its own checkpoint over it.
      const d = await denoiserAfter('diffusion');
      if (!cfg.models.init && !(await run.readStage('sg'))?.checkpoint) log(`stage 3: SG network initialised from the UNet encoder (${copyUnetEncoderToSgn(d.store)} tensors copied)`);
      const sc = cfg.stages.sg;
      return trainerFor(denoiserProblem('sg', d, trainableFilter('official'), (step) => {
        const idx = batchIndices(step, latents.shape[0], sc.batchSize, cfg.seed + 2);
        return { ...noisedBatch(new Rng(cfg.seed, STREAM.sg + step), gather(latents, idx), schedule, dCfg.unet.model_channels), hint: gather(images, idx) };
      }));
    },

    async denoising() {
      const aeStore = await autoencoderStore(false);
      const denoiser = await denoiserAfter(cfg.stages.sg.steps > 0 ? 'sg' : 'diffusion').catch((e) => {
        aeStore.dispose();
        throw e;
      });
      return {
        autoencoder: tfjsAutoencoder(aeStore, aeCfg),
        denoiser,
        dispose() {
          aeStore.dispose();
          denoiser.dispose();
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
