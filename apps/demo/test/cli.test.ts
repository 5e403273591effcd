import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateSynthetic } from '@diad/datasets';
import { ciFitArgs } from './run-cli.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const CLI = resolve(HERE, '..', 'dist', 'cli.js');
const REPO = resolve(HERE, '..', '..', '..');
const SHARED = resolve(REPO, '..', 'shared', 'data');
const HAS_SHARED = existsSync(join(SHARED, 'mvtec_ad', 'bottle')) && existsSync(join(SHARED, 'mtd', 'magnetic_tile'));
if (!HAS_SHARED) console.warn(`[demo cli tests] ${SHARED} not found: the real-data inspect test is skipped`);

function diad(args: string[], env: Record<string, string> = {}) {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run pnpm --filter @diad/demo build first`);
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: REPO, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let tmp = '';
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'diad-cli-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('diad inspect', () => {
  it.skipIf(!HAS_SHARED)('counts the shared mvtec_ad and mtd classes (--json)', () => {
    const r = diad(['inspect', '--data', '../shared/data/mvtec_ad', '--data', '../shared/data/mtd', '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as {
      classes: { name: string; train: number; testGood: number; testDefective: number; masks: number }[];
      problemCount: number;
    };
    expect(report.classes.map((c) => [c.name, c.train, c.testGood, c.testDefective, c.masks])).toEqual([
      ['bottle', 200, 20, 63, 63],
      ['grid', 25, 3, 11, 11],
      ['magnetic_tile', 200, 191, 388, 388],
    ]);
    expect(report.problemCount).toBe(0);
  });

  it('prints a table for a synthetic set and filters classes', async () => {
    const root = join(tmp, 'syn');
    await generateSynthetic(root, { size: 32, train: 4, testGood: 2, testDefective: 1 });
    const r = diad(['inspect', '--data', root, '--classes', 'grain,woven']);
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0].split(/\s{2,}/)).toEqual(['class', 'format', 'train', 'test good', 'test defective', 'masks', 'problems']);
    expect(lines[1].split(/\s+/)).toEqual(['grain', 'mvtec', '4', '2', '3', '3', '0']);
    expect(lines[2].split(/\s+/)).toEqual(['woven', 'mvtec', '4', '2', '3', '3', '0']);
    expect(r.stdout).toContain(`grain (${root}): hole 1, scratch 1, spot 1`);
    expect(r.stdout).toContain('no problems found');
  });

  it('lists problems with file and fix and exits 1', async () => {
    const root = join(tmp, 'broken');
    await generateSynthetic(root, { size: 32, train: 1, testGood: 1, testDefective: 1, classes: ['disc'] });
    const mask = join(root, 'disc', 'ground_truth', 'hole', '000_mask.png');
    rmSync(mask);
    const r = diad(['inspect', '--data', root, '--json']);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as { problemCount: number; classes: { problems: { file: string; message: string; fix: string }[] }[] };
    expect(report.problemCount).toBe(1);
    expect(report.classes[0].problems[0]).toEqual({
      file: join(root, 'disc', 'test', 'hole', '000.png'),
      message: 'defective image without mask',
      fix: `add its ground-truth mask as ${mask}, or move the image out of the test set`,
      split: 'test',
    });
    const text = diad(['inspect', '--data', root, '--no-verify']);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain(
      `1 problem(s):\n${join(root, 'disc', 'test', 'hole', '000.png')}: defective image without mask (fix: add its ground-truth mask as ${mask}`,
    );
  });

  it('names a missing root and an unknown class on stderr and exits 1', () => {
    const missing = join(tmp, 'nope');
    const r = diad(['inspect', '--data', missing]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `diad: ${missing}: dataset root does not exist (fix: pass a folder holding class folders (<class>/train/good, <class>/test/<defect>) or a VisA root)\n`,
    );
    const c = diad(['inspect', '--data', join(tmp, 'syn'), '--classes', 'bottle']);
    expect(c.code).toBe(1);
    expect(c.stderr).toMatch(/class bottle not found \(fix: choose among: disc, grain, woven\)/);
  });
});

describe('diad env', () => {
  it('reports node, package versions, the tfjs engine it initialised and onnxruntime', () => {
    const r = diad(['env', '--json'], { DIAD_TFJS_ENGINE: 'cpu' });
    expect(r.code).toBe(0);
    const env = JSON.parse(r.stdout);
    expect(env.node).toBe(process.version);
    const core = JSON.parse(readFileSync(join(REPO, 'packages', 'core', 'package.json'), 'utf8')) as { version: string };
    expect(env.packages['@diad/core']).toBe(core.version);
    expect(env.packages['@diad/datasets']).toMatch(/^\d+\.\d+\.\d+/);
    expect(env.tfjs.selected.engine).toBe('cpu');
    expect(env.tfjs.selected.backend).toBe('cpu');
    expect(env.tfjs.selected.requested).toEqual({ engine: 'cpu', source: 'env' });
    expect(env.tfjs.available.engines.map((e: { engine: string }) => e.engine)).toEqual(['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu']);
    expect(env.onnxruntime.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(env.onnxruntime.providers.map((p: { name: string }) => p.name)).toContain('cpu');
    const text = diad(['env', '--engine', 'cpu']);
    expect(text.stdout).toMatch(/selected: cpu \(backend cpu, threads 1; requested cpu by option\)/);
    expect(text.stdout).toMatch(/^onnxruntime \d+\.\d+\.\d+; providers cpu/m);
  });

  it('reports an unknown engine name instead of crashing', () => {
    const env = JSON.parse(diad(['env', '--json', '--engine', 'gpu9000']).stdout);
    expect(env.tfjs.error).toMatch(/unknown tfjs engine "gpu9000"/);
  });
});

describe('diad fit checks options and files before writing the run folder', () => {
  let data = '';
  beforeAll(async () => {
    data = join(tmp, 'fit-data');
    await generateSynthetic(data, { size: 64, train: 3, testGood: 1, testDefective: 1, classes: ['disc'] });
  });
  const fit = (out: string, ...extra: string[]) => diad(['fit', '--data', data, '--preset', 'ci', '--out', out, ...extra]);

  it('refuses an unknown --backbone and a missing --onnx file at once, leaving no run folder', () => {
    const a = fit(join(tmp, 'bb'), '--backbone', 'resnet9000');
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(/inference\.featureExtractor\.kind: unknown feature extractor "resnet9000"; registered: resnet50, mobilenet_v2/);
    const b = fit(join(tmp, 'ox'), '--onnx', join(tmp, 'missing.onnx'));
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/inference\.featureExtractor: .*missing\.onnx: no such file/);
    expect(existsSync(join(tmp, 'bb'))).toBe(false);
    expect(existsSync(join(tmp, 'ox'))).toBe(false);
  });

  it("refuses an --init that is not safetensors, or whose shapes are another preset's, in a few lines, leaving no run folder", () => {
    const junk = join(tmp, 'junk.safetensors');
    writeFileSync(junk, 'not a checkpoint');
    const a = fit(join(tmp, 'init-junk'), '--init', junk);
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(/--init .*junk\.safetensors: not a readable safetensors file/);
    expect(existsSync(join(tmp, 'init-junk'))).toBe(false);
    // A checkpoint of other sizes: one tensor named right but shaped wrong, the rest missing.
    const wrong = join(tmp, 'wrong.safetensors');
    writeFileSync(wrong, safetensorsBytes({ 'first_stage_model.encoder.conv_in.weight': [7, 3, 3, 3] }));
    const b = fit(join(tmp, 'init-wrong'), '--init', wrong);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/does not match the run's models\.autoencoder and models\.diad \(preset ci\): \d+ of \d+ parameters missing or mis-shaped/);
    expect(b.stderr).toContain('first_stage_model.encoder.conv_in.weight: [7, 3, 3, 3] in the file, [32, 3, 3, 3] for models.autoencoder');
    expect(b.stderr).toMatch(/\.\.\. and \d+ more/);
    expect(b.stderr.length).toBeLessThan(1500);
    expect(existsSync(join(tmp, 'init-wrong'))).toBe(false);
  });

  it('refuses a split that leaves no validation image, saying why, leaving no run folder', () => {
    const r = fit(join(tmp, 'noval'), '--max-train-per-class', '1');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the validation split is empty: \d+ train image\(s\) of .* at data\.validationFraction 0\.\d+ leave none/);
    expect(r.stderr).toContain('a larger --max-train-per-class');
    expect(existsSync(join(tmp, 'noval'))).toBe(false);
  });

  it('starts although a test image lacks its mask (fit reads the train split only); inspect lists it', async () => {
    const root = join(tmp, 'nomask');
    await generateSynthetic(root, { size: 64, train: 3, testGood: 1, testDefective: 1, classes: ['disc'] });
    const gt = join(root, 'disc', 'ground_truth');
    const defect = readdirSync(gt)[0];
    rmSync(join(gt, defect, readdirSync(join(gt, defect))[0]));
    const r = diad(ciFitArgs(root, join(tmp, 'nomask-run'), { ae: 1, diffusion: 0, sg: 0 }));
    expect(r.code, r.stderr).toBe(0);
    // The ci preset's last 2 stage-1 steps are whole images: with --ae-steps 1 that is every step, and fit says so.
    expect(r.stderr).toContain('autoencoder: all 1 steps on whole images (stages.autoencoder.wholeImages.steps 2 >= its 1 steps), none on crops');
    const i = diad(['inspect', '--data', root]);
    expect(i.code).toBe(1);
    expect(i.stdout + i.stderr).toMatch(/defective image without mask/);
  });

  it('refuses an unknown --engine, a zero --batch-size and providers none of which starts, leaving no run folder', () => {
    const a = fit(join(tmp, 'eng'), '--engine', 'gpu');
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(/--engine gpu: unknown training engine; use one of ort, tfjs/);
    const b = fit(join(tmp, 'bs0'), '--batch-size', '0');
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/--batch-size must be an integer of at least 1, got "0"/);
    const c = diad(['fit', '--data', data, '--preset', 'ci', '--out', join(tmp, 'nocuda')], { DIAD_ORT_PROVIDERS: 'cuda' });
    expect(c.code).toBe(1);
    expect(c.stderr).toMatch(
      /no requested onnxruntime execution provider can start:\n {2}cuda: .*\nAdd cpu as a fallback \(--providers cuda,cpu\), or train with --engine tfjs/,
    );
    for (const d of ['eng', 'bs0', 'nocuda']) expect(existsSync(join(tmp, d)), d).toBe(false);
  });

  it('says so when --out is an existing file', () => {
    const file = join(tmp, 'a-file');
    writeFileSync(file, 'x');
    const r = fit(file);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--out .*a-file is an existing file, not a folder; give a new folder path/);
    expect(r.stderr).not.toMatch(/EEXIST/);
  });
});

describe('help and providers', () => {
  it('fit --help marks the required options, describes the presets and shows no empty default', () => {
    const r = diad(['fit', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--out <dir> +run folder, e\.g\. runs\/NAME \(required unless\s+--resume\)/);
    expect(r.stdout).toMatch(/--data <dir> +dataset root \(required for a new run; repeatable\)/);
    expect(r.stdout).not.toContain('(default: [])');
    // Each preset: image and latent size, parameters, steps, cost.
    const help = r.stdout.replace(/\s+/g, ' ');
    expect(help).toMatch(
      /tiny \(128 px, latents 16x16x4, 8\.7M parameters, 1600\/1000\/800 steps, default features at every level; the demo: fit about \d+ min/,
    );
    expect(help).toMatch(
      /cpu \(128 px, latents 32x32x4, \d+\.\dM parameters, 3500\/2000\/1600 steps \(stage 1 on 32-px crops, its last 100 on whole images\), resnet50 features at levels 1,2; fit measured \d+ min for six classes/,
    );
    const d = diad(['demo', '--preset', 'ci', '--help']);
    expect(d.stdout).not.toContain('fit (tiny)');
  });

  it("a provider that cannot start is one line in diad env, without onnxruntime's native error blocks", () => {
    const fallback = diad(['env', '--no-init'], { DIAD_ORT_PROVIDERS: 'cuda,cpu' });
    expect(fallback.code).toBe(0);
    expect(fallback.stdout).toMatch(/cuda: cannot start: .*\(cuda needs CUDA 12/);
    expect(fallback.stdout).toMatch(/cpu: starts/);
    expect(fallback.stderr).not.toMatch(/\[E:onnxruntime/);
    const only = diad(['--providers', 'cuda', 'env', '--no-init']);
    expect(only.code).toBe(1);
    const bogus = diad(['env', '--no-init', '--providers', 'bogus']);
    expect(bogus.code).toBe(1);
    expect(bogus.stderr).toMatch(/--providers bogus: unknown execution provider\(s\) \[bogus\]/);
  });
});

/** A minimal safetensors file of zero-filled F32 tensors with the given shapes. */
function safetensorsBytes(shapes: Record<string, number[]>): Buffer {
  let offset = 0;
  const header: Record<string, unknown> = {};
  for (const [name, shape] of Object.entries(shapes)) {
    const n = shape.reduce((a, b) => a * b, 1) * 4;
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, Buffer.alloc(offset)]);
}
