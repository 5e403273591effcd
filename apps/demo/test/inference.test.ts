/**
 * Inference on one fitted `ci` run (synthetic data, through the built CLI), no refit:
 * - `diad ablate` with three variants (DDIM steps, backbone, blur sigma) next to the run's own
 *   settings: one table and one page; each variant's numbers equal a separate `diad test`;
 * - `diad test --shard K/N` in parallel processes and `diad merge`: the metrics of one unsharded test.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureSynthetic } from '@diad/datasets';
import { diad } from './run-cli.js';

type Row = Record<string, number | null>;
type Metrics = { modes: Record<string, { classes: Record<string, Row>; mean: Row }> };

describe('diad ablate and sharded testing (ci preset)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'diad-ablate-'));
  const data = join(dir, 'data');
  const run = join(dir, 'run');
  const checkpoints = () =>
    readdirSync(join(run, 'checkpoints'))
      .map((f) => `${f}:${statSync(join(run, 'checkpoints', f)).mtimeMs}`)
      .sort();
  let before: string[];

  beforeAll(async () => {
    await ensureSynthetic(data, { size: 64, train: 4 });
    const fit = await diad(['demo', '--preset', 'ci', '--out', run, '--synthetic', data, '--train-per-class', '4', '--quiet']);
    if (fit.code !== 0) throw new Error(`demo failed: ${fit.stderr}`);
    before = checkpoints();
  }, 400_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('three variants in one table and page; each equals a separate diad test with its settings; no refit', async () => {
    const out = join(dir, 'ablation');
    const a = await diad(
      [
        'ablate',
        '--run',
        run,
        '--vary',
        'reconstructor.steps=2',
        '--vary',
        'featureExtractor=mobilenet_v2',
        '--vary',
        'anomalyMap.reference=autoencoded',
        '--engine',
        'ort',
        '--out',
        out,
        '--quiet',
      ],
      400_000,
    );
    expect(a.code, a.stderr).toBe(0);
    const result = JSON.parse(readFileSync(join(out, 'ablation.json'), 'utf8'));
    expect(result.variants.map((v: { name: string }) => v.name)).toEqual([
      'base',
      'reconstructor.steps=2',
      'featureExtractor=mobilenet_v2',
      'anomalyMap.reference=autoencoded',
    ]);
    expect(result.variants[1].settings.reconstructor.steps).toBe(2);
    expect(result.variants[2].featureProvenance).toMatch(/MobileNetV2|mobilenet_v2/i);
    expect(result.variants[3].settings.anomalyMap.reference).toBe('autoencoded');
    expect(result.variants[3].metrics.standard.mean).not.toEqual(result.variants[0].metrics.standard.mean);
    for (const v of result.variants) expect(v.secondsPerImage).toBeGreaterThan(0);
    // One table: per mode, a row per variant and class plus its mean.
    const md = readFileSync(join(out, 'ablation.md'), 'utf8');
    expect(a.stdout).toBe(`${md}\n`);
    const classes = result.classes.length;
    expect(md.split('\n').filter((l) => /^\| (base|reconstructor|featureExtractor|anomalyMap)/.test(l))).toHaveLength(2 * 4 * (classes + 1));
    // One page, with every variant's heatmap of each example image.
    const html = readFileSync(join(out, 'index.html'), 'utf8');
    for (const v of result.variants) expect(html).toContain(`<th>${v.name}</th>`);
    expect(result.examples.length).toBeGreaterThan(0);
    for (const e of result.examples) for (const h of [e.input, ...e.heatmaps]) expect(existsSync(join(out, h)), h).toBe(true);
    // No refit: the checkpoints are the ones the fit left.
    expect(checkpoints()).toEqual(before);

    // Each variant equals a separate `diad test` with the same settings (shortcut flags or --set); the
    // reference variant shares the base's reconstructions in the ablation, while test decodes its own.
    const flags: string[][] = [[], ['--ddim-steps', '2'], ['--backbone', 'mobilenet_v2'], ['--reference', 'autoencoded']];
    for (let i = 0; i < flags.length; i++) {
      const t = await diad(['test', '--run', run, '--engine', 'ort', '--out', join(dir, `test-${i}`), '--quiet', ...flags[i]], 300_000);
      expect(t.code, t.stderr).toBe(0);
      const m: Metrics = JSON.parse(readFileSync(join(dir, `test-${i}`, 'metrics.json'), 'utf8'));
      expect((m as unknown as { provenance: { inferenceHash: string } }).provenance.inferenceHash).toBe(result.variants[i].settingsHash);
      for (const mode of ['standard', 'diad']) {
        expect(Object.keys(result.variants[i].metrics[mode].classes)).toEqual(Object.keys(m.modes[mode].classes));
        const rows: [string, Row, Row][] = [
          ...Object.entries(m.modes[mode].classes).map(([c, r]) => [c, r, result.variants[i].metrics[mode].classes[c]] as [string, Row, Row]),
          ['mean', m.modes[mode].mean, result.variants[i].metrics[mode].mean],
        ];
        for (const [c, want, got] of rows) for (const k of Object.keys(want)) expect(got[k], `${result.variants[i].name} ${mode} ${c} ${k}`).toBe(want[k]);
      }
    }
  }, 900_000);

  it('three shards tested in parallel processes merge into the metrics of one unsharded test; a missing or duplicated shard is refused', async () => {
    const base = ['test', '--run', run, '--engine', 'ort', '--quiet'];
    const shardDir = (k: number) => join(dir, `shard-${k}`);
    const runs = await Promise.all([
      diad([...base, '--out', join(dir, 'whole')], 300_000),
      ...[0, 1, 2].map((k) => diad([...base, '--shard', `${k}/3`, '--out', shardDir(k)], 300_000)),
    ]);
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    const sizes = [0, 1, 2].map((k) => JSON.parse(readFileSync(join(shardDir(k), 'shard.json'), 'utf8')).images.length);
    expect(sizes.every((n) => n > 0)).toBe(true);
    const merged = await diad(['merge', '--run', run, '--out', join(dir, 'merged'), shardDir(2), shardDir(0), shardDir(1)]);
    expect(merged.code, merged.stderr).toBe(0);
    const [whole, joined] = ['whole', 'merged'].map((d) => JSON.parse(readFileSync(join(dir, d, 'metrics.json'), 'utf8')));
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(
      Object.values(whole.counts as Record<string, { good: number; defective: number }>).reduce((a, c) => a + c.good + c.defective, 0),
    );
    expect(joined.modes).toEqual(whole.modes);
    expect(joined.counts).toEqual(whole.counts);
    expect(joined.provenance.inferenceHash).toBe(whole.provenance.inferenceHash);
    // The merged report points at the shards' strips, copied beside it.
    expect(readFileSync(join(dir, 'merged', 'report.html'), 'utf8')).toMatch(/shards\/[012]\/strips\//);

    // A folder holds one kind of result: no test into a shard's folder.
    const into = await diad([...base, '--out', shardDir(0)]);
    expect(into.code).toBe(1);
    expect(into.stderr).toMatch(/already holds a test shard \(shard\.json\); write this test elsewhere with --out DIR/);

    const missing = await diad(['merge', '--run', run, '--out', join(dir, 'm2'), shardDir(0), shardDir(1)]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(
      /shards 2\/3 are missing; run `diad test --run .* --shard 2\/3 \.\.\.` for each, with the same --engine and --set options as the others/,
    );
    const twice = await diad(['merge', '--run', run, '--out', join(dir, 'm3'), shardDir(0), shardDir(1), shardDir(1), shardDir(2)]);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toMatch(/shard 1\/3 is given twice \(.*shard-1 and .*shard-1\)/);
    const other = await diad([...base, '--shard', '0/2', '--out', join(dir, 'other-0')], 300_000);
    expect(other.code, other.stderr).toBe(0);
    const mixed = await diad(['merge', '--run', run, '--out', join(dir, 'm4'), join(dir, 'other-0'), shardDir(1), shardDir(2)]);
    expect(mixed.code).toBe(1);
    expect(mixed.stderr).toMatch(/are shards of different tests \(shard count: 3 vs 2\)/);
  }, 900_000);

  it('refuses a malformed --vary and an unknown kind before scoring, and an existing ablation without --overwrite', async () => {
    const bad = await diad(['ablate', '--run', run, '--vary', 'reconstructor.steps']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--vary reconstructor\.steps: expected key=v1,v2/);
    const kind = await diad(['ablate', '--run', run, '--vary', 'featureExtractor=resnet9000', '--out', join(dir, 'ab-kind')]);
    expect(kind.code).toBe(1);
    expect(kind.stderr).toMatch(/unknown feature extractor "resnet9000"; registered: resnet50/);
    expect(existsSync(join(dir, 'ab-kind'))).toBe(false);
    const again = await diad(['ablate', '--run', run, '--vary', 'anomalyMap.sigma=1', '--out', join(dir, 'ablation')]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already holds an ablation \(ablation\.json\); write this one elsewhere with --out DIR, or replace it with --overwrite/);
  }, 120_000);
});
