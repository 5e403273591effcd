import type { Command } from 'commander';
import { writeFileAtomic } from '@diad/core';
import { RunDir } from '@diad/pipeline';
import { parseEngine } from '@diad/pipeline';
import { validateRun } from '@diad/pipeline';
import { formatValidation } from '@diad/pipeline';

/** `--t-start`: an integer timestep in 1..999 (as the run config requires). */
function tStartFlag(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 999) throw new Error(`--t-start ${v}: must be an integer timestep in 1..999`);
  return n;
}

/** `--sigma`: a blur sigma in pixels, >= 0. */
function sigmaFlag(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0) throw new Error(`--sigma ${v}: must be a number >= 0 (pixels; 0 = no blur)`);
  return n;
}

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
      if (f.onnx && !f.onnx.toLowerCase().endsWith('.onnx')) throw new Error(`--onnx ${f.onnx}: not an .onnx file; give an ONNX model file (or --backbone NAME for a bundled one)`);
      const tStart = f.tStart === undefined ? undefined : tStartFlag(f.tStart);
      const sigma = f.sigma === undefined ? undefined : sigmaFlag(f.sigma);
      const run = await RunDir.load(f.run);
      const log = (l: string) => process.stderr.write(l + '\n');
      const { point, config, featureProvenance } = await validateRun(
        run,
        {
          featureExtractor: f.onnx ? { kind: 'onnx', path: f.onnx } : f.backbone ? { kind: 'bundled', name: f.backbone } : undefined,
          tStart,
          sigma,
        },
        { engine: parseEngine(f.engine) },
        log,
      );
      process.stdout.write(`feature extractor ${featureProvenance}, DDIM from t=${config.ddim.tStart}, sigma ${config.anomalyMap.sigma}\n${formatValidation(point).join('\n')}\n`);
      const settings = { featureExtractor: config.featureExtractor, featureProvenance, ddim: config.ddim, anomalyMap: config.anomalyMap };
      if (f.json) await writeFileAtomic(f.json, JSON.stringify({ settings, ...point }, null, 2) + '\n');
    });
}
