import { describe, it, expect } from 'vitest';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { anomalyMap, scoreImages, scoreReconstructions, tensor, Rng, readSafetensors, type SafetensorsFile } from '@diad/core';
import { applyInferenceSets, resolveConfig, configHash, diffConfigs, parseConfig, PRESETS } from '../src/config.js';
import { ablationVariants, splitValues } from '../src/ablate.js';
import { parseShard, shardIndices } from '../src/shard.js';
import type { Autoencoder, FeatureExtractor, HostTensor, Reconstructor } from '@diad/core';
import { RunDir, ConfigMismatchError } from '../src/run-dir.js';
import { runStage, NanLossError, type StageTrainer } from '../src/train-loop.js';
import { checkSettings, decisionThreshold } from '../src/settings.js';
import { checkLatentFit } from '../src/models.js';
import { fit } from '../src/fit.js';
import { phasedTrainer } from '../src/trainers.js';
import { parseDiadConfig } from '@diad/sg-diffusion';
import { configuredAutoencoder } from '@diad/autoencoder';

const tmp = () => mkdtempSync(join(tmpdir(), 'diad-pipeline-'));

describe('run config', () => {
  it('resolves presets with overrides and validates', () => {
    const c = resolveConfig('tiny', { roots: ['/d'], classes: ['b', 'a'], steps: { sg: 7 }, init: '/ckpt.safetensors' });
    expect(c.data.classes).toEqual(['a', 'b']);
    expect(c.stages.sg.steps).toBe(7);
    expect(c.stages.autoencoder.steps).toBe(0); // --init replaces stages 1-2
    expect(c.stages.diffusion.steps).toBe(0);
    expect(c.data.imageSize).toBe(128);
    expect(parseConfig(JSON.parse(JSON.stringify(c)), 'x')).toEqual(c);
  });
  it('--lr-schedule sets every stage; the preset has none', () => {
    expect(Object.values(resolveConfig('ci', { roots: ['/d'] }).stages).map((s) => s.lrSchedule)).toEqual([undefined, undefined, undefined]);
    const c = resolveConfig('ci', { roots: ['/d'], lrSchedule: 'cosine' });
    expect(Object.values(c.stages).map((s) => s.lrSchedule)).toEqual(['cosine', 'cosine', 'cosine']);
    expect(configHash(c)).not.toBe(configHash(resolveConfig('ci', { roots: ['/d'] })));
    // `constant` is the default: written out or given, it hashes as the preset does (a resume is not refused).
    const constant = resolveConfig('ci', { roots: ['/d'], lrSchedule: 'constant' });
    expect(configHash(constant)).toBe(configHash(resolveConfig('ci', { roots: ['/d'] })));
    expect(configHash(resolveConfig('ci', { roots: ['/d'], lrSchedule: 'constant' }))).toBe(configHash(constant));
    const written = { ...constant, stages: { ...constant.stages, sg: { ...constant.stages.sg, lrSchedule: 'constant' } } };
    expect(configHash(parseConfig(written, 'config.json'))).toBe(configHash(constant));
  });
  it('an explicit DDIM start is used as given: no start is chosen on validation then', () => {
    expect(resolveConfig('ci', { roots: ['/d'] }).validation).toEqual({ every: 4, tStarts: [200] });
    const c = resolveConfig('ci', { roots: ['/d'], inference: ['reconstructor.tStart=100'] });
    expect(c.inference.reconstructor.tStart).toBe(100);
    expect(c.validation).toEqual({ every: 4 });
  });

  it('inference settings from key=value: numbers, strings, a new kind starts afresh, bad keys and values are named', () => {
    const base = resolveConfig('ci', { roots: ['/d'] }).inference;
    const s = applyInferenceSets(base, [
      'reconstructor.steps=3',
      'anomalyMap.sigma=2.5',
      'featureExtractor.kind=onnx',
      'featureExtractor.path=/m/wrn.onnx',
      'reconstructor.schedule=official',
    ]);
    expect(s.reconstructor).toEqual({ ...base.reconstructor, steps: 3, schedule: 'official' });
    expect(s.anomalyMap).toEqual({ sigma: 2.5, combine: 'add' });
    expect(s.featureExtractor).toEqual({ kind: 'onnx', path: '/m/wrn.onnx' });
    // A name for an object-valued key is its kind; the old kind's options do not leak into it.
    expect(applyInferenceSets(s, ['featureExtractor=mobilenet_v2']).featureExtractor).toEqual({ kind: 'mobilenet_v2' });
    expect(applyInferenceSets(base, ['batchSize=2']).batchSize).toBe(2);
    expect(() => applyInferenceSets(base, ['anomalyMap.levels=[0,0]'])).toThrow(/levels must be distinct and ascending/);
    // null removes an optional setting: back to every level.
    const layer2 = applyInferenceSets(base, ['anomalyMap.levels=[1]']);
    expect(layer2.anomalyMap.levels).toEqual([1]);
    expect(applyInferenceSets(layer2, ['anomalyMap.levels=null']).anomalyMap).toEqual(base.anomalyMap);
    expect(() => applyInferenceSets(base, ['anomalyMap.sigma=null'])).toThrow(/anomalyMap\.sigma/);
    expect(() => applyInferenceSets(base, ['anomalyMap.levels=1,2'])).toThrow(/such as \[1,2\], or null for every level/);
    expect(base.reconstructor.steps).toBe(PRESETS.ci.inference.reconstructor.steps); // the base is not modified
    expect(() => applyInferenceSets(base, ['ddim.steps=3'])).toThrow(
      /--set ddim\.steps=3: unknown inference setting "ddim"; known: reconstructor, featureExtractor, anomalyMap, threshold, batchSize/,
    );
    expect(() => applyInferenceSets(base, ['anomalyMap.sigma=-1'])).toThrow(/invalid inference settings: anomalyMap\.sigma/);
    expect(() => applyInferenceSets(base, ['sigma'])).toThrow(/--set sigma: expected key=value/);
    expect(() => applyInferenceSets(base, ['anomalyMap.sigma.x=1'])).toThrow(/anomalyMap\.sigma\.x is not an inference setting/);
  });

  it('ablation variants: the base, then one setting at a time (or every combination); JSON values stay whole', () => {
    expect(splitValues('5,10')).toEqual(['5', '10']);
    expect(splitValues('[1,2],[0,1,2], "a,b"')).toEqual(['[1,2]', '[0,1,2]', '"a,b"']);
    const base = resolveConfig('ci', { roots: ['/d'] }).inference;
    const dropped: string[] = [];
    const each = ablationVariants(base, ['reconstructor.steps=2,5', 'anomalyMap.levels=[1,2]'], 'each', (sets, same) =>
      dropped.push(`${sets.join(' ')} = ${same}`),
    );
    // steps=5 is the ci base's own value, so it is not repeated (and the caller is told).
    expect(each.map((v) => v.name)).toEqual(['base', 'reconstructor.steps=2', 'anomalyMap.levels=[1,2]']);
    expect(dropped).toEqual(['reconstructor.steps=5 = base']);
    expect(each[2].settings.anomalyMap.levels).toEqual([1, 2]);
    // The default reference written out is the default: the same settings, the same hash.
    expect(applyInferenceSets(base, ['anomalyMap.reference=input'])).toEqual(base);
    const ci = resolveConfig('ci', { roots: ['/d'] });
    const written = { ...ci, inference: { ...ci.inference, anomalyMap: { ...ci.inference.anomalyMap, reference: 'input' } } };
    expect(parseConfig(written, 'config.json').inference).toEqual(ci.inference);
    expect(applyInferenceSets(base, ['anomalyMap.reference=autoencoded']).anomalyMap.reference).toBe('autoencoded');
    expect(() => applyInferenceSets(base, ['anomalyMap.reference=3'])).toThrow(/anomalyMap\.reference/);
    const grid = ablationVariants(base, ['reconstructor.steps=2,3', 'anomalyMap.sigma=1,2'], 'grid');
    expect(grid.map((v) => v.name)).toEqual(['base', ...['2', '3'].flatMap((s) => ['1', '2'].map((g) => `reconstructor.steps=${s} anomalyMap.sigma=${g}`))]);
    expect(() => ablationVariants(base, [])).toThrow(/give at least one --vary/);
    expect(() => ablationVariants(base, ['anomalyMap.sigma'])).toThrow(/--vary anomalyMap\.sigma: expected key=v1,v2/);
    expect(() => ablationVariants(base, ['anomalyMap.levels=[]'])).toThrow(/anomalyMap\.levels/);
  });

  it('a level the shipped backbone lacks is refused before any work; an ONNX file is checked once loaded', async () => {
    const base = resolveConfig('ci', { roots: ['/d'] }).inference;
    await expect(checkSettings(applyInferenceSets(base, ['anomalyMap.levels=[1,2]']))).resolves.toBeUndefined();
    await expect(checkSettings(applyInferenceSets(base, ['anomalyMap.levels=[1,3]']))).rejects.toThrow(
      'inference.anomalyMap.levels [1, 3]: the feature extractor "default" gives 3 feature maps (levels 0..2); fix: --levels with indices below 3, or --levels all',
    );
    // An ONNX extractor's map count is not known before it is loaded: only its file is checked here.
    const onnx = applyInferenceSets(base, [
      'featureExtractor.kind=onnx',
      `featureExtractor.path=${JSON.stringify(fileURLToPath(import.meta.url))}`,
      'anomalyMap.levels=[7]',
    ]);
    await expect(checkSettings(onnx)).resolves.toBeUndefined();
  });

  it('anomalyMap.levels compares only the chosen feature maps; a level the extractor lacks is named', async () => {
    // A fake extractor: three maps per image (strides 4, 8, 16) drawn from the image values.
    const fake: FeatureExtractor = {
      strides: [4, 8, 16],
      async extract(x) {
        const n = x.shape[0];
        return [4, 8, 16].map((s, l) =>
          tensor(
            Float32Array.from({ length: n * 3 * (16 / s) ** 2 }, (_, i) => Math.sin(x.data[i % x.data.length] * (l + 1) + i)),
            [n, 3, 16 / s, 16 / s],
            'NCHW',
          ),
        );
      },
    };
    const r = new Rng(1);
    const [images, recs] = [tensor(r.normals(2 * 3 * 16 * 16), [2, 3, 16, 16], 'NCHW'), tensor(r.normals(2 * 3 * 16 * 16), [2, 3, 16, 16], 'NCHW')];
    const settings = { anomalyMap: { sigma: 1, combine: 'add' as const, levels: [1, 2] }, batchSize: 2 };
    const got = await scoreReconstructions(fake, images, recs, settings);
    const [fi, fr] = [await fake.extract(images), await fake.extract(recs)];
    const want = anomalyMap(fi.slice(1), fr.slice(1), { size: [16, 16], sigma: 1, mode: 'add' });
    expect([...got.maps.data]).toEqual([...want.data]);
    await expect(scoreReconstructions(fake, images, recs, { ...settings, anomalyMap: { ...settings.anomalyMap, levels: [3] } })).rejects.toThrow(
      /anomalyMap\.levels \[3\]: the feature extractor gives 3 maps \(levels 0\.\.2\)/,
    );
  });

  it('refuses a denoiser that does not fit the autoencoder latents, naming the fields', () => {
    for (const name of ['tiny', 'cpu', 'ci']) {
      const c = PRESETS[name].models;
      const ae = configuredAutoencoder(c.autoencoder, name);
      expect(() => checkLatentFit(ae.kind.latentChannels(ae.config), ae.kind.downsampleFactor(ae.config), parseDiadConfig(c.diad), name)).not.toThrow();
    }
    const cpu = parseDiadConfig(PRESETS.cpu.models.diad);
    expect(() => checkLatentFit(8, 4, cpu, 'x.json')).toThrow(
      /^x\.json: models\.diad\.unet has in_channels 4 and out_channels 4, but the autoencoder's latents have 8 channels .*set both to 8/,
    );
    expect(() => checkLatentFit(4, 8, cpu, 'x.json')).toThrow(/hint_downsample is 4, but the autoencoder downsamples by 8 .*set hint_downsample to 8/);
    expect(() => checkLatentFit(4, 16, cpu, 'x.json')).toThrow(
      /downsamples by 16 .*the hint block downsamples by 2, 4, 8 only: use an autoencoder with 2, 3, 4 ch_mult levels/,
    );
  });

  it('anomalyMap.reference autoencoded compares the reconstruction with decode(encode(x)), not x', async () => {
    // Fake stages with hand-checkable outputs: encode halves, decode adds 1, the sampler negates.
    const map = (t: HostTensor, f: (v: number) => number) => tensor(Float32Array.from(t.data, f), [...t.shape], 'NCHW');
    const autoencoder: Autoencoder = {
      latentChannels: 3,
      downsampleFactor: 1,
      encode: async (x) => map(x, (v) => v / 2),
      decode: async (z) => map(z, (v) => v + 1),
    };
    const reconstructor: Reconstructor = { reconstruct: async (z) => map(z, (v) => -v) };
    // The identity as a feature extractor at stride 1, so the map is 1 - cosine over the 3 channels of each pixel.
    const featureExtractor: FeatureExtractor = { strides: [1], extract: async (x) => [x] };
    const images = tensor(new Rng(3).normals(2 * 3 * 4 * 4), [2, 3, 4, 4], 'NCHW');
    const settings = { anomalyMap: { sigma: 0, combine: 'add' as const }, batchSize: 1 };
    const paper = await scoreImages({ autoencoder, reconstructor, featureExtractor }, images, settings, 0);
    const ours = await scoreImages(
      { autoencoder, reconstructor, featureExtractor },
      images,
      { ...settings, anomalyMap: { ...settings.anomalyMap, reference: 'autoencoded' } },
      0,
    );
    expect(paper.references).toBe(images);
    expect([...ours.references.data]).toEqual([...map(images, (v) => v / 2 + 1).data]);
    // The reconstruction is the same in both: 1 - x/2.
    expect([...ours.reconstructions.data]).toEqual([...paper.reconstructions.data]);
    expect([...ours.reconstructions.data]).toEqual([...map(images, (v) => 1 - v / 2).data]);
    // Pixel 0 of image 0 by hand: 1 - cos(ref, rec) over its 3 channels.
    const at = (t: HostTensor, c: number) => t.data[c * 16];
    const cos = (a: number[], b: number[]) => a.reduce((s, v, i) => s + v * b[i], 0) / Math.hypot(...a) / Math.hypot(...b);
    const pixel = (t: HostTensor) => [0, 1, 2].map((c) => at(t, c));
    const rec = pixel(ours.reconstructions);
    expect(ours.maps.data[0]).toBeCloseTo(1 - cos(pixel(ours.references), rec), 5);
    expect(paper.maps.data[0]).toBeCloseTo(1 - cos(pixel(images), rec), 5);
    expect(ours.maps.data[0]).not.toBeCloseTo(paper.maps.data[0], 3);
  });

  it('shards: K/N or N with the index from a Kubernetes Indexed Job or a Slurm array; whole batches, round robin', () => {
    expect(parseShard('1/3', {})).toEqual({ index: 1, count: 3 });
    expect(parseShard('4', { JOB_COMPLETION_INDEX: '2' })).toEqual({ index: 2, count: 4 });
    expect(parseShard('4', { SLURM_ARRAY_TASK_ID: '3' })).toEqual({ index: 3, count: 4 });
    expect(() => parseShard('3/3', {})).toThrow(/--shard 3\/3: the index must be a whole number from 0 to 2/);
    expect(() => parseShard('4', {})).toThrow(/no shard index; give K\/N/);
    expect(() => parseShard('4', { JOB_COMPLETION_INDEX: '7' })).toThrow(/JOB_COMPLETION_INDEX=7/);
    expect(() => parseShard('a/b', {})).toThrow(/expected K\/N/);
    expect(() => parseShard('0/0', {})).toThrow(/the shard count must be at least 1/);
    // 10 images in batches of 3: batches 0..3 -> shards 0, 1, 0, 1.
    expect(shardIndices(10, 3, { index: 0, count: 2 })).toEqual([0, 1, 2, 6, 7, 8]);
    expect(shardIndices(10, 3, { index: 1, count: 2 })).toEqual([3, 4, 5, 9]);
    expect(shardIndices(2, 3, { index: 1, count: 2 })).toEqual([]);
  });

  it('the hash covers the train config only; a version-1 config (inference at the top level) reads as version 2 with the same hash', () => {
    const a = resolveConfig('ci', { roots: ['/d'] });
    expect(configHash({ ...a, inference: applyInferenceSets(a.inference, ['reconstructor.steps=2', 'anomalyMap.sigma=1']) })).toBe(configHash(a));
    expect(configHash({ ...a, seed: 5 })).not.toBe(configHash(a));
    const { inference, ...train } = a;
    const v1 = {
      ...train,
      version: 1,
      ddim: { tStart: 300, steps: 5, eta: 0, schedule: 'partial' },
      featureExtractor: { kind: 'bundled', name: 'resnet50' },
      anomalyMap: inference.anomalyMap,
      threshold: inference.threshold,
      testBatchSize: 4,
    };
    const read = parseConfig(v1, 'old/config.json');
    expect(read.version).toBe(2);
    expect(read.inference).toEqual({
      ...inference,
      reconstructor: { kind: 'ddim', tStart: 300, steps: 5, eta: 0, schedule: 'partial' },
      featureExtractor: { kind: 'resnet50' },
    });
    expect(configHash(read)).toBe(configHash(a));
  });

  it('refuses a validation interval that misses the SG checkpoints', () => {
    const c = resolveConfig('ci', { roots: ['/d'] });
    expect(() => parseConfig({ ...c, validation: { every: 3 } }, 'x.json')).toThrow(
      /x\.json: invalid run config: validation\.every: 3 is not a multiple of stages\.sg\.checkpointEvery \(2\); validation runs at checkpoints \(fix: a --checkpoint-every that divides 3\)/,
    );
  });

  it('refuses a whole-image phase of stage 1 without crops before it', () => {
    const c = resolveConfig('ci', { roots: ['/d'] });
    const ae = { ...c.stages.autoencoder, crop: null, wholeImages: { steps: 2, batchSize: 1 } };
    expect(() => parseConfig({ ...c, stages: { ...c.stages, autoencoder: ae } }, 'x.json')).toThrow(
      /x\.json: invalid run config: stages\.autoencoder\.wholeImages: a whole-image phase needs crops before it/,
    );
    const ok = { ...ae, crop: 32, wholeImages: { steps: 2, batchSize: 1, lr: 1e-4 } };
    expect(parseConfig({ ...c, stages: { ...c.stages, autoencoder: ok } }, 'x.json').stages.autoencoder.wholeImages).toEqual({
      steps: 2,
      batchSize: 1,
      lr: 1e-4,
    });
  });

  it('rejects unknown presets and invalid fields by name', () => {
    expect(() => resolveConfig('huge', { roots: ['/d'] })).toThrow(/unknown preset "huge"; known presets: tiny, cpu, ci/);
    expect(() => parseConfig({ ...resolveConfig('ci', { roots: ['/d'] }), seed: 1.5 }, 'cfg.json')).toThrow(/cfg.json: invalid run config: seed/);
  });
  it('hash is key-order independent and changes with any field', () => {
    const a = resolveConfig('ci', { roots: ['/d'] });
    const reverse = (v: unknown): unknown =>
      v && typeof v === 'object' && !Array.isArray(v)
        ? Object.fromEntries(
            Object.entries(v)
              .reverse()
              .map(([k, x]) => [k, reverse(x)]),
          )
        : v;
    const shuffled = reverse(a) as typeof a;
    expect(JSON.stringify(shuffled)).not.toBe(JSON.stringify(a));
    expect(configHash(shuffled)).toBe(configHash(a));
    expect(configHash({ ...a, seed: 1 })).not.toBe(configHash(a));
  });
  it('diff lists the dotted paths that differ', () => {
    const a = resolveConfig('ci', { roots: ['/d'] });
    const b = resolveConfig('ci', { roots: ['/d', '/e'], steps: { sg: 99 } });
    expect(diffConfigs(a, b)).toEqual([
      { path: 'data.roots', stored: '["/d"]', requested: '["/d","/e"]' },
      { path: 'stages.sg.steps', stored: String(PRESETS.ci.stages.sg.steps), requested: '99' },
    ]);
  });
});

