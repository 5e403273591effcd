/**
 * `diad ablate`: inference variants of one fitted run (sampler settings, feature extractor, anomaly
 * map), scored on the test split with no refit, side by side. The run's autoencoder and denoiser
 * are opened once; variants that share a sampler and batch size share one reconstruction of each
 * test image and differ only in how they score it. Each variant goes through the same batching and
 * the same functions as `diad test` with the same settings, so its numbers equal that test's.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { reconstructImages, scoreReconstructions, sliceBatch, writeFileAtomic, type HostTensor, type Stages } from '@diad/core';
import { METRIC_LABELS, METRIC_NAMES, MetricsAccumulator, formatPercent, metricTable } from '@diad/metrics';
import type { Sample } from '@diad/datasets';
import { createReconstructor } from '@diad/sg-diffusion';
import { applyInferenceSets, shortHash, type InferenceConfig } from './config.js';
import type { RunDir } from './run-dir.js';
import { sampleId } from './data.js';
import { describeAnomalyMap, forEachTestChunk, openTestSet, describeSampler } from './evaluate.js';
import { openDenoising, openFeatureExtractor, type EngineOptions } from './inference.js';
import { calibrate, checkSettings, readValidation, resolveSettings, settingsHash, type Calibration } from './settings.js';
import { Progress } from './progress.js';
import { METRIC_MODES, type MetricMode, type MetricRow } from './report/types.js';
import { writeHeatmapPng, denormalizeToRgb } from './report/strip.js';
import { pipelineVersion } from './versions.js';
import sharp from 'sharp';

/** One inference variant: a name, the `key=value` settings that make it from the run's defaults, and the resulting settings. */
export interface Variant {
  name: string;
  sets: string[];
  settings: InferenceConfig;
}

/**
 * The variants of `--vary key=v1,v2` options over the base settings.
 * - `each` (default): the base, then each value of each key alone on the base (one factor at a
 *   time, as ablation tables read); a value equal to the base's is not repeated.
 * - `grid`: every combination of the values (the base is added first when it is not one of them).
 * @param vary `key=v1,v2,...` (values split at commas; keys as `applyInferenceSets` takes them).
 * @param onDuplicate told of each combination left out because it equals an earlier variant.
 * @throws Error naming a malformed `--vary` or a bad value.
 */
export function ablationVariants(
  base: InferenceConfig,
  vary: readonly string[],
  mode: 'each' | 'grid' = 'each',
  onDuplicate: (sets: string[], sameAs: string) => void = () => {},
): Variant[] {
  if (vary.length === 0) throw new Error('give at least one --vary key=v1,v2 (e.g. --vary reconstructor.steps=5,10 --vary anomalyMap.sigma=2,4)');
  const axes = vary.map((v) => {
    const eq = v.indexOf('=');
    const values = eq > 0 ? splitValues(v.slice(eq + 1)) : [];
    if (eq <= 0 || values.length === 0) throw new Error(`--vary ${v}: expected key=v1,v2,... (e.g. reconstructor.steps=5,10)`);
    return values.map((x) => `${v.slice(0, eq).trim()}=${x}`);
  });
  const combos = mode === 'grid' ? axes.reduce<string[][]>((acc, axis) => acc.flatMap((c) => axis.map((s) => [...c, s])), [[]]) : axes.flat().map((s) => [s]);
  const out: Variant[] = [{ name: 'base', sets: [], settings: base }];
  const seen = new Map([[shortHash(base), 'base']]);
  for (const sets of combos) {
    const settings = applyInferenceSets(base, sets, '--vary');
    const key = shortHash(settings);
    const same = seen.get(key);
    if (same !== undefined) {
      onDuplicate(sets, same);
      continue;
    }
    seen.set(key, sets.join(' '));
    out.push({ name: sets.join(' '), sets, settings });
  }
  return out;
}

/** Splits `v1,v2,...` at the commas outside brackets and quotes, so JSON values (`[1,2]`) stay whole. */
export function splitValues(list: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < list.length; i++) {
    const c = list[i];
    if (c === '"') quoted = !quoted;
    else if (!quoted && (c === '[' || c === '{')) depth++;
    else if (!quoted && (c === ']' || c === '}')) depth--;
    else if (!quoted && depth === 0 && c === ',') {
      out.push(list.slice(start, i));
      start = i + 1;
    }
  }
  out.push(list.slice(start));
  return out.map((x) => x.trim()).filter(Boolean);
}

