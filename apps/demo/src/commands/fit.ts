import type { Command } from 'commander';
import { resolve } from 'node:path';
import { configuredAutoencoder, countParams, DEFAULT_PREFIX as AE_PREFIX } from '@diad/autoencoder';
import { parseDiadConfig, diadParamSpec } from '@diad/sg-diffusion';
import { resolveConfig, LR_SCHEDULES, PRESETS, PRESET_COST, type ConfigOverrides, type Preset } from '@diad/pipeline';
import { RunDir } from '@diad/pipeline';
import { fit } from '@diad/pipeline';
import { InterruptedError } from '@diad/pipeline';
import { TRAIN_ENGINES, type TrainEngine } from '@diad/pipeline';
import { openSplits } from '@diad/pipeline';
import { inspectInit, preflightFit } from '@diad/pipeline';
import { intFlag } from './flag-values.js';
import { addSettingsOptions, collect, settingsFromFlags, type SettingsFlags } from './settings-flags.js';

export interface FitFlags extends SettingsFlags {
  data?: string[];
  classes?: string;
  preset: string;
  out?: string;
  resume?: string;
  init?: string;
  seed?: string;
  aeSteps?: string;
  diffusionSteps?: string;
  sgSteps?: string;
  batchSize?: string;
  checkpointEvery?: string;
  lrSchedule?: string;
  maxTrainPerClass?: string;
  maxTestPerClass?: string;
  quiet?: boolean;
  engine?: string;
}

/**
 * Parses fit's `--engine`.
 * @throws Error naming the known engines.
 */
export function parseTrainEngine(v: string | undefined): TrainEngine {
  const e = (v ?? 'ort').toLowerCase();
  if (!TRAIN_ENGINES.includes(e as TrainEngine)) throw new Error(`--engine ${v}: unknown training engine; use one of ${TRAIN_ENGINES.join(', ')}`);
  return e as TrainEngine;
}

/**
 * Parses `--lr-schedule` (absent = the preset's).
 * @throws Error naming the known schedules.
 */
function lrSchedule(v: string | undefined): (typeof LR_SCHEDULES)[number] | undefined {
  if (v === undefined) return undefined;
  if (!LR_SCHEDULES.includes(v as (typeof LR_SCHEDULES)[number])) throw new Error(`--lr-schedule ${v}: unknown schedule; use ${LR_SCHEDULES.join(' or ')}`);
  return v as (typeof LR_SCHEDULES)[number];
}

/**
 * The run config from fit/demo flags (data roots made absolute so the hash does not depend on the cwd).
 * @param initTextEncoder the `--init` checkpoint holds CLIP's text encoder (`inspectInit`): the context becomes `clip`.
 */
export function configFromFlags(f: FitFlags, initTextEncoder = false) {
  const o: ConfigOverrides = {
    roots: (f.data ?? []).map((d) => resolve(d)),
    classes:
      f.classes
        ?.split(',')
        .map((c) => c.trim())
        .filter(Boolean) ?? null,
    init: f.init ? resolve(f.init) : null,
    seed: intFlag('--seed', f.seed),
    steps: { autoencoder: intFlag('--ae-steps', f.aeSteps), diffusion: intFlag('--diffusion-steps', f.diffusionSteps), sg: intFlag('--sg-steps', f.sgSteps) },
    batchSize: intFlag('--batch-size', f.batchSize, 1),
    checkpointEvery: intFlag('--checkpoint-every', f.checkpointEvery, 1),
    lrSchedule: lrSchedule(f.lrSchedule),
    inference: settingsFromFlags(f),
    initTextEncoder,
    ...(f.maxTrainPerClass !== undefined ? { maxTrainPerClass: intFlag('--max-train-per-class', f.maxTrainPerClass, 1) } : {}),
    ...(f.maxTestPerClass !== undefined ? { maxTestPerClass: intFlag('--max-test-per-class', f.maxTestPerClass, 1) } : {}),
  };
  return resolveConfig(f.preset, o);
}

/** The options shared by `fit` and `demo`. */
export function addModelOptions(cmd: Command): Command {
  return addSettingsOptions(cmd, "the preset's (the run's defaults; test/predict/ablate can change them later without a refit)")
    .option(
      '--preset <name>',
      `size preset: ${Object.entries(PRESET_HELP)
        .map(([k, v]) => `${k} (${v})`)
        .join('; ')}`,
      'tiny',
    )
    .option(
      '--init <ckpt>',
      'checkpoint (safetensors) replacing stages 1-2: Stable Diffusion 1.5 in the single-file layout (its CLIP text encoder gives the context) or a converted DiAD one',
    )
    .option('--seed <n>', 'seed of initialisation, data order, noise and splits')
    .option('--ae-steps <n>', 'stage 1 (autoencoder) steps')
    .option('--diffusion-steps <n>', 'stage 2 (latent-diffusion UNet) steps')
    .option('--sg-steps <n>', 'stage 3 (SG network + SFF) steps')
    .option('--batch-size <n>', 'batch size of every stage')
    .option('--checkpoint-every <n>', 'checkpoint interval (steps) of every stage')
    .option('--lr-schedule <s>', "learning-rate schedule of every stage: constant (the official trainers') | cosine (annealed to 0 over the stage)")
    .option('--max-train-per-class <n>', 'use at most this many train images per class')
    .option('--max-test-per-class <n>', 'test at most this many images per class')
    .option(
      '--engine <name>',
      `training engine: ${TRAIN_ENGINES.join(' | ')} (ort: onnxruntime-node, 7-9x tfjs on 2 CPU cores; providers from diad --providers or DIAD_ORT_PROVIDERS)`,
      'ort',
    )
    .option('--quiet', 'no progress output');
}