describe('run folder', () => {
  it('refuses to reopen with another config, naming the fields', async () => {
    const dir = tmp();
    await RunDir.open(dir, resolveConfig('ci', { roots: ['/d'] }));
    await expect(RunDir.open(dir, resolveConfig('ci', { roots: ['/d'] }))).resolves.toBeInstanceOf(RunDir);
    const err = await RunDir.open(dir, resolveConfig('ci', { roots: ['/d'], seed: 3 })).catch((e) => e);
    expect(err).toBeInstanceOf(ConfigMismatchError);
    expect(err.message).toMatch(/made with another config/);
    expect(err.message).toMatch(/seed: run has 0, now 3/);
  });
  it('refuses to resume a fit whose config.json was hand-edited after training began', async () => {
    const dir = tmp();
    const made = await RunDir.open(dir, resolveConfig('ci', { roots: ['/d'] }));
    const file = join(dir, 'config.json');
    const stored = JSON.parse(readFileSync(file, 'utf8'));
    // An edit of the inference section only: the train config's hash is unchanged.
    writeFileSync(file, JSON.stringify({ ...stored, config: { ...stored.config, inference: { ...stored.config.inference, batchSize: 2 } } }));
    expect((await RunDir.load(dir)).recordedHash).toBe((await RunDir.load(dir)).hash);
    writeFileSync(file, JSON.stringify({ ...stored, config: { ...stored.config, seed: 9 } }));
    const edited = await RunDir.load(dir);
    expect(edited.recordedHash).toBe(made.hash);
    expect(edited.hash).not.toBe(made.hash);
    // Nothing trained yet: the edited config is simply the run's config. Once a stage has state, fit refuses.
    mkdirSync(join(dir, 'state'), { recursive: true });
    writeFileSync(join(dir, 'state', 'autoencoder.json'), JSON.stringify({ stage: 'autoencoder', step: 2, done: false, checkpoint: null, losses: [] }));
    await expect(fit(edited, { log: () => {} })).rejects.toThrow(
      `${file} was edited after training began: its train config hashes to ${edited.hash}, the run was made with ${made.hash}.`,
    );
  });
  it('a lock held by a live process refuses, a dead one is taken over', async () => {
    const run = await RunDir.open(tmp(), resolveConfig('ci', { roots: ['/d'] }));
    const release = run.lock();
    expect(readFileSync(run.path('fit.lock'), 'utf8')).toBe(String(process.pid));
    release();
  });
});

