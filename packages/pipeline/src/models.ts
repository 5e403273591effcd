/**
 * The models of a run, built from the run config: the data side of the three stage problems of
 * `diad fit` (which images, crops and noise each step draws; the trainers are in `trainers.ts`),
 * and the trained autoencoder and denoiser on tfjs for inference.
 */
import { DiffusionSchedule, Rng, tensor, type Autoencoder, type GuidedDenoiser, type HostTensor, sliceBatch, concatBatch, readSafetensors } from '@diad/core';
import { initTfjs, formatEngineInfo, ParamStore, TFJS_ENGINE_ENV, WASM_HEAP_BYTES } from '@diad/core/tfjs';
import { configuredAutoencoder, DEFAULT_PREFIX as AE_PREFIX, type ConfiguredAutoencoder } from '@diad/autoencoder';
import {
  parseDiadConfig,
  parameterCount,
  diadParamSpec,
  DiadDenoiser,
  copyUnetEncoderToSgn,
  timestepEmbedding,
  trainableFilter,
  UNET_PREFIX,
  LEARNED_CONTEXT,
  hostContext,
  readConstantContext,
  HINT_DOWNSAMPLES,
  type DiadConfig,
} from '@diad/sg-diffusion';
import type { RunConfig } from './config.js';
import type { RunDir, StageName } from './run-dir.js';
import { batchIndices, gather } from './batching.js';
import { withRunContext } from './run-context.js';
import {
  denoiserProblem,
  ortStageTrainer,
  phasedTrainer,
  stageLr,
  tfjsStageTrainer,
  type DisposableTrainer,
  type StageBatch,
  type StageProblem,
} from './trainers.js';

/** Options of {@link createModels}. */
export interface ModelOptions {
  /** Engine of the stage trainers (default `ort`). */
  trainEngine?: TrainEngine;
  /** onnxruntime execution providers of the ort trainers (default `env.ortProviders`: `DIAD_ORT_PROVIDERS`, else cpu). */
  providers?: readonly string[];
}

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
  /** The run's autoencoder kind and its parsed config. */
  autoencoder: ConfiguredAutoencoder;
  autoencoderParams: Record<string, HostTensor<'float32'>>;
  diadConfig: DiadConfig;
  denoiser: Record<string, HostTensor<'float32'>>;
  /** Cross-attention context of one item `[1, L, D]`. */
  context: HostTensor<'float32'>;
}

/** The training engines of `diad fit`. */
export type TrainEngine = 'ort' | 'tfjs';
export const TRAIN_ENGINES: readonly TrainEngine[] = ['ort', 'tfjs'];

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

/** Bytes of the denoiser's float32 weights (UNet, SG network, context). */
export function denoiserWeightBytes(d: DiadConfig): number {
  return 4 * parameterCount(diadParamSpec(d));
}

/**
 * The denoiser is loaded and initialised on tfjs by every command (then trained or run on ort):
 * on the wasm engine its float32 weights must fit the 4 GiB heap, which the `sd15` sizes (5.0 GiB) do not.
 * @param engine the selected tfjs engine (`initTfjs().engine`).
 * @param what names the model in the error (e.g. `preset sd15`).
 * @throws Error naming the sizes and the engine to use instead.
 */
