import type { Command } from 'commander';
import { RunDir } from '@diad/pipeline';
import { exportRun } from '@diad/pipeline';

/**
 * `diad export --run runs/NAME --out DIR`: the run's test-time models as ONNX files (autoencoder
 * encode/decode, hint block, one reconstruction step), its context and `manifest.json`; prints the
 * manifest. See `pipeline/export.ts`.
 */
export function register(program: Command): void {
  program
    .command('export')
    .description('export a fitted run to ONNX (autoencoder, hint block, reconstruction step, context, manifest.json)')
    .requiredOption('--run <dir>', 'run folder made by diad fit')
    .requiredOption('--out <dir>', 'output folder for the ONNX files')
    .action(async (f: { run: string; out: string }) => {
      const run = await RunDir.load(f.run);
      const manifest = await exportRun(run, f.out, (l) => process.stderr.write(l + '\n'));
      process.stdout.write(JSON.stringify(manifest, null, 2) + '\n');
    });
}