/** Options of {@link ablate}. */
export interface AblateOptions extends EngineOptions {
  /** `key=v1,v2` per varied setting. */
  vary: readonly string[];
  mode?: 'each' | 'grid';
  /** `key=value` settings applied to the run's defaults before varying. */
  base?: readonly string[];
  /** Output folder (default `<run>/ablation`). */
  out?: string;
  overwrite?: boolean;
  roots?: string[];
  classes?: string[] | null;
  /** How many test images (defective first, spread over classes) the page shows under every variant (default 6). */
  examples?: number;
  quiet?: boolean;
  log?: (l: string) => void;
}

/** One variant's results. */
export interface VariantResult {
  name: string;
  sets: string[];
  settings: InferenceConfig;
  settingsHash: string;
  featureProvenance: string;
  /** Per mode: per class and mean. */
  metrics: Record<MetricMode, { classes: Record<string, MetricRow>; mean: MetricRow }>;
  /** Wall seconds per test image: its share of the reconstruction it uses plus its own scoring. */
  secondsPerImage: number;
  /** Decision threshold of the variant (validation, target FPR) and where it came from. */
  threshold: number;
  calibration: string;
}

/** `ablation.json`. */
export interface AblationResult {
  run: string;
  configHash: string;
  engine: string;
  classes: string[];
  images: number;
  variants: VariantResult[];
  /** Example images: id and, per variant, the heatmap PNG (relative to the output folder). */
  examples: { id: string; className: string; defectType: string; input: string; mask: string | null; heatmaps: string[] }[];
  versions: { '@diad/pipeline': string };
  date: string;
}

/**
 * Scores the variants of `o.vary` on the run's test split and writes `ablation.json`,
 * `ablation.md` and `index.html` (the variants side by side) into the output folder.
 * @throws Error before any scoring for a bad `--vary`, unknown kinds, an unfitted run, or an output
 *   folder that already holds an ablation (without `overwrite`).
 */