export function checkTfjsHeap(d: DiadConfig, engine: string, what: string): void {
  const bytes = denoiserWeightBytes(d);
  if (engine === 'wasm' && bytes > WASM_HEAP_BYTES)
    throw new Error(
      `${what}: the denoiser's ${(bytes / 2 ** 30).toFixed(1)} GiB of float32 weights do not fit the 4 GiB heap of tfjs-wasm, on which they are loaded and initialised; ` +
        `run with ${TFJS_ENGINE_ENV}=cpu (tfjs's plain JavaScript engine has no such limit) or install @tensorflow/tfjs-node`,
    );
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
  const ae = configuredAutoencoder(cfg.models.autoencoder, `${run.path('config.json')} models.autoencoder`);
  const aeCfg = ae.config;
  const aeFactor = ae.kind.downsampleFactor(aeCfg);
  const parsed = parseDiadConfig(cfg.models.diad, `${run.path('config.json')} models.diad`);
  checkTfjsHeap(parsed, info.engine, `${run.dir} (preset ${cfg.preset})`);
  const dCfg: DiadConfig = await withRunContext(cfg, run, parsed, log);
  checkLatentFit(ae.kind.latentChannels(aeCfg), aeFactor, dCfg, run.path('config.json'));
  const schedule = new DiffusionSchedule();
  const latentSize = cfg.data.imageSize / aeFactor;
  const constantContext = dCfg.context.kind === 'file' ? await readConstantContext(dCfg.context.path, dCfg.context.tensor, dCfg.unet.context_dim) : null;

  /** Autoencoder parameters: stage-1 checkpoint, else `--init`, else fresh (stage 1 starts from these). */
  const autoencoderStore = async (fresh: boolean): Promise<ParamStore> => {
    const store = ParamStore.create(ae.kind.paramSpec(aeCfg, AE_PREFIX), cfg.seed);
    try {
      const st = await run.readStage('autoencoder');
      if (!fresh && st?.checkpoint) store.load(await run.loadCheckpoint('autoencoder'), { strict: false, prefix: AE_PREFIX });
      else if (!fresh && cfg.models.init) {
        // Official checkpoints may carry extra first_stage_model.* entries (e.g. loss modules); only missing ones matter.
        const { missing } = store.load(await readSafetensors(cfg.models.init), { prefix: AE_PREFIX, strict: false });
        if (missing.length)
          throw new Error(
            `${cfg.models.init}: --init checkpoint lacks ${missing.length} autoencoder parameters (${missing.slice(0, 5).join(', ')}, ...); it does not match models.autoencoder of the config`,
          );
      } else if (!fresh && cfg.stages.autoencoder.steps > 0)
        throw new Error(`${run.dir}: stage 1 (autoencoder) has no checkpoint; run \`diad fit --resume ${run.dir}\` first`);
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

  return {
    engine,

    async autoencoderTrainer(images) {
      const sc = cfg.stages.autoencoder;
      const f = aeFactor;
      /** Stage 1 on `crop`-sided crops (null: whole images), `batchSize` images a step, at `lr`. */
      const phase = async (crop: number | null, batchSize: number, lr: number): Promise<DisposableTrainer> => {
        const [height, width] = crop ? [crop, crop] : [images.shape[2], images.shape[3]];
        // LDM's loss divided by the pixels per image, so the logged loss reads as a mean absolute
        // error (Adam is scale-invariant).
        const lossScale = 1 / (images.shape[1] * height * width);
        return trainerFor({
          stage: 'autoencoder',
          cfg: { ...sc, batchSize, lr },
          store: await autoencoderStore(true),
          trainable: (n: string) => n.startsWith(AE_PREFIX),
          batchOf(step) {
            const idx = batchIndices(step, images.shape[0], batchSize, cfg.seed);
            const rng = new Rng(cfg.seed, STREAM.autoencoder + step);
            const x = crop ? randomCrop(gather(images, idx), crop, rng) : gather(images, idx);
            const zShape = [idx.length, ae.kind.latentChannels(aeCfg), x.shape[2] / f, x.shape[3] / f];
            return { images: x, noise: tensor(rng.normals(zShape.reduce((a, b) => a * b, 1)), zShape, 'NCHW') };
          },
          tfjsLoss: (ops, b) => ops.scale(ae.kind.loss(ops, aeCfg, b.images, b.noise, { klWeight: cfg.models.klWeight, prefix: AE_PREFIX }), lossScale),
          graph: (params) =>
            ae.kind.recordTraining(aeCfg, params, { batch: batchSize, height, width, klWeight: cfg.models.klWeight, prefix: AE_PREFIX, lossScale }),
        });
      };
      const whole = sc.wholeImages;
      if (!whole) return phase(sc.crop, sc.batchSize, sc.lr);
      const from = Math.max(0, sc.steps - whole.steps);
      const wholeLr = whole.lr ?? sc.lr;
      return phasedTrainer([
        ...(from > 0 ? [{ from: 0, batchSize: sc.batchSize, lr: stageLr(sc), open: () => phase(sc.crop, sc.batchSize, sc.lr) }] : []),
        { from, batchSize: whole.batchSize, lr: stageLr({ ...sc, lr: wholeLr }), open: () => phase(null, whole.batchSize, wholeLr) },
      ]);
    },

    async encodeTrain(images) {
      const store = await autoencoderStore(false);
      try {
        const stage = ae.kind.tfjs(store, aeCfg);
        const parts: HostTensor[] = [];
        const bs = cfg.inference.batchSize;
        for (let i = 0; i < images.shape[0]; i += bs) parts.push(await stage.encode(sliceBatch(images, i, Math.min(images.shape[0], i + bs))));
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
      return trainerFor(
        denoiserProblem(
          'diffusion',
          sc,
          dCfg,
          d,
          trainable,
          (step) => {
            const idx = batchIndices(step, latents.shape[0], sc.batchSize, cfg.seed + 1);
            return noisedBatch(new Rng(cfg.seed, STREAM.diffusion + step), gather(latents, idx), schedule, dCfg.unet.model_channels);
          },
          latentSize,
          constantContext,
        ),
      );
    },

    async sgTrainer(latents, images) {
      // Stage 3 starts from the stage-2 UNet with the SG network's encoder copied from it
      // (ControlNet's tool_add_control); a resumed stage 3 then loads its own checkpoint over it.
      const d = await denoiserAfter('diffusion');
      if (!cfg.models.init && !(await run.readStage('sg'))?.checkpoint)
        log(`stage 3: SG network initialised from the UNet encoder (${copyUnetEncoderToSgn(d.store)} tensors copied)`);
      const sc = cfg.stages.sg;
      return trainerFor(
        denoiserProblem(
          'sg',
          sc,
          dCfg,
          d,
          trainableFilter('official'),
          (step) => {
            const idx = batchIndices(step, latents.shape[0], sc.batchSize, cfg.seed + 2);
            return { ...noisedBatch(new Rng(cfg.seed, STREAM.sg + step), gather(latents, idx), schedule, dCfg.unet.model_channels), hint: gather(images, idx) };
          },
          latentSize,
          constantContext,
        ),
      );
    },

    async denoising() {
      const aeStore = await autoencoderStore(false);
      const denoiser = await denoiserAfter(cfg.stages.sg.steps > 0 ? 'sg' : 'diffusion').catch((e) => {
        aeStore.dispose();
        throw e;
      });
      return {
        autoencoder: ae.kind.tfjs(aeStore, aeCfg),
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
          return {
            autoencoder: ae,
            diadConfig: dCfg,
            autoencoderParams: await aeStore.toHost(),
            denoiser,
            context: hostContext(dCfg, denoiser, constant, 1),
          };
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
 * The denoiser works on the autoencoder's latents: its UNet takes and gives their channels, and the
 * hint block brings the image down to their size. Checked by `preflightFit` and again when a run's
 * models are made (`createModels`), so a library `fit` is refused too.
 * @param where what the config came from, named in the error (e.g. the run's config.json).
 * @throws Error naming both fields and the values that would agree (or, for a factor the hint block
 *   cannot make, the factors it can).
 */
export function checkLatentFit(channels: number, factor: number, d: DiadConfig, where: string): void {
  const u = d.unet;
  if (u.in_channels !== channels || u.out_channels !== channels)
    throw new Error(
      `${where}: models.diad.unet has in_channels ${u.in_channels} and out_channels ${u.out_channels}, but the autoencoder's latents have ${channels} channels (models.autoencoder embed_dim): set both to ${channels}`,
    );
  if (d.hint_downsample === factor) return;
  const fix = (HINT_DOWNSAMPLES as readonly number[]).includes(factor)
    ? `set hint_downsample to ${factor} so the hint block's output has the latents' size`
    : `the hint block downsamples by ${HINT_DOWNSAMPLES.join(', ')} only: use an autoencoder with ${HINT_DOWNSAMPLES.map((f) => Math.log2(f) + 1).join(', ')} ch_mult levels`;
  throw new Error(
    `${where}: models.diad.hint_downsample is ${d.hint_downsample}, but the autoencoder downsamples by ${factor} (models.autoencoder ch_mult): ${fix}`,
  );
}
