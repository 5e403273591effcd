/**
 * The deployment bundle's manifest (`manifest.json`): everything a program needs to run a fitted
 * DiAD model with onnxruntime-node and @diad/core alone. Written by @diad/pipeline's `diad export`;
 * read and checked here. A bundle is one folder; every file it names lies in that folder, and its
 * SHA-256 is in `checksums`, so a changed, truncated or missing file is refused by name.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { DdimOptions } from '../ddim.js';
import type { ScoringSettings } from '../scoring.js';

export const MANIFEST_FILE = 'manifest.json';
/** The `format` field of a bundle manifest. */
export const BUNDLE_FORMAT = 'diad-bundle';
/**
 * The bundle layout this code writes. 2 added `inference.anomalyMap.reference`: a runtime that read
 * only version 1 would ignore it and score against the input with the autoencoded reference's
 * threshold, so it must refuse these bundles.
 */
export const BUNDLE_VERSION = 2;
/** The versions this code reads (a version 1 bundle compares with the input, as version 2's default). */
export const READABLE_BUNDLE_VERSIONS: readonly number[] = [1, 2];

/** The graph and data files of a bundle (names relative to the bundle folder). */
export interface BundleFiles {
  /** `image` `[N, 3, S, S]` + `noise` -> scaled `latent` (AutoencoderKL encoder, posterior mode when noise is 0). */
  autoencoderEncode: string;
  /** scaled `latent` -> `image` `[N, 3, S, S]`. */
  autoencoderDecode: string;
  /** `hint` (the images) -> `guided_hint` (SG network hint block). */
  hint: string;
  /** One eps-prediction of SG network + UNet: `latent`, `guided_hint`, `timestep` (int32), `context` -> `eps`. */
  step: string;
  /** safetensors holding `context` `[1, L, D]`, the cross-attention context. */
  context: string;
  /** The feature extractor (`[N, 3, S, S]` -> one map per level, shallow first); null when the run's extractor has no ONNX form. */
  featureExtractor: string | null;
}

/** How raw images become the model's input (the test path of @diad/datasets). */
export interface BundlePreprocessing {
  /** Square input side S in pixels. */
  size: number;
  /** Decode to 8-bit RGB (grey replicated, alpha dropped), resize to S x S. */
  resize: 'bilinear';
  /** Then `(x / 255 - mean) / std` per channel, NCHW float32. */
  mean: readonly number[];
  std: readonly number[];
}

/** Per-class statistics of the image scores of normal validation images (for a class-normalised score). */
export interface ClassScoreStats {
  count: number;
  mean: number;
  /** Population standard deviation. */
  std: number;
}

/** `manifest.json` of a bundle. Shapes use `N` for the dynamic batch axis. */
export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  version: number;
  /** Versions of the packages that wrote it (@diad/pipeline, @diad/core, ...). */
  packageVersions: Record<string, string | null>;
  preset: string;
  /** The run's train config (data, model sizes, stages, seed) as fitted, its hash, and the checkpoints exported (relative to the run folder). */
  config: Record<string, unknown>;
  configHash: string;
  checkpoints: Record<string, string | null>;
  /** The classes the model was trained on. */
  classes: string[];
  preprocessing: BundlePreprocessing;
  files: BundleFiles;
  /** SHA-256 (hex) of every file of the bundle but the manifest, by file name (ONNX external data included). */
  checksums: Record<string, string>;
  shapes: Record<string, Record<string, (number | 'N')[]>>;
  /** Latent scale factor baked into the autoencoder graphs. */
  scaleFactor: number;
  /** Diffusion schedule of the step graph (scaled-linear betas). */
  schedule: { numTimesteps: number; betaSchedule: 'scaled_linear'; linearStart: number; linearEnd: number };
  /** Inference settings: the sampler, the feature extractor as configured, the anomaly map, the threshold rule, the batch size. */
  inference: ScoringSettings & {
    reconstructor: { kind: string } & Partial<DdimOptions>;
    featureExtractor: { kind: string; [option: string]: unknown };
    threshold: { mode: string; targetFpr: number };
  };
  /** Seed of the sampler's noise (the run's seed; each image draws its own copy). */
  seed: number;
  /** Where the feature extractor's weights come from. */
  featureProvenance: string;
  /**
   * Decision on image scores: anomalous when score >= threshold (chosen on normal validation images
   * at `targetFpr`); heatmap colour range. Null in the models-only export the training workspace
   * runs `--engine ort` from (not a bundle: {@link DiadBundle} refuses it).
   */
  decision: { threshold: number; targetFpr: number; mapRange: [number, number]; source: string } | null;
  /** Class-normalised scores: `(score - mean) / std` of the class's normal validation scores. */
  classScores: Record<string, ClassScoreStats>;
  /** FLOPs per image: one hint-block run, one step, and a whole reconstruction. */
  flopsPerImage: { hint: number; step: number; reconstruction: number };
  createdAt: string;
}