/**
 * A toy trainer: fits w to the mean of step-seeded targets by SGD with momentum, so its state
 * has a weight and an optimiser slot, and its result depends on every step's data.
 */
class ToyTrainer implements StageTrainer {
  w = new Float32Array([0, 0]);
  m = new Float32Array([0, 0]);
  updates = 0;
  constructor(
    private readonly nanAt = -1,
    readonly batchSize = 2,
  ) {}
  async step(step: number): Promise<number> {
    if (step === this.nanAt) return NaN;
    this.updates++;
    const r = new Rng(42, step);
    let loss = 0;
    for (let i = 0; i < 2; i++) {
      const target = r.normal() + 3;
      const g = this.w[i] - target;
      loss += g * g;
      this.m[i] = 0.9 * this.m[i] + g;
      this.w[i] -= 0.1 * this.m[i];
    }
    return loss;
  }
  async state() {
    return {
      'toy.w': tensor(this.w.slice(), [2]),
      'optimizer.toy.w.m': tensor(this.m.slice(), [2]),
      'optimizer.step': tensor(new Float32Array([this.updates]), [1]),
    };
  }
  async load(f: SafetensorsFile) {
    this.w = f.float32('toy.w').data as Float32Array;
    this.m = f.float32('optimizer.toy.w.m').data as Float32Array;
    this.updates = f.float32('optimizer.step').data[0];
  }
  dispose() {}
}

