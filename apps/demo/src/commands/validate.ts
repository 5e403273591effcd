import type { Command } from 'commander';
import { writeFileAtomic } from '@diad/core';
import {
  RunDir,
  defectsSchema,
  type DefectsConfig,
  describeAnomalyMap,
  describeSampler,
  formatValidation,
  parseEngine,
  readValidation,
  resolveSettings,
  validateRun,
} from '@diad/pipeline';
import { addSettingsOptions, settingsFromFlags, type SettingsFlags } from './settings-flags.js';

/**
 * `diad validate --run R [--set key=value ...] [--backbone NAME | --onnx FILE] [--t-start N] [--sigma S]`:
 * the run's validation set (normal validation images + synthesised defects) scored with other
 * inference settings, to choose them without the test split.
 */
export function register(program: Command): void {
  const cmd = program
    .command('validate')
    .description('score a fitted run on its validation set (normal + synthesised defects) with other inference settings; never reads the test split')
    .requiredOption('--run <dir>', 'run folder made by diad fit')
    .option('--engine <name>', 'inference engine: tfjs | ort', 'ort')
    .option('--json <file>', 'also write the validation point (metrics, reconstruction errors, settings) as JSON')
    .option(
      '--defects <spec>',
      'make the defective images otherwise than the fit did: copies=N,scale=S,contrast=C (copies of each normal image, size and strength factors; e.g. copies=3,scale=0.5,contrast=0.5)',
    );
  addSettingsOptions(cmd).action(async (f: SettingsFlags & { run: string; engine?: string; json?: string; defects?: string }) => {
    const engine = parseEngine(f.engine);
    const sets = settingsFromFlags(f);
    const defects = f.defects === undefined ? undefined : parseDefects(f.defects);
    const run = await RunDir.load(f.run);
    const log = (l: string) => process.stderr.write(l + '\n');
    const requested = resolveSettings(run, await readValidation(run), sets);
    const made = defects ?? run.config.validation?.defects;
    const { point, settings, featureProvenance } = await validateRun(run, requested, { engine }, log, made);
    process.stdout.write(
      `feature extractor ${featureProvenance}, ${describeSampler(settings)}, anomaly map ${describeAnomalyMap(settings)}\n${formatValidation(point).join('\n')}\n`,
    );
    if (f.json)
      await writeFileAtomic(f.json, JSON.stringify({ settings: { ...settings, featureProvenance }, defects: made ?? null, ...point }, null, 2) + '\n');
  });
}

/**
 * `--defects copies=3,scale=0.5,contrast=0.5` as `validation.defects` (missing keys: 1).
 * @throws Error naming the flag, the bad part and the accepted form.
 */
export function parseDefects(spec: string): DefectsConfig {
  const out: Record<string, number> = { copies: 1, scale: 1, contrast: 1 };
  const given = new Set<string>();
  for (const part of spec.split(',')) {
    const [key, value, ...rest] = part.split('=').map((s) => s.trim());
    if (!(key in out) || value === undefined || rest.length || value === '' || !Number.isFinite(Number(value)))
      throw new Error(`--defects: "${part}" is not key=number with key copies, scale or contrast (e.g. --defects copies=3,scale=0.5,contrast=0.5)`);
    if (given.has(key)) throw new Error(`--defects: ${key} is given twice in "${spec}"; give each key once`);
    given.add(key);
    out[key] = Number(value);
  }
  const parsed = defectsSchema.safeParse(out);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`--defects: ${issue.path.join('.')} ${issue.message} (copies: an integer 1-20, scale: > 0 and <= 4, contrast: > 0 and <= 1)`);
  }
  return parsed.data;
}
