import type { Command } from 'commander';
import { RunDir } from '../pipeline/run-dir.js';
import { predict } from '../pipeline/predict.js';

/**
 * `diad predict --run runs/NAME IMAGE... [--out DIR]`: prints a JSON array, one entry per image:
 * score, threshold (fixed on validation at the run's target FPR), decision, heatmap PNG path.
 * Exit code 2 when an image could not be read (its entry carries the error).
 */
export function register(program: Command): void {
  program
    .command('predict')
    .description('score images with a fitted run: JSON with score, decision and anomaly-map PNG per image')
    .requiredOption('--run <dir>', 'run folder made by diad fit')
    .argument('<images...>', 'image files')
    .option('--out <dir>', 'folder for the anomaly-map PNGs (default <run>/predict)')
    .action(async (images: string[], f: { run: string; out?: string }) => {
      const run = await RunDir.load(f.run);
      const preds = await predict(run, images, f.out ?? run.path('predict'));
      process.stdout.write(JSON.stringify(preds, null, 2) + '\n');
      if (preds.some((p) => p.error)) process.exitCode = 2;
    });
}