/** SHA-256 of a file (hex), streamed: bundles of the paper's size hold files of gigabytes. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** A file name inside the bundle folder: no folder part, not hidden, not the manifest. */
function isPlainName(name: unknown): name is string {
  return typeof name === 'string' && /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) && name !== MANIFEST_FILE;
}

/**
 * Reads and checks a bundle's manifest: format, version, and that every file it names is a plain
 * name inside the folder with a checksum.
 * @throws Error naming the manifest and the fix: missing or unreadable, another format or version, a bad field.
 */
export async function readBundleManifest(dir: string): Promise<BundleManifest> {
  const path = join(dir, MANIFEST_FILE);
  const text = await fs.readFile(path, 'utf8').catch(() => null);
  if (text === null) throw new Error(await notABundle(dir));
  let m: BundleManifest;
  try {
    m = JSON.parse(text) as BundleManifest;
  } catch (e) {
    throw new Error(`${path} is not valid JSON (${(e as Error).message}); re-export the bundle with \`diad export\``);
  }
  if (m?.format !== BUNDLE_FORMAT)
    throw new Error(`${path}: format ${JSON.stringify(m?.format)} is not a diad bundle (${BUNDLE_FORMAT}); re-export it with \`diad export\``);
  if (!READABLE_BUNDLE_VERSIONS.includes(m.version))
    throw new Error(
      `${path}: bundle version ${JSON.stringify(m.version)} (written by @diad/core ${m.packageVersions?.['@diad/core'] ?? 'unknown'}); this @diad/core reads versions ${READABLE_BUNDLE_VERSIONS.join(', ')}: re-export the run with this version's \`diad export\`, or load it with the version that wrote it`,
    );
  const names = Object.entries(m.files ?? {}).filter(([, v]) => v !== null);
  for (const [k, v] of names) {
    if (!isPlainName(v))
      throw new Error(`${path}: files.${k} ${JSON.stringify(v)} is not a file name inside the bundle; the manifest is damaged: re-export it`);
    if (!m.checksums?.[v]) throw new Error(`${path}: no checksum for ${v}; the manifest is damaged: re-export it`);
  }
  for (const name of Object.keys(m.checksums ?? {}))
    if (!isPlainName(name)) throw new Error(`${path}: checksum entry ${JSON.stringify(name)} is not a file name inside the bundle; re-export it`);
  const bad = manifestProblems(m);
  if (bad.length) throw new Error(`${path}: the manifest is damaged (${bad.join('; ')}); re-export the bundle with \`diad export\``);
  return m;
}

