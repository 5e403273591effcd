/**
 * `diad export` and `--engine ort` on a small `ci` run (synthetic data, through the built CLI):
 * the manifest describes the files, the files open on onnxruntime and run at the manifest's
 * shapes, `diad test` / `diad predict` give the same numbers on both engines, and the bundle alone,
 * loaded in a fresh process with @diad/core only, gives `diad test`'s scores.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureSynthetic, loadRgb, rgbToTensor } from '@diad/datasets';
import { DdimReconstructor, ddimVisitedSteps, readSafetensors, tensor, writeSafetensors, type DdimOptions } from '@diad/core';
import { OrtAutoencoder, OrtGuidedDenoiser } from '@diad/core/ort';
import { DiadBundle, sha256File, type BundleManifest } from '@diad/core/bundle';
import { CLI, diad } from './run-cli.js';

type Metrics = { modes: Record<string, { classes: Record<string, Record<string, number>>; mean: Record<string, number> }> };
const metrics = (dir: string): Metrics => JSON.parse(readFileSync(join(dir, 'metrics.json'), 'utf8'));

describe('diad export and --engine ort (ci preset)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'diad-export-'));
  const data = join(dir, 'data');
  const run = join(dir, 'run');
  const onnx = join(dir, 'onnx');
  let manifest: BundleManifest;

  beforeAll(async () => {
    await ensureSynthetic(data, { size: 64, train: 4 });
    const fit = await diad(['demo', '--preset', 'ci', '--out', run, '--synthetic', data, '--train-per-class', '4', '--quiet']);
    if (fit.code !== 0) throw new Error(`demo failed: ${fit.stderr}`);
    const ex = await diad(['export', '--run', run, '--out', onnx]);
    if (ex.code !== 0) throw new Error(`export failed: ${ex.stderr}`);
    manifest = JSON.parse(ex.stdout);
  }, 400_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a manifest that matches the run and its files', () => {
    const cfg = JSON.parse(readFileSync(join(run, 'config.json'), 'utf8'));
    expect(JSON.parse(readFileSync(join(onnx, 'manifest.json'), 'utf8'))).toEqual(manifest);
    const v = JSON.parse(readFileSync(join(run, 'validation.json'), 'utf8'));
    expect(manifest).toMatchObject({ format: 'diad-bundle', version: 2, preset: 'ci', configHash: cfg.hash, scaleFactor: 0.18215, seed: cfg.config.seed });
    const { inference: _defaults, ...trainConfig } = cfg.config;
    expect(manifest.config).toEqual(trainConfig);
    // The decision and class statistics come from the fit's validation scores.
    expect(manifest.decision).toMatchObject({ threshold: v.threshold, targetFpr: v.targetFpr, source: 'fit' });
    const woven = v.scores.filter((s: { className: string }) => s.className === 'woven').map((s: { score: number }) => s.score);
    const mean = woven.reduce((a: number, b: number) => a + b, 0) / woven.length;
    expect(manifest.classScores.woven.count).toBe(woven.length);
    expect(manifest.classScores.woven.mean).toBeCloseTo(mean, 12);
    // The inference settings it records: the run's, with the DDIM start validation chose.
    expect(manifest.inference).toEqual({ ...cfg.config.inference, reconstructor: { ...cfg.config.inference.reconstructor, tStart: v.selected.tStart } });
    for (const f of Object.values(manifest.files)) expect(existsSync(join(onnx, f!))).toBe(true);
    expect(manifest.files.featureExtractor).toBe('feature_extractor.onnx');
    // The checkpoints inference uses: each stage's last, or the SG checkpoint validation chose (selection.json).
    const selection = existsSync(join(run, 'selection.json')) ? JSON.parse(readFileSync(join(run, 'selection.json'), 'utf8')) : null;
    for (const st of ['autoencoder', 'diffusion', 'sg'] as const) {
      const last = JSON.parse(readFileSync(join(run, 'state', `${st}.json`), 'utf8')).checkpoint;
      expect(manifest.checkpoints[st]).toBe(selection?.stage === st ? selection.checkpoint : last);
    }
    // ci: 64 px images, factor 8 (ch_mult of length 4), 4 latent channels, 4 learned context tokens of 64.
    expect(manifest.shapes.step).toEqual({ latent: ['N', 4, 8, 8], guided_hint: ['N', 32, 8, 8], timestep: ['N'], context: ['N', 4, 64], eps: ['N', 4, 8, 8] });
    expect(manifest.shapes.autoencoderEncode.image).toEqual(['N', 3, 64, 64]);
    const { hint, step, reconstruction } = manifest.flopsPerImage;
    expect(hint).toBeGreaterThan(0);
    expect(step).toBeGreaterThan(hint);
    // A reconstruction runs the hint block once and the step once per DDIM timestep it visits.
    const { kind: _kind, ...ddim } = manifest.inference.reconstructor;
    const visited = ddimVisitedSteps(ddim as DdimOptions);
    expect(visited).toBeGreaterThanOrEqual(1);
    expect(reconstruction).toBe(hint + visited * step);
  });

  it('the files open on onnxruntime and run at the manifest shapes', async () => {
    const cfg = JSON.parse(readFileSync(join(run, 'config.json'), 'utf8')).config;
    const f = (k: keyof BundleManifest['files']) => join(onnx, manifest.files[k]!);
    const ae = await OrtAutoencoder.open({ encode: f('autoencoderEncode'), decode: f('autoencoderDecode') }, { latentChannels: 4, downsampleFactor: 8 });
    const context = (await readSafetensors(f('context'))).float32('context');
    expect(context.shape).toEqual(manifest.shapes.context.context);
    const denoiser = await OrtGuidedDenoiser.open({ hint: f('hint'), step: f('step') }, context);
    const { kind: _kind, ...ddim } = cfg.inference.reconstructor;
    const rec = new DdimReconstructor(denoiser, ddim);
    try {
      const x = tensor(
        new Float32Array(2 * 3 * 64 * 64).map((_, i) => Math.sin(i)),
        [2, 3, 64, 64],
        'NCHW',
      );
      const z = await ae.encode(x);
      expect(z.shape).toEqual([2, 4, 8, 8]);
      const zr = await rec.reconstruct(z, x, { seed: 1 });
      expect(zr.shape).toEqual([2, 4, 8, 8]);
      const img = await ae.decode(zr);
      expect(img.shape).toEqual([2, 3, 64, 64]);
      expect(img.data.every(Number.isFinite)).toBe(true);
    } finally {
      await ae.release();
      await denoiser.release();
    }
  });

  it('diad test gives the same seven metrics (both modes) on ort as on tfjs, to 1e-3', async () => {
    const r = await diad(['test', '--run', run, '--engine', 'ort', '--onnx-dir', onnx, '--out', join(dir, 'test-ort'), '--quiet']);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const tfjs = metrics(join(run, 'test'));
    const ort = metrics(join(dir, 'test-ort'));
    let maxDiff = 0;
    for (const mode of ['standard', 'diad']) {
      const rows = (m: Metrics) => [...Object.entries(m.modes[mode].classes), ['mean', m.modes[mode].mean] as const];
      const a = rows(tfjs);
      const b = rows(ort);
      expect(b.map(([k]) => k)).toEqual(a.map(([k]) => k));
      for (let i = 0; i < a.length; i++) {
        expect(Object.keys(b[i][1])).toEqual(Object.keys(a[i][1]));
        expect(Object.keys(a[i][1])).toHaveLength(7);
        for (const k of Object.keys(a[i][1])) {
          const d = Math.abs(a[i][1][k] - b[i][1][k]);
          maxDiff = Math.max(maxDiff, d);
          expect(d, `${mode} ${a[i][0]} ${k}: tfjs ${a[i][1][k]}, ort ${b[i][1][k]}`).toBeLessThanOrEqual(1e-3);
        }
      }
    }
    console.log(`[export test] max |tfjs - ort| over 2 modes x 4 rows x 7 metrics: ${maxDiff}`);
  }, 240_000);

  it('--engine ort without --onnx-dir uses the run export made with --out, or exports into <run>/onnx when there is none; predict scores match tfjs', async () => {
    const img = join(data, 'woven', 'test', 'good', '000.png');
    rmSync(join(run, 'onnx'), { recursive: true, force: true }); // `diad demo` tested on ort, which exported there
    const t = await diad(['predict', '--run', run, img, '--out', join(dir, 'p-tfjs')]);
    const used = await diad(['predict', '--run', run, img, '--engine', 'ort', '--out', join(dir, 'p-ort-used')]);
    expect([t.code, used.code]).toEqual([0, 0]);
    expect(used.stderr).toContain(`engine ort: using the run's export in ${onnx}`);
    expect(existsSync(join(run, 'onnx'))).toBe(false);
    rmSync(join(run, 'exports.json'));
    const o = await diad(['predict', '--run', run, img, '--engine', 'ort', '--out', join(dir, 'p-ort')]);
    expect(o.code).toBe(0);
    expect(o.stderr).toContain(`engine ort: no up-to-date export of the run; exporting it to ${join(run, 'onnx')}`);
    expect(JSON.parse(readFileSync(join(run, 'onnx', 'manifest.json'), 'utf8')).configHash).toBe(manifest.configHash);
    for (const r of [used, o]) {
      const [st, so] = [JSON.parse(t.stdout)[0].score, JSON.parse(r.stdout)[0].score];
      expect(Math.abs(st - so)).toBeLessThanOrEqual(1e-3 * Math.max(1, Math.abs(st)));
    }
  }, 240_000);

  it('diad bench prints one JSON line whose FLOPs match the export of the same sizes', async () => {
    const r = await diad(['bench', '--preset', 'ci', '--batch', '2', '--runs', '1', '--hint-widths', 'preset', '--json']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const b = JSON.parse(lines[0]);
    expect(b).toMatchObject({ preset: 'ci', batch: 2, hint_widths: 'preset', runs: 1 });
    // The ci run above has the preset's sizes; bench counts the hint block and 10 steps.
    expect(b.gflop_per_image * 1e9).toBeCloseTo(manifest.flopsPerImage.hint + 10 * manifest.flopsPerImage.step, 0);
    for (const v of [b.ddim10_images_per_s.tfjs, b.ddim10_images_per_s.ort, b.test_ms_per_image, b.peak_rss_mb]) expect(v).toBeGreaterThan(0);
  }, 120_000);

  it('the bundle alone, in a fresh process that may import only @diad/core and onnxruntime-node, gives the scores of diad test --engine ort (to 1e-5)', async () => {
    const out = join(dir, 'test-ort');
    if (!existsSync(join(out, 'scores.csv')))
      expect((await diad(['test', '--run', run, '--engine', 'ort', '--onnx-dir', onnx, '--out', out, '--quiet'])).code).toBe(0);
    const rows = readFileSync(join(out, 'scores.csv'), 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split(','));
    expect(rows.length).toBeGreaterThan(4);
    // The test images, preprocessed as diad test does (the manifest's preprocessing).
    const size = manifest.preprocessing.size;
    const images = rgbToTensor(await Promise.all(rows.map((r) => loadRgb(r[5], size))));
    const inputs = join(dir, 'bundle-inputs.safetensors');
    await writeSafetensors(inputs, { images });
    const child = await promisify(execFile)(process.execPath, [fileURLToPath(new URL('bundle-child.mjs', import.meta.url)), onnx, inputs], {
      maxBuffer: 1 << 24,
    });
    const got = JSON.parse(child.stdout) as { scores: number[]; anomalous: boolean[] };
    let maxDiff = 0;
    rows.forEach((r, i) => {
      const d = Math.abs(Number(r[4]) - got.scores[i]);
      maxDiff = Math.max(maxDiff, d);
      expect(d, `${r[0]}: diad test ${r[4]}, bundle ${got.scores[i]}`).toBeLessThanOrEqual(1e-5);
      expect(got.anomalous[i]).toBe(got.scores[i] >= manifest.decision!.threshold);
    });
    console.log(`[export test] bundle vs diad test --engine ort: max |score diff| ${maxDiff} over ${rows.length} images`);
  }, 240_000);

  it('a bundle with a changed file, a missing file or another version is refused by name; export refuses to write over other files', async () => {
    const copy = join(dir, 'bundle-copy');
    cpSync(onnx, copy, { recursive: true });
    const hint = join(copy, 'hint.onnx');
    const bytes = readFileSync(hint);
    bytes[bytes.length - 1] ^= 1;
    writeFileSync(hint, bytes);
    await expect(DiadBundle.open(copy)).rejects.toThrow(/hint\.onnx was changed after export/);
    writeFileSync(hint, readFileSync(join(onnx, 'hint.onnx')));
    expect(await sha256File(hint)).toBe(manifest.checksums['hint.onnx']);
    rmSync(join(copy, 'context.safetensors'));
    await expect(DiadBundle.open(copy)).rejects.toThrow(/context\.safetensors is missing from the bundle/);
    cpSync(join(onnx, 'context.safetensors'), join(copy, 'context.safetensors'));
    writeFileSync(join(copy, 'manifest.json'), JSON.stringify({ ...manifest, version: 3 }));
    await expect(DiadBundle.open(copy)).rejects.toThrow(/bundle version 3 .*this @diad\/core reads versions 1, 2/);
    writeFileSync(join(copy, 'manifest.json'), JSON.stringify({ ...manifest, files: { ...manifest.files, step: '../step.onnx' } }));
    await expect(DiadBundle.open(copy)).rejects.toThrow(/files\.step "\.\.\/step\.onnx" is not a file name inside the bundle/);
    // A hand-edited manifest whose decision is no number would flip decisions: refused.
    writeFileSync(join(copy, 'manifest.json'), JSON.stringify({ ...manifest, decision: { ...manifest.decision, threshold: 'abc' } }));
    await expect(DiadBundle.open(copy)).rejects.toThrow(/manifest is damaged \(decision has no numeric threshold/);
    const { inference: _gone, ...noInference } = manifest;
    writeFileSync(join(copy, 'manifest.json'), JSON.stringify(noInference));
    await expect(DiadBundle.open(copy)).rejects.toThrow(/manifest is damaged \(inference\.reconstructor\.kind is missing/);
    await expect(DiadBundle.open(run)).rejects.toThrow(/is a run folder, not a bundle; export it first: `diad export --run/);
    await expect(DiadBundle.open(join(dir, 'nowhere'))).rejects.toThrow(/nowhere does not exist/);
    // A failed export leaves the folder as it was: here the models are written (to a folder beside it)
    // before the calibration of the changed settings finds that a TF-graph backbone has no ONNX form.
    writeFileSync(join(copy, 'manifest.json'), readFileSync(join(onnx, 'manifest.json')));
    const failed = await diad(['export', '--run', run, '--out', copy, '--set', 'featureExtractor=mobilenet_v2_mid']);
    expect([failed.code, failed.stderr]).toEqual([1, expect.stringMatching(/has no feature extractor \(mobilenet_v2_mid has no ONNX form\)/)]);
    expect(readdirSync(dir).filter((n) => n.includes('.partial-'))).toEqual([]);
    for (const f of Object.keys(manifest.checksums)) expect(await sha256File(join(copy, f)), f).toBe(manifest.checksums[f]);
    // An export does not write over a folder of other files, nor over another run's export unless told to.
    const other = join(dir, 'other-files');
    mkdirSync(other);
    writeFileSync(join(other, 'notes.txt'), 'mine');
    const refused = await diad(['export', '--run', run, '--out', other]);
    expect([refused.code, refused.stderr]).toEqual([
      1,
      expect.stringMatching(/holds other files \(notes\.txt\) and no diad export; give a new or empty folder/),
    ]);
    writeFileSync(join(copy, 'manifest.json'), JSON.stringify({ ...manifest, configHash: 'abcdef012345' }));
    const foreign = await diad(['export', '--run', run, '--out', copy]);
    expect([foreign.code, foreign.stderr]).toEqual([1, expect.stringMatching(/holds an export of another run \(config hash abcdef012345.*--overwrite/)]);
    expect((await diad(['export', '--run', run, '--out', copy, '--overwrite'])).code).toBe(0);
    expect(JSON.parse(readFileSync(join(copy, 'manifest.json'), 'utf8')).checksums).toEqual(manifest.checksums);
    // The run's own models-only export (made for --engine ort) is not a bundle.
    if (existsSync(join(run, 'onnx', 'manifest.json'))) await expect(DiadBundle.open(join(run, 'onnx'))).rejects.toThrow(/models-only export/);
  }, 120_000);

  it('diad serve on the bundle answers test images with their diad test scores and decisions, and stops on SIGTERM after the requests in flight', async () => {
    const rows = readFileSync(join(dir, 'test-ort', 'scores.csv'), 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split(','));
    const server = spawn(process.execPath, [CLI, 'serve', '--bundle', onnx, '--port', '0', '--max-batch', '4'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    server.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((ok) => server.on('exit', ok));
    try {
      while (!/listening on (\S+) /.test(stderr)) {
        if (server.exitCode !== null) throw new Error(`diad serve exited: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const base = /listening on (\S+) /.exec(stderr)![1];
      const picked = rows.slice(0, 6);
      // Concurrent requests, so the server batches them.
      const answers = await Promise.all(
        picked.map(async (r) => {
          const res = await fetch(`${base}/v1/score?class=${r[1]}`, { method: 'POST', body: readFileSync(r[5]), headers: { 'content-type': 'image/png' } });
          return { status: res.status, body: (await res.json()) as { score: number; anomalous: boolean; classScore: number } };
        }),
      );
      picked.forEach((r, i) => {
        expect(answers[i].status).toBe(200);
        expect(Math.abs(answers[i].body.score - Number(r[4])), r[0]).toBeLessThanOrEqual(1e-5);
        expect(answers[i].body.anomalous).toBe(Number(r[4]) >= manifest.decision!.threshold);
        const st = manifest.classScores[r[1]];
        if (st.count >= 2 && st.std > 0) expect(answers[i].body.classScore).toBeCloseTo((answers[i].body.score - st.mean) / st.std, 6);
        else expect(answers[i].body.classScore).toBeNull();
      });
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      const metricsText = await (await fetch(`${base}/metrics`)).text();
      expect(metricsText).toMatch(/diad_serve_requests_total\{route="\/v1\/score",code="200"\} 6/);
    } finally {
      server.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/SIGTERM: finishing the requests in flight[\s\S]*stopped/);
  }, 120_000);

  it('refuses an unknown engine and an --onnx-dir without an export, naming the fix', async () => {
    const bad = await diad(['test', '--run', run, '--engine', 'torch']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/unknown engine; use one of tfjs, ort/);
    const empty = await diad(['test', '--run', run, '--engine', 'ort', '--onnx-dir', data, '--out', join(dir, 't-empty')]);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toMatch(/holds no ONNX export.*diad export --run/);
    const stale = join(dir, 'stale');
    mkdirSync(stale);
    writeFileSync(
      join(stale, 'manifest.json'),
      JSON.stringify({ ...manifest, checkpoints: { ...manifest.checkpoints, sg: 'checkpoints/sg-000001.safetensors' } }),
    );
    const old = await diad(['test', '--run', run, '--engine', 'ort', '--onnx-dir', stale, '--out', join(dir, 't-stale')]);
    expect(old.code).toBe(1);
    expect(old.stderr).toMatch(/exported from another config or other checkpoints.*re-export with `diad export/);
  });
});