describe('phased stage trainer (stage 1 on crops, then on whole images)', () => {
  const cfg = { steps: 10, batchSize: 2, lr: 0.1, checkpointEvery: 3 };
  /** Phase 1 (batch 2) up to step 7, phase 2 (batch 1) after; `opened` records which phases were opened. */
  const phased = (opened: string[], crashAt = -1) =>
    phasedTrainer([
      { from: 0, batchSize: 2, lr: () => 0.1, open: async () => (opened.push('crops'), new ToyTrainer()) },
      {
        from: 7,
        batchSize: 1,
        lr: (t) => 0.01 / t,
        open: async () => {
          opened.push('whole');
          const t = new ToyTrainer(-1, 1);
          const step = t.step.bind(t);
          t.step = async (s) => {
            if (s === crashAt) throw new Error('killed');
            return step(s);
          };
          return t;
        },
      },
    ]);
  it('hands weights and optimiser state to the next phase: the two phases end where one trainer would', async () => {
    const one = new ToyTrainer();
    await runStage(await RunDir.open(tmp(), resolveConfig('ci', { roots: ['/d'] })), 'sg', cfg, one, { quiet: true });
    const opened: string[] = [];
    const t = phased(opened);
    const st = await runStage(await RunDir.open(tmp(), resolveConfig('ci', { roots: ['/d'] })), 'sg', cfg, t, { quiet: true });
    expect(opened).toEqual(['crops', 'whole']);
    expect(t.batchSize).toBe(1);
    const state = (await t.state()) as Record<string, HostTensor>;
    expect([...state['toy.w'].data]).toEqual([...one.w]);
    expect([...state['optimizer.toy.w.m'].data]).toEqual([...one.m]);
    expect(state['optimizer.step'].data[0]).toBe(10);
    expect(st.step).toBe(10);
    // Each logged step's rate is its phase's (update t = step t - 1): 3 and 6 in phase 1, 9 and 10 in phase 2.
    expect(st.losses.map((l) => [l.step, l.lr])).toEqual([
      [3, 0.1],
      [6, 0.1],
      [9, 0.01 / 9],
      [10, 0.01 / 10],
    ]);
  });
  it('a resumed stage opens the phase of its checkpoint: crashed in phase 2 after the step-9 checkpoint, only phase 2 reopens', async () => {
    const one = new ToyTrainer();
    await runStage(await RunDir.open(tmp(), resolveConfig('ci', { roots: ['/d'] })), 'sg', cfg, one, { quiet: true });
    const run = await RunDir.open(tmp(), resolveConfig('ci', { roots: ['/d'] }));
    const first: string[] = [];
    await expect(runStage(run, 'sg', cfg, phased(first, 9), { quiet: true })).rejects.toThrow('killed');
    expect(first).toEqual(['crops', 'whole']);
    const again: string[] = [];
    const t = phased(again);
    await runStage(run, 'sg', cfg, t, { quiet: true });
    expect(again).toEqual(['whole']);
    expect([...((await t.state()) as Record<string, HostTensor>)['toy.w'].data]).toEqual([...one.w]);
  });
  it('refuses phases that do not start at step 0', () => {
    expect(() => phasedTrainer([{ from: 3, batchSize: 1, lr: () => 0.1, open: async () => new ToyTrainer() }])).toThrow(/start at step 0/);
  });
});

