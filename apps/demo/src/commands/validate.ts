import type { Command } from 'commander';
import { writeFileAtomic } from '@diad/core';
import { RunDir } from '../pipeline/run-dir.js';
import { parseEngine } from '../pipeline/ort-models.js';
import { validateRun } from '../pipeline/validate-run.js';
import { formatValidation } from '../pipeline/validate.js';

const int = (name: string, v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`--${name} ${v}: not an integer`);
  return n;
};

/**
 * `diad validate --run R [--backbone NAME | --onnx FILE] [--t-start N] [--sigma S]`: the run's
 * validation set (normal validation images + synthesised defects) scored with other inference
 * settings, to choose them without the test split.
 */
export function register(program: Command): void {
  program
    .command('validate')
    .description('score a fitted run on its validation set (normal + synthesised defects) with other inference settings; never reads the test split')
    .requiredOption('--run <dir>', 'run folder made by diad fit')
    .option('--backbone <name>', 'bundled feature extractor instead of the run\'s')
    .option('--onnx <file>', 'ONNX feature extractor file instead of the run\'s')
    .option('--t-start <n>', 'DDIM start instead of the run\'s')
    .option('--sigma <s>', 'anomaly-map blur sigma (pixels) instead of the run\'s')
    .option('--engine <name>', 'inference engine: tfjs | ort', 'ort')
    .option('--json <file>', 'also write the validation point (metrics, reconstruction errors, settings) as JSON')
    .action(async (f: { run: string; backbone?: string; onnx?: string; tStart?: string; sigma?: string; engine?: string; json?: string }) => {
      if (f.backbone && f.onnx) throw new Error('give --backbone or --onnx, not both');
      const run = await RunDir.load(f.run);
      const log = (l: string) => process.stderr.write(l + '\n');
      const { point, config } = await validateRun(
        run,
        {
          featureExtractor: f.onnx ? { kind: 'onnx', path: f.onnx } : f.backbone ? { kind: 'bundled', name: f.backbone } : undefined,
          tStart: f.tStart === undefined ? undefined : int('t-start', f.tStart),
          sigma: f.sigma === undefined ? undefined : Number(f.sigma),
        },
        { engine: parseEngine(f.engine) },
        log,
      );
      const fe = config.featureExtractor.kind === 'onnx' ? config.featureExtractor.path : config.featureExtractor.name;
      process.stdout.write(`feature extractor ${fe}, DDIM from t=${config.ddim.tStart}, sigma ${config.anomalyMap.sigma}\n${formatValidation(point).join('\n')}\n`);
      if (f.json) await writeFileAtomic(f.json, JSON.stringify({ settings: { featureExtractor: config.featureExtractor, ddim: config.ddim, anomalyMap: config.anomalyMap }, ...point }, null, 2) + '\n');
    });
}
