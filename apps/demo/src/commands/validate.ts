import type { Command } from 'commander';
import { writeFileAtomic } from '@diad/core';
import { RunDir, describeAnomalyMap, describeSampler, formatValidation, parseEngine, readValidation, resolveSettings, validateRun } from '@diad/pipeline';
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
    .option('--json <file>', 'also write the validation point (metrics, reconstruction errors, settings) as JSON');
  addSettingsOptions(cmd).action(async (f: SettingsFlags & { run: string; engine?: string; json?: string }) => {
    const engine = parseEngine(f.engine);
    const sets = settingsFromFlags(f);
    const run = await RunDir.load(f.run);
    const log = (l: string) => process.stderr.write(l + '\n');
    const requested = resolveSettings(run, await readValidation(run), sets);
    const { point, settings, featureProvenance } = await validateRun(run, requested, { engine }, log);
    process.stdout.write(
      `feature extractor ${featureProvenance}, ${describeSampler(settings)}, anomaly map ${describeAnomalyMap(settings)}\n${formatValidation(point).join('\n')}\n`,
    );
    if (f.json) await writeFileAtomic(f.json, JSON.stringify({ settings: { ...settings, featureProvenance }, ...point }, null, 2) + '\n');
  });
}
