/**
 * Sharded testing: `diad test --shard K/N` scores a deterministic 1/N of the test images and writes
 * the accumulator's state (every scored image's anomaly map and mask, in `shard.safetensors`,
 * with its checksum and provenance in `shard.json`); `diad merge` combines shards into the metrics
 * and report of one unsharded test, exactly. Shards are whole batches (batch `b` of the test
 * order goes to shard `b mod N`), so every image is scored in the same batch, with the same
 * neighbours, as in an unsharded test, and the merge adds the images back in test order.
 */
import { createHash } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';
import { mask, readSafetensors, tensor, writeFileAtomic, writeSafetensors } from '@diad/core';
import type { InferenceConfig } from './config.js';
import type { Skipped } from './data.js';
import { prepareTest, scoreTestSamples, writeTestReport, type ScoredImage, type TestContext, type TestOptions, type TestScoring } from './evaluate.js';
import type { RunDir } from './run-dir.js';
import { readValidation, settingsHash } from './settings.js';
import type { ImageRecord, ReportInput } from './report/types.js';

/** Shard `index` (0-based) of `count`. */
export interface ShardSpec {
  index: number;
  count: number;
}

/** `shard.json`: what a shard scored and with what; the data are in `shard.safetensors`. */
export interface ShardManifest {
  format: 'diad-test-shard';
  version: 1;
  shard: ShardSpec;
  run: string;
  configHash: string;
  settings: InferenceConfig;
  inferenceHash: string;
  /** Images in the whole test set, and the batch size that cuts it into shards. */
  total: number;
  batchSize: number;
  /** Data roots and classes of the test set. */
  roots: string[];
  classes: string[];
  unseen: string[];
  scoring: TestScoring;
  /** One entry per scored image, in the order of the tensors in `shard.safetensors`. */
  images: { index: number; className: string; defect: string; label: 0 | 1; hasMask: boolean; record: ImageRecord }[];
  skipped: Skipped[];
  seconds: number;
  /** SHA-256 of `shard.safetensors` followed by the JSON of `images` (so neither can change unnoticed). */
  sha256: string;
}

const MANIFEST = 'shard.json';
const DATA = 'shard.safetensors';

/**
 * Parses `--shard K/N` (K 0-based) or `--shard N`, whose index then comes from the environment:
 * `JOB_COMPLETION_INDEX` (a Kubernetes Indexed Job), else `SLURM_ARRAY_TASK_ID` (a Slurm array run as `--array=0-(N-1)`).
 * @throws Error naming the value and the fix.
 */
export function parseShard(value: string, vars: Record<string, string | undefined> = process.env): ShardSpec {
  const m = /^(?:(\d+)\/)?(\d+)$/.exec(value.trim());
  if (!m) throw new Error(`--shard ${value}: expected K/N (K from 0 to N-1) or N (K from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID)`);
  const count = Number(m[2]);
  if (count < 1) throw new Error(`--shard ${value}: the shard count must be at least 1`);
  const source =
    m[1] !== undefined
      ? null
      : vars.JOB_COMPLETION_INDEX !== undefined
        ? 'JOB_COMPLETION_INDEX'
        : vars.SLURM_ARRAY_TASK_ID !== undefined
          ? 'SLURM_ARRAY_TASK_ID'
          : undefined;
  if (source === undefined) throw new Error(`--shard ${value}: no shard index; give K/N, or run it where JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID is set`);
  const raw = source === null ? m[1] : vars[source]!;
  const index = Number(raw);
  if (!(count >= 1) || !Number.isInteger(index) || index < 0 || index >= count) {
    throw new Error(`--shard ${value}${source ? ` (${source}=${raw})` : ''}: the index must be a whole number from 0 to ${count - 1}`);
  }
  return { index, count };
}

/** The test-set positions of shard `s`: whole batches `b` with `b mod count = index`. */
export function shardIndices(total: number, batchSize: number, s: ShardSpec): number[] {
  const out: number[] = [];
  for (let b = s.index; b * batchSize < total; b += s.count) for (let i = b * batchSize; i < Math.min(total, (b + 1) * batchSize); i++) out.push(i);
  return out;
}

