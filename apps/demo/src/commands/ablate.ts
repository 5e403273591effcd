import type { Command } from 'commander';
import { join } from 'node:path';
import { RunDir, ablate, ablationMarkdown, parseEngine } from '@diad/pipeline';
import { addSettingsOptions, collect, settingsFromFlags, type SettingsFlags } from './settings-flags.js';

/**
 * `diad ablate --run R --vary key=v1,v2 [--vary ...] [--grid] [--out DIR] [--engine tfjs|ort]`:
 * inference variants of one fitted run on its test split, no refit; one table (all seven metrics
 * per class, both modes, seconds per image) and a page with the variants side by side.
 */
export function register(program: Command): void {
  const cmd = program
    .command('ablate')
    .description(
      'score inference variants of one fitted run (sampler, feature extractor, anomaly map) on its test split, no refit: one table and a page side by side',
    )
    .requiredOption('--run <dir>', 'run folder made by diad fit')
    .requiredOption(
      '--vary <key=v1,v2>',
      'an inference setting and its values (repeatable), e.g. reconstructor.steps=5,10 or featureExtractor=resnet50,mobilenet_v2',
      collect,
    )
    .option('--grid', 'every combination of the --vary values (default: the base, then one setting changed at a time)')
    .option('--data <dir>', "dataset root to test on (repeatable; default: the run's roots)", collect)
    .option('--classes <list>', 'only these classes, comma-separated')
    .option('--out <dir>', 'output folder (default <run>/ablation)')
    .option('--overwrite', 'replace an ablation already in the output folder')
    .option('--examples <n>', 'test images shown under every variant on the page', '6')
    .option('--engine <name>', 'inference engine: tfjs | ort (onnxruntime-node)', 'ort')
    .option('--onnx-dir <dir>', 'engine ort: a diad export folder (default <run>/onnx, exported there when missing)')
    .option('--quiet', 'no progress output');
  addSettingsOptions(cmd, "the run's, for every variant (the base the --vary values change)").action(
    async (
      f: SettingsFlags & {
        run: string;
        vary: string[];
        grid?: boolean;
        data: string[];
        classes?: string;
        out?: string;
        overwrite?: boolean;
        examples: string;
        engine?: string;
        onnxDir?: string;
        quiet?: boolean;
      },
    ) => {
      const engine = parseEngine(f.engine);
      const examples = Number(f.examples);
      if (!Number.isInteger(examples) || examples < 0) throw new Error(`--examples ${f.examples}: must be a whole number >= 0`);
      const run = await RunDir.load(f.run);
      const classes =
        f.classes
          ?.split(',')
          .map((c) => c.trim())
          .filter(Boolean) ?? null;
      const { out, result } = await ablate(run, {
        vary: f.vary,
        mode: f.grid ? 'grid' : 'each',
        base: settingsFromFlags(f),
        out: f.out,
        overwrite: f.overwrite,
        roots: f.data,
        classes,
        examples,
        engine,
        onnxDir: f.onnxDir,
        quiet: f.quiet,
      });
      process.stdout.write(ablationMarkdown(result) + '\n');
      process.stderr.write(`page: ${join(out, 'index.html')}\n`);
    },
  );
}