export async function ablate(run: RunDir, o: AblateOptions): Promise<{ out: string; result: AblationResult }> {
  const log = o.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const validation = await readValidation(run);
  const base = resolveSettings(run, validation, o.base ?? []);
  const variants = ablationVariants(base, o.vary, o.mode, (sets, same) =>
    log(`ablate: ${sets.join(' ')} gives the settings of ${same}: scored once, as ${same}`),
  );
  for (const v of variants) {
    try {
      await checkSettings(v.settings);
    } catch (e) {
      throw new Error(`variant ${v.name} (from --vary): ${(e as Error).message}`);
    }
  }
  const out = resolve(o.out ?? run.path('ablation'));
  if (existsSync(join(out, 'ablation.json')) && !o.overwrite) {
    throw new Error(`${out} already holds an ablation (ablation.json); write this one elsewhere with --out DIR, or replace it with --overwrite`);
  }
  log(`ablate: ${variants.length} variant${variants.length === 1 ? '' : 's'}: ${variants.map((v) => v.name).join(' | ')}`);
  const test = await openTestSet(run, validation, o, log);
  const size = run.config.data.imageSize;
  const hw = size * size;
  const d = await openDenoising(run, o, log);
  // One feature extractor per distinct spec, one sampler per variant (both cheap next to a reconstruction).
  const extractors = new Map<string, { extractor: Stages['featureExtractor']; provenance: string; dispose(): Promise<void> | void }>();
  try {
    const stages: (Stages & { provenance: string })[] = [];
    for (const v of variants) {
      const key = shortHash(v.settings.featureExtractor);
      if (!extractors.has(key)) {
        const fe = await openFeatureExtractor(d, v.settings);
        extractors.set(key, { extractor: fe.extractor, provenance: fe.provenance, dispose: fe.dispose });
      }
      const fe = extractors.get(key)!;
      stages.push({
        autoencoder: d.autoencoder,
        reconstructor: createReconstructor(v.settings.reconstructor, d.denoiser, `--vary ${v.name}`),
        featureExtractor: fe.extractor,
        provenance: fe.provenance,
      });
    }
    const calibrations: Calibration[] = [];
    for (let i = 0; i < variants.length; i++) calibrations.push(await calibrate(run, validation, variants[i].settings, stages[i], log));

    // Variants that reconstruct alike: same sampler settings and batch size.
    const groups = new Map<string, number[]>();
    variants.forEach((v, i) => {
      const key = shortHash({ reconstructor: v.settings.reconstructor, batchSize: v.settings.batchSize });
      groups.set(key, [...(groups.get(key) ?? []), i]);
    });
    const accs = variants.map(() => new MetricsAccumulator());
    const seconds = variants.map(() => 0);
    const exampleIds = pickExamples(test.samples, o.examples ?? 6);
    const examples = new Map<string, AblationResult['examples'][number]>();
    const progress = new Progress('ablate', test.samples.length * groups.size, 0, o.quiet, false);
    let done = 0;
    try {
      for (const members of groups.values()) {
        const first = variants[members[0]].settings;
        await forEachTestChunk(test.samples, size, first.batchSize, async (dec, upTo) => {
          const t0 = Date.now();
          const autoencoded = members.some((i) => variants[i].settings.anomalyMap.reference === 'autoencoded');
          const recs = await reconstructImages(stages[members[0]], dec.images, first.batchSize, run.config.seed, autoencoded ? 'autoencoded' : 'input');
          const share = (Date.now() - t0) / 1000 / members.length;
          for (const i of members) {
            const t1 = Date.now();
            const reference = variants[i].settings.anomalyMap.reference === 'autoencoded' ? recs.references : dec.images;
            const scored = await scoreReconstructions(stages[i].featureExtractor, reference, recs.reconstructions, variants[i].settings);
            seconds[i] += share + (Date.now() - t1) / 1000;
            for (let k = 0; k < dec.samples.length; k++) {
              const s = dec.samples[k];
              const map = scored.maps.data.slice(k * hw, (k + 1) * hw);
              const mask = s.label ? dec.masks.data.slice(k * hw, (k + 1) * hw) : null;
              accs[i].add(s.className, map, mask, { height: size, width: size, defectType: s.defect, label: s.label, copy: false });
              const id = sampleId(s);
              if (exampleIds.has(id)) {
                const ex = examples.get(id) ?? (await writeExample(out, id, s, sliceBatch(dec.images, k, k + 1), mask, size, variants.length));
                examples.set(id, ex);
                ex.heatmaps[i] = `images/${id}--v${i}.png`;
                await writeHeatmapPng(join(out, ex.heatmaps[i]), sliceBatch(dec.images, k, k + 1).data, map, size, size, calibrations[i].mapRange);
              }
            }
          }
          progress.update(done + upTo);
        });
        done += test.samples.length;
      }
    } finally {
      progress.stop();
    }
    const n = test.samples.length;
    const result: AblationResult = {
      run: run.dir,
      configHash: run.hash,
      engine: d.engine,
      classes: test.classes,
      images: n,
      variants: variants.map((v, i) => {
        const reports = accs[i].computeAll(METRIC_MODES, { byDefectType: false });
        const metrics = Object.fromEntries(
          METRIC_MODES.map((m) => [
            m,
            { classes: Object.fromEntries(Object.entries(reports[m]!.classes).map(([c, r]) => [c, r.values])), mean: reports[m]!.mean.values },
          ]),
        ) as VariantResult['metrics'];
        return {
          name: v.name,
          sets: v.sets,
          settings: v.settings,
          settingsHash: settingsHash(v.settings),
          featureProvenance: stages[i].provenance,
          metrics,
          secondsPerImage: seconds[i] / Math.max(1, n),
          threshold: calibrations[i].threshold,
          calibration: calibrations[i].source,
        };
      }),
      examples: [...examples.values()],
      versions: { '@diad/pipeline': pipelineVersion() },
      date: new Date().toISOString(),
    };
    await writeFileAtomic(join(out, 'ablation.json'), JSON.stringify(result, null, 2) + '\n');
    await writeFileAtomic(join(out, 'ablation.md'), ablationMarkdown(result));
    await writeFileAtomic(join(out, 'index.html'), ablationHtml(result));
    return { out, result };
  } finally {
    for (const fe of extractors.values()) await fe.dispose();
    await d.dispose();
  }
}

/** Up to `k` test images for the page: defective ones first, round-robin over classes. */
function pickExamples(samples: readonly Sample[], k: number): Set<string> {
  const byClass = new Map<string, Sample[]>();
  for (const s of [...samples].sort((a, b) => b.label - a.label)) byClass.set(s.className, [...(byClass.get(s.className) ?? []), s]);
  const picked: string[] = [];
  for (let round = 0; picked.length < k && round < samples.length; round++) {
    for (const list of byClass.values()) if (list[round] && picked.length < k) picked.push(sampleId(list[round]));
  }
  return new Set(picked);
}

async function writeExample(
  out: string,
  id: string,
  s: { className: string; defect: string },
  image: HostTensor,
  mask: Uint8Array | null,
  size: number,
  variants: number,
) {
  const png = async (rgb: Uint8Array, name: string) =>
    writeFileAtomic(
      join(out, name),
      await sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), { raw: { width: size, height: size, channels: 3 } })
        .png()
        .toBuffer(),
    );
  const input = `images/${id}--input.png`;
  await png(denormalizeToRgb(image.data as Float32Array, size, size), input);
  let maskPath: string | null = null;
  if (mask) {
    maskPath = `images/${id}--mask.png`;
    const rgb = new Uint8Array(size * size * 3);
    for (let p = 0; p < size * size; p++) rgb.fill(mask[p] ? 255 : 0, 3 * p, 3 * p + 3);
    await png(rgb, maskPath);
  }
  return { id, className: s.className, defectType: s.defect, input, mask: maskPath, heatmaps: new Array<string>(variants).fill('') };
}