/**
 * Scores one shard of the run's test set and writes `shard.json`, `shard.safetensors` and its strips.
 * @throws Error before scoring for bad settings, an unfitted run, or a folder that holds a shard (without `overwrite`).
 */
export async function testShard(run: RunDir, shard: ShardSpec, opts: TestOptions = {}): Promise<{ out: string; manifest: ShardManifest }> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const t0 = Date.now();
  const ctx = await prepareTest(run, { ...opts, out: opts.out ?? run.path(`test-shard-${shard.index}-of-${shard.count}`) }, MANIFEST, log);
  const total = ctx.test.samples.length;
  const indices = shardIndices(total, ctx.settings.batchSize, shard);
  log(`shard ${shard.index}/${shard.count}: ${indices.length} of ${total} test images`);
  const { scored, skipped, scoring } = await scoreTestSamples(
    ctx,
    indices.map((index) => ({ sample: ctx.test.samples[index], index })),
    opts,
    log,
  );
  scored.sort((a, b) => a.index - b.index);
  const size = run.config.data.imageSize;
  const n = scored.length;
  const maps = new Float32Array(n * size * size);
  const masks = new Uint8Array(n * size * size);
  scored.forEach((s, i) => {
    maps.set(s.map, i * size * size);
    if (s.mask) masks.set(s.mask, i * size * size);
  });
  const dataPath = join(ctx.out, DATA);
  await writeSafetensors(dataPath, { maps: tensor(maps, [n, size, size]), masks: mask(masks, [n, size, size]) });
  const manifest: ShardManifest = {
    format: 'diad-test-shard',
    version: 1,
    shard,
    run: run.dir,
    configHash: run.hash,
    settings: ctx.settings,
    inferenceHash: settingsHash(ctx.settings),
    total,
    batchSize: ctx.settings.batchSize,
    roots: ctx.test.roots,
    classes: ctx.test.classes,
    unseen: ctx.test.unseen,
    scoring,
    images: scored.map((s) => ({ index: s.index, className: s.className, defect: s.defect, label: s.label, hasMask: s.mask !== null, record: s.record })),
    skipped,
    seconds: (Date.now() - t0) / 1000,
    sha256: '',
  };
  manifest.sha256 = await shardChecksum(dataPath, manifest.images);
  // Written last: a folder without it is an unfinished shard.
  await writeFileAtomic(join(ctx.out, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
  return { out: ctx.out, manifest };
}

/** SHA-256 of the shard's data file and its image records. */
async function shardChecksum(dataPath: string, images: ShardManifest['images']): Promise<string> {
  return createHash('sha256')
    .update(await fs.readFile(dataPath))
    .update(JSON.stringify(images))
    .digest('hex');
}

/** Options of {@link mergeShards}. */
export interface MergeOptions {
  /** Output folder of the merged test (metrics, report, strips). */
  out: string;
  overwrite?: boolean;
  log?: (l: string) => void;
}

/**
 * Merges shard folders into the metrics and report of one test of the run. Refuses, by folder,
 * shards of another run, config, inference settings, shard count or test set, a duplicated or
 * missing shard, and a shard whose data does not match its checksum.
 * @throws Error naming the folders at fault and the fix.
 */
export async function mergeShards(run: RunDir, dirs: readonly string[], o: MergeOptions): Promise<{ out: string; report: ReportInput }> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  if (dirs.length === 0) throw new Error('give the shard folders to merge (each holds shard.json and shard.safetensors)');
  const shards: { dir: string; m: ShardManifest }[] = [];
  for (const d of dirs.map((x) => resolve(x))) {
    const path = join(d, MANIFEST);
    if (!existsSync(path)) throw new Error(`${d} holds no finished shard (no ${MANIFEST}); rerun its \`diad test --shard K/N\``);
    let m: ShardManifest;
    try {
      m = JSON.parse(await fs.readFile(path, 'utf8')) as ShardManifest;
    } catch (e) {
      throw new Error(`${path} is not valid JSON (${(e as Error).message}); the shard is damaged: rerun it`);
    }
    if (m.format !== 'diad-test-shard' || m.version !== 1) throw new Error(`${path}: not a diad test shard (format ${m.format}, version ${m.version})`);
    shards.push({ dir: d, m });
  }
  const first = shards[0];
  const same = (what: string, get: (m: ShardManifest) => unknown) => {
    for (const s of shards.slice(1)) {
      if (JSON.stringify(get(s.m)) !== JSON.stringify(get(first.m))) {
        throw new Error(
          `${s.dir} and ${first.dir} are shards of different tests (${what}: ${JSON.stringify(get(s.m))} vs ${JSON.stringify(get(first.m))}); merge shards of one test`,
        );
      }
    }
  };
  same('config hash', (m) => m.configHash);
  same('inference settings hash', (m) => m.inferenceHash);
  same('shard count', (m) => m.shard.count);
  same('test images', (m) => [m.total, m.batchSize, m.roots, m.classes]);
  if (first.m.configHash !== run.hash)
    throw new Error(`${first.dir} is a shard of config ${first.m.configHash}, but ${run.dir} has ${run.hash}; merge it with the run it was made from`);
  const count = first.m.shard.count;
  const byIndex = new Map<number, string>();
  for (const s of shards) {
    const other = byIndex.get(s.m.shard.index);
    if (other) throw new Error(`shard ${s.m.shard.index}/${count} is given twice (${other} and ${s.dir}); give each shard once`);
    byIndex.set(s.m.shard.index, s.dir);
  }
  const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !byIndex.has(i));
  if (missing.length)
    throw new Error(
      `shards ${missing.map((i) => `${i}/${count}`).join(', ')} are missing; run \`diad test --run ${run.dir} --shard ${missing[0]}/${count} ...\` for each, with the same --engine and --set options as the others (settings hash ${first.m.inferenceHash}), and merge all ${count}`,
    );

  const size = run.config.data.imageSize;
  const hw = size * size;
  const scored: ScoredImage[] = [];
  const skipped: Skipped[] = [];
  let seconds = 0;
  for (const { dir, m } of shards) {
    const data = join(dir, DATA);
    if ((await shardChecksum(data, m.images)) !== m.sha256) {
      throw new Error(`${data} or the image records of ${join(dir, MANIFEST)} do not match the shard's checksum; the shard is damaged: rerun it`);
    }
    const file = await readSafetensors(data);
    const maps = file.float32('maps');
    // 0/1 values: exact through int32.
    const masks = Uint8Array.from(file.int32('masks').data);
    if (maps.shape[0] !== m.images.length || maps.shape[1] !== size)
      throw new Error(`${data}: ${maps.shape[0]} maps of ${maps.shape[1]} px, the manifest lists ${m.images.length} of ${size} px`);
    m.images.forEach((im, i) => {
      const record = { ...im.record, strip: `shards/${m.shard.index}/${im.record.strip}` };
      scored.push({ ...im, map: maps.data.slice(i * hw, (i + 1) * hw), mask: im.hasMask ? masks.slice(i * hw, (i + 1) * hw) : null, record });
    });
    skipped.push(...m.skipped);
    seconds += m.seconds;
  }
  const indices = new Set(scored.map((s) => s.index));
  const expected = first.m.total - skipped.length;
  if (indices.size !== scored.length || scored.length !== expected) {
    throw new Error(
      `the shards hold ${scored.length} images (${indices.size} distinct) of the test set's ${first.m.total} (${skipped.length} skipped); they do not partition one test`,
    );
  }
  const out = resolve(o.out);
  if (existsSync(join(out, 'metrics.json')) && !o.overwrite) {
    throw new Error(`${out} already holds a test result (metrics.json); merge elsewhere with --out DIR, or replace it with --overwrite`);
  }
  // Each shard's strips (and its manifest) are copied under shards/<index>/, where the merged report points.
  await fs.mkdir(join(out, 'shards'), { recursive: true });
  for (const { dir, m } of shards) {
    const link = join(out, 'shards', String(m.shard.index));
    await fs.rm(link, { recursive: true, force: true });
    await fs.cp(dir, link, { recursive: true, filter: (src) => !src.endsWith(DATA) });
  }
  const ctx: TestContext = {
    run,
    validation: await readValidation(run),
    settings: first.m.settings,
    out,
    test: { roots: first.m.roots, classes: first.m.classes, unseen: first.m.unseen, samples: [] },
  };
  log(`merge: ${count} shards, ${scored.length} images`);
  const report = await writeTestReport(ctx, first.m.scoring, scored, skipped, seconds);
  return { out, report };
}
