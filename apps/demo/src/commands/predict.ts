import type { Command } from 'commander';
import { RunDir } from '@diad/pipeline';
import { predict, readValidation, resolveSettings } from '@diad/pipeline';
import { addSettingsOptions, settingsFromFlags, type SettingsFlags } from './settings-flags.js';
import { parseEngine } from '@diad/pipeline';

/**
 * `diad predict --run runs/NAME IMAGE... [--out DIR] [--engine tfjs|ort] [--onnx-dir DIR]`: prints a JSON array, one entry per image:
 * score, threshold (fixed on validation at the target FPR), decision, heatmap PNG path. `--set`
 * and its shortcuts change the inference settings (the threshold then comes from the normal
 * validation images scored with them).
 * Exit code 2 when an image could not be read (its entry carries the error).
 */
export function register(program: Command): void {
  const cmd = program
    .command('predict')
    .description('score images with a fitted run: JSON with score, decision and anomaly-map PNG per image')
    .requiredOption('--run <dir>', 'run folder made by diad fit')
    .argument('<images...>', 'image files, or folders (their images are scored)')
    .option('--out <dir>', 'folder for the anomaly-map PNGs (default <run>/predict)')
    .option('--engine <name>', 'inference engine: tfjs | ort (onnxruntime-node; providers from DIAD_ORT_PROVIDERS)', 'tfjs')
    .option('--onnx-dir <dir>', 'engine ort: a diad export folder (default <run>/onnx, exported there when missing)');
  addSettingsOptions(cmd).action(async (images: string[], f: SettingsFlags & { run: string; out?: string; engine?: string; onnxDir?: string }) => {
    const engine = parseEngine(f.engine, f.onnxDir);
    const sets = settingsFromFlags(f);
    const run = await RunDir.load(f.run);
    const settings = resolveSettings(run, await readValidation(run), sets);
    const preds = await predict(run, images, f.out ?? run.path('predict'), (l) => process.stderr.write(l + '\n'), { engine, onnxDir: f.onnxDir }, settings);
    process.stdout.write(JSON.stringify(preds, null, 2) + '\n');
    if (preds.some((p) => p.error)) process.exitCode = 2;
  });
}
