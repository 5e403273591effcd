import type { Command } from 'commander';
import { join } from 'node:path';
import { metricsMarkdown, parseEngine, parseShard, RunDir, readValidation, resolveSettings, testRun, testShard } from '@diad/pipeline';
import { addSettingsOptions, collect, settingsFromFlags, type SettingsFlags } from './settings-flags.js';

/**
 * `diad test --run runs/NAME [--data DIR ...] [--classes a,b] [--out DIR] [--engine tfjs|ort] [--onnx-dir DIR] [--set key=value ...]`:
 * reconstruction, anomaly maps, the seven metrics per class and mean in both modes, strips and
 * `report.html`, with the run's inference settings or others (no refit). With `--shard K/N` it
 * scores a deterministic 1/N of the test images and writes the shard's state for `diad merge`.
 */
export function register(program: Command): void {
  const cmd = program
    .command('test')
    .description('evaluate a fitted run on the test split: metrics (standard and diad modes), strips, report.html')
    .requiredOption('--run <dir>', 'run folder made by diad fit')
    .option('--data <dir>', "dataset root to test on (repeatable; default: the run's roots)", collect)
    .option('--classes <list>', 'only these classes, comma-separated')
    .option('--out <dir>', 'output folder (default <run>/test); one test per folder')
    .option('--overwrite', 'replace a test result already in the output folder')
    .option('--quiet', 'no progress output')
    .option('--engine <name>', 'inference engine: tfjs | ort (onnxruntime-node; providers from DIAD_ORT_PROVIDERS)', 'tfjs')
    .option('--onnx-dir <dir>', 'engine ort: a diad export folder (default <run>/onnx, exported there when missing)')
    .option(
      '--shard <K/N>',
      'score shard K (0..N-1) of N and write its state for diad merge (default out <run>/test-shard-K-of-N); --shard N takes K from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID',
    );
  addSettingsOptions(cmd).action(
    async (
      f: SettingsFlags & {
        run: string;
        data?: string[];
        shard?: string;
        classes?: string;
        out?: string;
        overwrite?: boolean;
        quiet?: boolean;
        engine?: string;
        onnxDir?: string;
      },
    ) => {
      const engine = parseEngine(f.engine, f.onnxDir);
      const sets = settingsFromFlags(f);
      const shard = f.shard === undefined ? null : parseShard(f.shard);
      const run = await RunDir.load(f.run);
      const settings = resolveSettings(run, await readValidation(run), sets);
      const classes =
        f.classes
          ?.split(',')
          .map((c) => c.trim())
          .filter(Boolean) ?? null;
      const options = { roots: f.data, classes, out: f.out, overwrite: f.overwrite, quiet: f.quiet, engine, onnxDir: f.onnxDir, settings };
      if (shard) {
        const { out, manifest } = await testShard(run, shard, options);
        process.stderr.write(
          `shard ${shard.index}/${shard.count}: ${manifest.images.length} images in ${out}; merge all ${shard.count} with diad merge --run ${f.run} --out DIR SHARD_DIRS...\n`,
        );
        return;
      }
      const { out, report } = await testRun(run, options);
      process.stdout.write(metricsMarkdown(report) + '\n');
      process.stderr.write(`report: ${join(out, 'report.html')} (skipped images: ${report.skipped.length})\n`);
    },
  );
}