describe('resumable training loop', () => {
  const cfg = { steps: 10, batchSize: 2, lr: 0.1, checkpointEvery: 3 };
  it('a run interrupted after a checkpoint resumes to the same weights as an uninterrupted one', async () => {
    const full = new ToyTrainer();
    const runA = await RunDir.open(tmp(), resolveConfig('ci', { roots: ['/d'] }));
    const stA = await runStage(runA, 'sg', cfg, full, { quiet: true });
    expect(stA).toMatchObject({ step: 10, done: true, checkpoint: 'checkpoints/sg-000010.safetensors' });
    expect(stA.losses.map((l) => l.step)).toEqual([3, 6, 9, 10]);
    expect(stA.losses.map((l) => l.lr)).toEqual([0.1, 0.1, 0.1, 0.1]);
    // A cosine stage logs the rate of each logged update: lr (1 + cos(pi (t - 1) / 10)) / 2.
    const cosine = await runStage(await RunDir.open(tmp(), resolveConfig('ci', { roots: ['/d'] })), 'sg', { ...cfg, lrSchedule: 'cosine' }, new ToyTrainer(), {
      quiet: true,
    });
    const want = [3, 6, 9, 10].map((t) => (0.1 * (1 + Math.cos((Math.PI * (t - 1)) / 10))) / 2);
    for (const [i, l] of cosine.losses.entries()) expect(l.lr).toBeCloseTo(want[i], 12);

    const runB = await RunDir.open(tmp(), resolveConfig('ci', { roots: ['/d'] }));
    // Crash at step 7 (after the step-6 checkpoint), as a kill would.
    const crashing = new ToyTrainer();
    const origStep = crashing.step.bind(crashing);
    crashing.step = async (s) => {
      if (s === 7) throw new Error('killed');
      return origStep(s);
    };
    await expect(runStage(runB, 'sg', cfg, crashing, { quiet: true })).rejects.toThrow('killed');
    expect((await runB.readStage('sg'))?.step).toBe(6);
    const resumed = new ToyTrainer();
    const stB = await runStage(runB, 'sg', cfg, resumed, { quiet: true });
    expect(stB.step).toBe(10);
    expect([...resumed.w]).toEqual([...full.w]);
    expect(readdirSync(runB.path('checkpoints'))).toEqual(['sg-000010.safetensors']);
    // A finished stage is not rerun.
    const again = new ToyTrainer();
    await runStage(runB, 'sg', cfg, again, { quiet: true });
    expect([...again.w]).toEqual([0, 0]);
  });

  it('a failed checkpoint write (as on a full disk) leaves the previous checkpoint and state intact', async () => {
    const run = await RunDir.open(tmp(), resolveConfig('ci', { roots: ['/d'] }));
    // After the step-3 checkpoint, a directory where the step-6 one should go makes its final rename fail.
    const t = new ToyTrainer();
    const step = t.step.bind(t);
    t.step = async (k) => {
      if (k === 4) mkdirSync(run.path('checkpoints', 'sg-000006.safetensors'));
      return step(k);
    };
    await expect(runStage(run, 'sg', cfg, t, { quiet: true })).rejects.toThrow(/could not write .*sg-000006\.safetensors \(previous version kept\)/);
    const st = await run.readStage('sg');
    expect(st).toMatchObject({ step: 3, checkpoint: 'checkpoints/sg-000003.safetensors', done: false });
    expect((await readSafetensors(run.path(st!.checkpoint!))).float32('toy.w').shape).toEqual([2]);
    expect(readdirSync(run.path('checkpoints')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('a NaN loss stops with the step and the last good checkpoint', async () => {
    const run = await RunDir.open(tmp(), resolveConfig('ci', { roots: ['/d'] }));
    const err = await runStage(run, 'autoencoder', cfg, new ToyTrainer(7), { quiet: true }).catch((e) => e);
    expect(err).toBeInstanceOf(NanLossError);
    expect(err.step).toBe(7);
    expect(err.lastCheckpoint).toBe(run.path('checkpoints/autoencoder-000006.safetensors'));
    expect(err.message).toMatch(/loss is NaN at step 8; training stopped. The last good checkpoint is .*autoencoder-000006.safetensors/);
    expect((await run.readStage('autoencoder'))?.step).toBe(6);
  });
});

describe('threshold at a target false-positive rate', () => {
  const s = [5, 1, 9, 3, 7, 2, 8, 4, 10, 6];
  it('flags (score >= threshold) at most targetFpr of the normal validation scores', () => {
    expect(decisionThreshold(s, 0.05)).toBeGreaterThan(10); // none may be flagged: just above the highest
    expect(decisionThreshold(s, 0.05)).toBeLessThan(10 + 1e-12);
    expect(decisionThreshold(s, 0.2)).toBe(9); // 9 and 10
    expect(decisionThreshold(s, 1)).toBe(1);
    expect(decisionThreshold([1, 1, 1], 0.4)).toBeGreaterThan(1); // a tie cannot be split: none flagged
  });
  it('refuses an empty validation split, naming the fix', () => {
    expect(() => decisionThreshold([], 0.05)).toThrow(/validation split is empty \(raise data\.validationFraction/);
  });
});