/** Why `dir` holds no manifest, and what to do. */
async function notABundle(dir: string): Promise<string> {
  const st = await fs.stat(dir).catch(() => null);
  if (!st) return `${dir} does not exist; give the folder \`diad export --run RUN --out DIR\` wrote`;
  if (!st.isDirectory()) return `${dir} is a file; give the bundle's folder (the one holding ${MANIFEST_FILE})`;
  const isRun = await fs.stat(join(dir, 'config.json')).then(
    () => true,
    () => false,
  );
  return isRun
    ? `${dir} is a run folder, not a bundle; export it first: \`diad export --run ${dir} --out BUNDLE_DIR\``
    : `${dir} is not a diad bundle (no ${MANIFEST_FILE}); make one with \`diad export --run RUN --out DIR\``;
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isCount = (v: unknown, min = 1): v is number => Number.isInteger(v) && (v as number) >= min;

/** The fields the runtime reads that are missing or of the wrong type (a hand-edited or damaged manifest). */
function manifestProblems(m: BundleManifest): string[] {
  const out: string[] = [];
  const need = (ok: boolean, what: string) => {
    if (!ok) out.push(what);
  };
  const p = m.preprocessing;
  need(isCount(p?.size), `preprocessing.size ${JSON.stringify(p?.size)} is not a positive integer`);
  need(Array.isArray(p?.mean) && p.mean.length === 3 && p.mean.every(isNum), 'preprocessing.mean is not 3 numbers');
  need(Array.isArray(p?.std) && p.std.length === 3 && p.std.every((v) => isNum(v) && v > 0), 'preprocessing.std is not 3 positive numbers');
  const latent = m.shapes?.autoencoderEncode?.latent;
  need(
    Array.isArray(latent) && isCount(latent[1]) && isCount(latent[2]) && isCount(p?.size) && p.size % (latent[2] as number) === 0,
    'shapes.autoencoderEncode.latent does not fit preprocessing.size',
  );
  const inf = m.inference;
  need(typeof inf?.reconstructor?.kind === 'string', 'inference.reconstructor.kind is missing');
  need(isNum(inf?.anomalyMap?.sigma) && inf.anomalyMap.sigma >= 0, 'inference.anomalyMap.sigma is not a number >= 0');
  need(inf?.anomalyMap?.combine === 'add' || inf?.anomalyMap?.combine === 'mul', 'inference.anomalyMap.combine is not add or mul');
  need(
    inf?.anomalyMap?.levels === undefined || (Array.isArray(inf.anomalyMap.levels) && inf.anomalyMap.levels.every((l) => isCount(l, 0))),
    'inference.anomalyMap.levels is not a list of levels',
  );
  need(
    inf?.anomalyMap?.reference === undefined || inf.anomalyMap.reference === 'input' || inf.anomalyMap.reference === 'autoencoded',
    'inference.anomalyMap.reference is not input or autoencoded',
  );
  need(isCount(inf?.batchSize), 'inference.batchSize is not a positive integer');
  need(Number.isInteger(m.seed), 'seed is not an integer');
  need(isCount(m.schedule?.numTimesteps) && isNum(m.schedule?.linearStart) && isNum(m.schedule?.linearEnd), 'schedule is incomplete');
  const d = m.decision;
  need(
    d === null || (isNum(d?.threshold) && isNum(d?.targetFpr) && Array.isArray(d?.mapRange) && d.mapRange.length === 2 && d.mapRange.every(isNum)),
    'decision has no numeric threshold, targetFpr and mapRange',
  );
  for (const [c, v] of Object.entries(m.classScores ?? {}))
    need(isCount(v?.count, 0) && isNum(v?.mean) && isNum(v?.std) && v.std >= 0, `classScores.${c} is not { count, mean, std }`);
  return out;
}

/**
 * Checks every file of the bundle against its checksum.
 * @throws Error naming the first missing or changed file.
 */
export async function verifyBundle(dir: string, m: BundleManifest): Promise<void> {
  for (const [name, want] of Object.entries(m.checksums)) {
    const path = join(dir, name);
    const got = await sha256File(path).catch(() => null);
    if (got === null) throw new Error(`${path} is missing from the bundle (the manifest lists it); copy the whole bundle folder again or re-export it`);
    if (got !== want)
      throw new Error(
        `${path} was changed after export (SHA-256 ${got.slice(0, 12)}..., the manifest has ${want.slice(0, 12)}...); copy the bundle again or re-export it`,
      );
  }
}

/** The checksums of bundle files (names relative to `dir`). */
export async function checksumFiles(dir: string, names: readonly string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const n of [...names].sort()) out[n] = await sha256File(join(dir, n));
  return out;
}
