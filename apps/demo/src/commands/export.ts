import type { Command } from 'commander';
import { RunDir } from '@diad/pipeline';
import { exportRun, readValidation, resolveSettings } from '@diad/pipeline';
import { addSettingsOptions, settingsFromFlags, type SettingsFlags } from './settings-flags.js';

/**
 * `diad export --run runs/NAME --out DIR`: the run's test-time models as ONNX files (autoencoder
 * encode/decode, hint block, one reconstruction step), its context and `manifest.json`; prints the
 * manifest, which records the inference settings (the run's, or changed with `--set`). See
 * @diad/pipeline `export.ts`.
 */
export function register(program: Command): void {
  const cmd = program
    .command('export')
    .description('export a fitted run to ONNX (autoencoder, hint block, reconstruction step, context, manifest.json)')
    .requiredOption('--run <dir>', 'run folder made by diad fit')
    .requiredOption('--out <dir>', 'output folder for the ONNX files');
  addSettingsOptions(cmd).action(async (f: SettingsFlags & { run: string; out: string }) => {
    const sets = settingsFromFlags(f);
    const run = await RunDir.load(f.run);
    const settings = resolveSettings(run, await readValidation(run), sets);
    const manifest = await exportRun(run, f.out, (l) => process.stderr.write(l + '\n'), { settings });
    process.stdout.write(JSON.stringify(manifest, null, 2) + '\n');
  });
}