/** How many of stage 1's steps take whole images after crops, for the help line. */
function wholeImages(ae: Preset['stages']['autoencoder']): string {
  return ae.wholeImages && ae.crop ? ` (stage 1 on ${ae.crop}-px crops, its last ${Math.min(ae.steps, ae.wholeImages.steps)} on whole images)` : '';
}

/** One line per preset for `--help`: image and latent size, parameters, steps, and time on the 2-core development machine. */
const PRESET_HELP: Record<string, string> = Object.fromEntries(
  Object.entries(PRESETS).map(([name, p]) => {
    const s = p.stages;
    const { kind, config: ae } = configuredAutoencoder(p.models.autoencoder, `preset ${name}`);
    const latent = p.data.imageSize / kind.downsampleFactor(ae);
    const params = countParams(kind.paramSpec(ae, AE_PREFIX)) + countParams(diadParamSpec(parseDiadConfig(p.models.diad, `preset ${name}`)));
    return [
      name,
      `${p.data.imageSize} px, latents ${latent}x${latent}x${kind.latentChannels(ae)}, ${(params / 1e6).toFixed(1)}M parameters, ${s.autoencoder.steps}/${s.diffusion.steps}/${s.sg.steps} steps${wholeImages(s.autoencoder)}, ` +
        `${p.inference.featureExtractor.kind} features at ${p.inference.anomalyMap.levels ? `levels ${p.inference.anomalyMap.levels.join(',')}` : 'every level'}; ${PRESET_COST[name] ?? 'time not measured'}`,
    ];
  }),
);

/**
 * `diad fit --data DIR [--data DIR2 ...] [--classes a,b] --preset tiny --out runs/NAME [--init CKPT]`
 * or `diad fit --resume runs/NAME`: trains one model for all classes (three resumable stages),
 * then fixes the decision threshold on the validation split. Exit code 130 after Ctrl-C (the run
 * resumes with the same command).
 */
export function register(program: Command): void {
  addModelOptions(
    program
      .command('fit')
      .description('train one DiAD model for all classes: autoencoder, latent-diffusion UNet, SG network + SFF (resumable)')
      .option('--data <dir>', 'dataset root (required for a new run; repeatable)', collect)
      .option('--classes <list>', 'only these classes, comma-separated')
      .option('--out <dir>', 'run folder, e.g. runs/NAME (required unless --resume)')
      .option('--resume <dir>', 'continue the run in this folder with its own config'),
  ).action(async (flags: FitFlags, cmd: Command) => {
    const engine = parseTrainEngine(flags.engine);
    let run: RunDir;
    if (flags.resume) {
      const given = Object.keys(cmd.opts()).filter((k) => !['resume', 'quiet', 'engine'].includes(k) && cmd.getOptionValueSource(k) === 'cli');
      if (given.length) {
        throw new Error(
          `--resume continues the run with its own config; drop ${given.map((k) => '--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())).join(', ')} (or start a new run with --out)`,
        );
      }
      run = await RunDir.load(flags.resume);
      await preflightFit(run.config, run.dir, engine);
    } else {
      if (!flags.out) throw new Error('--out <dir> is required (the run folder), or --resume <dir> to continue a run');
      if (!flags.data?.length) throw new Error('--data <dir> is required (a dataset root; repeat for several)');
      // Refusals come before the run folder is written: a bad option or file leaves nothing behind.
      const init = flags.init ? await inspectInit(resolve(flags.init)) : null;
      const cfg = configFromFlags(flags, init?.textEncoder);
      await preflightFit(cfg, resolve(flags.out), engine, flags.quiet ? undefined : (l) => process.stderr.write(`${l}\n`));
      await openSplits(cfg);
      run = await RunDir.open(flags.out, cfg);
    }
    if (await fitOrInterrupt(run, flags.quiet, engine)) {
      process.stderr.write(`fit done: ${run.dir} (config ${run.hash}); next: diad test --run ${run.dir}\n`);
    }
  });
}

/**
 * Fits `run`; after Ctrl-C (the step finished and saved) prints why, sets exit code 130 and
 * returns false, so the same command resumes. Other errors propagate.
 */
export async function fitOrInterrupt(run: RunDir, quiet?: boolean, engine?: TrainEngine): Promise<boolean> {
  try {
    await fit(run, { quiet, engine });
    return true;
  } catch (e) {
    if (!(e instanceof InterruptedError)) throw e;
    process.stderr.write(`${e.message}\n`);
    process.exitCode = 130;
    return false;
  }
}
