/**
 * A deployed DiAD model: a bundle folder opened on onnxruntime-node with @diad/core alone (no
 * training package, no tfjs). Scoring runs the same code as `diad test --engine ort`: the
 * autoencoder, DDIM over the guided denoiser, and the anomaly map of the feature extractor's maps,
 * so a bundle gives the scores of its run.
 */
import { join } from 'node:path';
import { DdimReconstructor, type DdimOptions } from '../ddim.js';
import { OrtAutoencoder, OrtGuidedDenoiser, OnnxFeatureExtractor, type OrtStageOptions } from '../ort/stages.js';
import { readSafetensors } from '../safetensors.js';
import { DiffusionSchedule } from '../schedule.js';
import { scoreImages, type Scored, type Stages } from '../scoring.js';
import type { HostTensor } from '../tensor.js';
import { MANIFEST_FILE, readBundleManifest, verifyBundle, type BundleManifest } from './manifest.js';

/** Options of {@link DiadBundle.open}. */
export interface OpenBundleOptions extends OrtStageOptions {
  /** Check every file's SHA-256 before loading (default true). */
  verify?: boolean;
}

/** One image's result. */
export interface BundleResult {
  /** Image score: the maximum of the anomaly map (units of 1 - cosine, summed over levels). */
  score: number;
  /** Anomalous when `score >= decision.threshold`. */
  anomalous: boolean;
  /**
   * `(score - mean) / std` of the class's normal validation scores: how many standard deviations
   * above a normal image of its class. Null when no class was given, the bundle does not know it, or
   * it had fewer than two normal validation images (or scores without spread).
   */
  classScore: number | null;
}

function ddimOptions(m: BundleManifest, dir: string): DdimOptions {
  const r = m.inference.reconstructor;
  if (r.kind !== 'ddim') throw new Error(`${join(dir, MANIFEST_FILE)}: sampler ${r.kind}; a bundle runs the ddim sampler only: re-export with ddim`);
  const { tStart, steps, eta, schedule } = r;
  if (!(Number.isInteger(tStart) && Number.isInteger(steps) && typeof eta === 'number' && (schedule === 'official' || schedule === 'partial')))
    throw new Error(`${join(dir, MANIFEST_FILE)}: inference.reconstructor ${JSON.stringify(r)} is not complete DDIM options; re-export the bundle`);
  return { tStart: tStart!, steps: steps!, eta, schedule };
}

/**
 * Opens the stages a manifest describes, from the files in `dir` (no checksum check: see {@link DiadBundle.open}).
 * @throws Error when the manifest has no feature extractor, or a file cannot be loaded (naming it).
 */
export async function openBundleStages(dir: string, m: BundleManifest, options: OrtStageOptions = {}): Promise<Stages & { release(): Promise<void> }> {
  const f = (name: string) => join(dir, name);
  const fe = m.files.featureExtractor;
  if (!fe)
    throw new Error(
      `${f(MANIFEST_FILE)}: the bundle has no feature extractor (${m.inference.featureExtractor.kind} has no ONNX form); re-export with an exportable one, e.g. \`diad export --set featureExtractor=resnet50\``,
    );
  const schedule = new DiffusionSchedule(m.schedule);
  const ddim = ddimOptions(m, dir);
  const context = (await readSafetensors(f(m.files.context))).float32('context');
  const { latent } = m.shapes.autoencoderEncode;
  const geometry = { latentChannels: latent[1] as number, downsampleFactor: m.preprocessing.size / (latent[2] as number) };
  const opened: { release(): Promise<void> }[] = [];
  try {
    const autoencoder = await OrtAutoencoder.open({ encode: f(m.files.autoencoderEncode), decode: f(m.files.autoencoderDecode) }, geometry, options);
    opened.push(autoencoder);
    const denoiser = await OrtGuidedDenoiser.open({ hint: f(m.files.hint), step: f(m.files.step) }, context, options);
    opened.push(denoiser);
    const featureExtractor = await OnnxFeatureExtractor.create(f(fe), { ...options, batchSize: m.inference.batchSize });
    opened.push({ release: () => featureExtractor.dispose() });
    return {
      autoencoder,
      reconstructor: new DdimReconstructor(denoiser, ddim, schedule),
      featureExtractor,
      async release() {
        for (const o of opened) await o.release();
      },
    };
  } catch (e) {
    for (const o of opened) await o.release();
    throw e;
  }
}

/** A bundle opened for inference. */
export class DiadBundle {
  private constructor(
    readonly dir: string,
    /** The manifest; `decision` is never null here. */
    readonly manifest: BundleManifest,
    private readonly stages: Stages & { release(): Promise<void> },
  ) {}

  /**
   * Opens a bundle: reads and checks the manifest, verifies every file's checksum, loads the sessions.
   * @throws Error naming the manifest or the file: not a bundle, another bundle version, a missing or changed file, no feature extractor.
   */
  static async open(dir: string, options: OpenBundleOptions = {}): Promise<DiadBundle> {
    const manifest = await readBundleManifest(dir);
    if (!manifest.decision)
      throw new Error(
        `${join(dir, MANIFEST_FILE)}: a models-only export (made for \`--engine ort\` in the run folder), not a bundle; make one with \`diad export --run RUN --out DIR\``,
      );
    if (options.verify ?? true) await verifyBundle(dir, manifest);
    return new DiadBundle(dir, manifest, await openBundleStages(dir, manifest, options));
  }

  /** Square input side in pixels. */
  get imageSize(): number {
    return this.manifest.preprocessing.size;
  }

  /**
   * Scores preprocessed images (see `manifest.preprocessing`).
   * @param images `[N, 3, S, S]` float32 NCHW, ImageNet-normalised.
   * @returns reconstructions `[N, 3, S, S]`, anomaly maps `[N, 1, S, S]`, image scores.
   * @throws Error when the images are not `[N, 3, S, S]`.
   */
  async score(images: HostTensor): Promise<Scored> {
    if (this.released) throw new Error(`DiadBundle ${this.dir}: released; open it again to score`);
    const S = this.imageSize;
    const [n, c, h, w] = images.shape;
    if (images.shape.length !== 4 || c !== 3 || h !== S || w !== S || n < 1)
      throw new Error(`DiadBundle.score: images must be [N, 3, ${S}, ${S}] (NCHW, ImageNet-normalised), got [${images.shape.join(', ')}]`);
    const bad = images.data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0)
      throw new Error(`DiadBundle.score: image ${Math.floor(bad / (3 * S * S))} holds a non-finite value (${images.data[bad]}); check its preprocessing`);
    const scored = await scoreImages(this.stages, images, this.manifest.inference, this.manifest.seed);
    const nan = scored.scores.findIndex((v) => !Number.isFinite(v));
    if (nan >= 0)
      throw new Error(
        `DiadBundle ${this.dir}: the model gave image ${nan} a non-finite score (${scored.scores[nan]}); the bundle's weights are broken: re-export it`,
      );
    return scored;
  }

  /** The decision and class-normalised score of an image score. */
  judge(score: number, className?: string | null): BundleResult {
    if (!Number.isFinite(score)) throw new Error(`DiadBundle.judge: score ${score} is not a finite number`);
    const stats = className ? this.manifest.classScores[className] : undefined;
    // A class with fewer than two normal validation scores (or no spread) cannot be normalised.
    const usable = stats !== undefined && stats.count >= 2 && stats.std > 0;
    return { score, anomalous: score >= this.manifest.decision!.threshold, classScore: usable ? (score - stats.mean) / stats.std : null };
  }

  private released = false;

  /** Frees the native sessions (once; later calls do nothing). */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.stages.release();
  }
}
