/**
 * The inference-settings flags every command that runs a fitted run shares (test, predict,
 * validate, export, ablate, and fit for the run's defaults): `--set key=value` (repeatable; keys
 * of the inference config, see @diad/pipeline `applyInferenceSets`) and shortcuts for the common
 * ones. They become `key=value` settings, so there is one vocabulary.
 */
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { applyInferenceSets, MAP_REFERENCES, PRESETS } from '@diad/pipeline';
import { DDIM_SCHEDULES, ddimOptionsSchema } from '@diad/sg-diffusion';
import { parseLevels } from './flag-values.js';

export interface SettingsFlags {
  set?: string[];
  backbone?: string;
  onnx?: string;
  tStart?: string;
  ddimSteps?: string;
  schedule?: string;
  sigma?: string;
  levels?: string;
  reference?: string;
  targetFpr?: string;
}

/** Commander's collector of a repeatable option. */
export const collect = (v: string, prev: string[] = []) => [...prev, v];

/** Adds `--set` and the shortcut flags to `cmd`. */
export function addSettingsOptions(cmd: Command, whose = "the run's"): Command {
  return cmd
    .option(
      '--set <key=value>',
      `inference setting instead of ${whose} (repeatable): reconstructor.steps=5, reconstructor.tStart=500, featureExtractor=resnet50, anomalyMap.sigma=2, anomalyMap.levels=[1,2], anomalyMap.reference=autoencoded, threshold.targetFpr=0.01, batchSize=4`,
      collect,
    )
    .option('--backbone <name>', 'feature extractor by registered kind (resnet50, mobilenet_v2, ...): --set featureExtractor=NAME')
    .option('--onnx <file>', 'ONNX feature extractor file (outputs at strides 4/8/16)')
    .option('--t-start <n>', 'DDIM: where the reconstruction starts (1..999; partial schedule: from the last DDIM timestep at or below it)')
    .option('--ddim-steps <n>', 'DDIM steps')
    .option('--schedule <s>', 'DDIM schedule: official | partial')
    .option('--sigma <s>', 'anomaly-map Gaussian blur sigma (pixels, >= 0)')
    .option('--levels <list>', 'feature maps compared, comma-separated indices from 0 (resnet50: 0 = layer1, 1 = layer2, 2 = layer3) or "all"')
    .option('--reference <r>', 'what the reconstruction is compared with: input (the paper) | autoencoded (the input through the autoencoder alone)')
    .option('--target-fpr <f>', 'decision threshold: allowed false-positive rate on normal validation images');
}

/** A shortcut flag whose value must be one of `choices`. */
function oneOf(flag: string, v: string, choices: readonly string[]): string {
  if (!choices.includes(v)) throw new Error(`${flag} ${v}: use one of ${choices.join(', ')}`);
  return v;
}

/**
 * A shortcut's `key=value`, checked against the inference schema at once (on any preset's settings:
 * only the one field is judged), so a bad value is refused naming the flag, not the `--set` it becomes.
 */
function schemaChecked(flag: string, key: string, v: string): string {
  const set = `${key}=${v}`;
  applyInferenceSets(PRESETS.ci.inference, [set], flag);
  return set;
}

/** Valid DDIM options, into which one shortcut's value is put to judge it alone. */
const DDIM_PROBE = { tStart: 500, steps: 10, eta: 0, schedule: 'partial' } as const;

/** A DDIM shortcut (`--t-start`, `--ddim-steps`) as `reconstructor.<field>=<n>`, refused naming the flag. */
function ddimChecked(flag: string, field: 'tStart' | 'steps', v: string): string {
  const n = v.trim() === '' ? NaN : Number(v);
  const r = ddimOptionsSchema.safeParse({ ...DDIM_PROBE, [field]: n });
  if (!r.success) {
    const range = field === 'tStart' ? 'an integer timestep from 1 to 999' : 'an integer from 1 to 1000';
    throw new Error(`${flag} ${v}: ${r.error.issues[0].message}; give ${range}`);
  }
  return `reconstructor.${field}=${n}`;
}

/** `--levels 1,2` as a JSON list; `all` as null (every level: the setting is removed). */
function levelsValue(v: string): string {
  const levels = parseLevels(v);
  return levels === 'all' ? 'null' : `[${levels.join(',')}]`;
}

/**
 * The `key=value` settings of the flags, shortcuts first, then `--set` in order.
 * @throws Error for `--backbone` with `--onnx`, an `--onnx` that is not an .onnx file, a
 *   `--schedule`, `--reference` or `--levels` value outside its choices, a `--t-start` or
 *   `--ddim-steps` the DDIM options refuse, or a `--sigma` or `--target-fpr` the inference schema refuses.
 */
export function settingsFromFlags(f: SettingsFlags): string[] {
  if (f.backbone && f.onnx) throw new Error('--backbone and --onnx exclude each other: pick a registered feature extractor or an ONNX file');
  if (f.onnx && !f.onnx.toLowerCase().endsWith('.onnx'))
    throw new Error(`--onnx ${f.onnx}: not an .onnx file; give an ONNX model file (or --backbone NAME for a registered one)`);
  const sets: string[] = [];
  if (f.backbone) sets.push(`featureExtractor=${f.backbone}`);
  if (f.onnx) sets.push('featureExtractor.kind=onnx', `featureExtractor.path=${JSON.stringify(resolve(f.onnx))}`);
  if (f.tStart !== undefined) sets.push(ddimChecked('--t-start', 'tStart', f.tStart));
  if (f.ddimSteps !== undefined) sets.push(ddimChecked('--ddim-steps', 'steps', f.ddimSteps));
  if (f.schedule !== undefined) sets.push(`reconstructor.schedule=${JSON.stringify(oneOf('--schedule', f.schedule, DDIM_SCHEDULES))}`);
  if (f.sigma !== undefined) sets.push(schemaChecked('--sigma', 'anomalyMap.sigma', f.sigma));
  if (f.levels !== undefined) sets.push(`anomalyMap.levels=${levelsValue(f.levels)}`);
  if (f.reference !== undefined) sets.push(`anomalyMap.reference=${JSON.stringify(oneOf('--reference', f.reference, MAP_REFERENCES))}`);
  if (f.targetFpr !== undefined) sets.push(schemaChecked('--target-fpr', 'threshold.targetFpr', f.targetFpr));
  return [...sets, ...(f.set ?? [])];
}
