import type { Command } from 'commander';
import { join, resolve } from 'node:path';
import { ensureSynthetic } from '@diad/datasets';
import { RunDir } from '@diad/pipeline';
import { inspectInit, preflightFit } from '@diad/pipeline';
import { testRun } from '@diad/pipeline';
import { metricsMarkdown } from '@diad/pipeline';
import { addModelOptions, configFromFlags, fitOrInterrupt, parseTrainEngine, type FitFlags } from './fit.js';

/**
 * `diad demo [--out DIR]`: generates the embedded synthetic multi-class dataset
 * (@diad/datasets), fits the `tiny` preset on it, tests, and writes the report. Resumable like
 * `fit` (run it again after an interruption). The default folder is `runs/demo` for the `tiny`
 * preset and `runs/demo-<preset>` for others, so a quick `--preset ci` run does not block the real one.
 */
export function register(program: Command): void {
  addModelOptions(
    program
      .command('demo')
      .description('the main job on the embedded synthetic data: generate, fit the preset (default tiny), test, report')
      .option('--out <dir>', 'run folder (default runs/demo, or runs/demo-<preset> for other presets)')
      .option('--synthetic <dir>', 'where the synthetic dataset is generated (default <out>/data)')
      .option('--train-per-class <n>', 'synthetic train images per class', '24'),
  ).action(async (f: FitFlags & { out?: string; synthetic?: string; trainPerClass: string }) => {
    const t0 = Date.now();
    const engine = parseTrainEngine(f.engine);
    const out = resolve(f.out ?? (f.preset === 'tiny' ? 'runs/demo' : `runs/demo-${f.preset}`));
    const flags: FitFlags = { ...f, data: [] };
    const textEncoder = f.init ? (await inspectInit(resolve(f.init))).textEncoder : false;
    const probe = configFromFlags({ ...flags, data: ['.'] }, textEncoder);
    const { root, generated } = await ensureSynthetic(f.synthetic ?? join(out, 'data'), { size: probe.data.imageSize, train: Number(f.trainPerClass) });
    process.stderr.write(`synthetic dataset: ${root} (${generated ? 'generated' : 'already there'})\n`);
    const cfg = configFromFlags({ ...flags, data: [root] }, textEncoder);
    await preflightFit(cfg, out, engine);
    const run = await RunDir.open(out, cfg);
    if (!(await fitOrInterrupt(run, f.quiet, engine))) return;
    // The demo tests on onnxruntime (the run is exported to <run>/onnx first), as it trains.
    const { out: testOut, report } = await testRun(run, { quiet: f.quiet, engine: 'ort', overwrite: true });
    process.stdout.write(metricsMarkdown(report) + '\n');
    process.stderr.write(`demo done in ${((Date.now() - t0) / 1000).toFixed(0)} s; report: ${join(testOut, 'report.html')}\n`);
  });
}