/** The comparison table as Markdown (@diad/metrics' one table): per mode, one row per variant and class (and mean), all seven metrics and seconds per image. */
export function ablationMarkdown(r: AblationResult): string {
  const table = (mode: MetricMode) =>
    metricTable(
      r.variants.flatMap((v) =>
        [...Object.entries(v.metrics[mode].classes), ['mean', v.metrics[mode].mean] as const].map(([c, values]) => ({
          cells: [v.name, c],
          values,
          extra: [v.secondsPerImage.toFixed(3)],
        })),
      ),
      { lead: ['variant', 'class'], extra: ['s / image'] },
    );
  const settings = r.variants
    .map((v) => `- **${v.name}**: ${describeSampler(v.settings)}; features ${v.featureProvenance}; ${describeAnomalyMap(v.settings)} (${v.settingsHash})`)
    .join('\n');
  return `# Ablation: ${r.run}\n\n${r.images} test images of ${r.classes.join(', ')}; engine ${r.engine}.\n\n${settings}\n\n${METRIC_MODES.map((m) => `## ${m} mode\n\n${table(m)}\n`).join('\n')}`;
}

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** The page: settings, the mean table (both modes) with the best value per column marked, per-class tables, and example heatmaps under every variant. */
export function ablationHtml(r: AblationResult): string {
  const table = (mode: MetricMode, cls: string | null) => {
    const rowOf = (v: VariantResult) => (cls === null ? v.metrics[mode].mean : v.metrics[mode].classes[cls]);
    const best = METRIC_NAMES.map((k) => Math.max(...r.variants.map((v) => rowOf(v)?.[k] ?? -Infinity)));
    const rows = r.variants
      .map(
        (v) =>
          `<tr><th>${esc(v.name)}</th>${METRIC_NAMES.map((k, j) => {
            const x = rowOf(v)?.[k] ?? null;
            return `<td${x !== null && x === best[j] ? ' class="best"' : ''}>${formatPercent(x)}</td>`;
          }).join('')}<td>${v.secondsPerImage.toFixed(3)}</td></tr>`,
      )
      .join('');
    return `<table><tr><th>variant</th>${METRIC_NAMES.map((k) => `<th>${METRIC_LABELS[k]}</th>`).join('')}<th>s / image</th></tr>${rows}</table>`;
  };
  const settings = r.variants
    .map(
      (v) =>
        `<tr><th>${esc(v.name)}</th><td>${esc(describeSampler(v.settings))}</td><td>${esc(v.featureProvenance)}</td><td>${esc(describeAnomalyMap(v.settings))}</td><td>${v.threshold.toPrecision(4)} (${v.calibration})</td><td><code>${v.settingsHash}</code></td></tr>`,
    )
    .join('');
  const examples = r.examples
    .map(
      (e) =>
        `<tr><th>${esc(e.className)}<br>${esc(e.defectType)}</th><td><img src="${e.input}"></td><td>${e.mask ? `<img src="${e.mask}">` : 'good'}</td>${e.heatmaps.map((h) => `<td><img src="${h}"></td>`).join('')}</tr>`,
    )
    .join('');
  return `<!doctype html><html><head><meta charset="utf-8"><title>Ablation: ${esc(r.run)}</title><style>
body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f4f4f4;text-align:left}td.best{font-weight:bold;background:#e6f4e6}img{width:128px;height:128px;image-rendering:pixelated;display:block}
</style></head><body><h1>Ablation: ${esc(r.run)}</h1>
<p>${r.images} test images of ${esc(r.classes.join(', '))}; config ${r.configHash}; engine ${esc(r.engine)}; ${esc(r.date)}. Best value per column in bold. Every variant is scored on the same test images with the same trained weights; thresholds and heatmap ranges come from the normal validation images.</p>
<h2>Variants</h2><table><tr><th>variant</th><th>sampler</th><th>feature extractor</th><th>anomaly map</th><th>threshold</th><th>settings hash</th></tr>${settings}</table>
${METRIC_MODES.map((m) => `<h2>Mean over classes, ${m} mode</h2>${table(m, null)}`).join('')}
<h2>Per class (standard mode)</h2>${r.classes.map((c) => `<h3>${esc(c)}</h3>${table('standard', c)}`).join('')}
<h2>Examples: each variant's anomaly map over the input (its own colour range, from validation)</h2>
<table><tr><th>image</th><th>input</th><th>mask</th>${r.variants.map((v) => `<th>${esc(v.name)}</th>`).join('')}</tr>${examples}</table>
</body></html>
`;
}
