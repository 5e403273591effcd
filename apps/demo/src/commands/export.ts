import type { Command } from 'commander';
import { RunDir } from '@diad/pipeline';
import { exportRun, readValidation, resolveSettings } from '@diad/pipeline';
import { addSettingsOptions, settingsFromFlags, type SettingsFlags } from './settings-flags.js';

/**
 * `diad export --run runs/NAME --out DIR`: the run as a self-contained deployment bundle (ONNX
 * graphs of every stage, the feature extractor included, context, threshold and per-class score
 * statistics from validation, checksums, `manifest.json`); prints the manifest, which records the
 * inference settings (the run's, or changed with `--set`). See @diad/pipeline `export.ts`.
 */
export function register(program: Command): void {
  const cmd = program
    .command('export')
    .description('export a fitted run as a self-contained bundle that onnxruntime-node runs (diad serve, @diad/core/bundle)')
    .requiredOption('--run <dir>', 'run folder made by diad fit')
    .requiredOption('--out <dir>', 'output folder of the bundle (new, empty, or an earlier export of this run)')
    .option('--overwrite', 'replace an export of another run in --out');
  addSettingsOptions(cmd).action(async (f: SettingsFlags & { run: string; out: string; overwrite?: boolean }) => {
    const sets = settingsFromFlags(f);
    const run = await RunDir.load(f.run);
    const settings = resolveSettings(run, await readValidation(run), sets);
    const manifest = await exportRun(run, f.out, (l) => process.stderr.write(l + '\n'), { settings, overwrite: f.overwrite });
    process.stdout.write(JSON.stringify(manifest, null, 2) + '\n');
  });
}
