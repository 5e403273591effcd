/**
 * The memory plan of `diad fit`: an estimate of what the SG stage (stage 3, the largest: SG network
 * + UNet, official trainable groups) holds while it trains on onnxruntime (`ortStageTrainer`), and
 * the memory this machine offers, so a configuration that cannot fit is refused before any work.
 */
import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { readSafetensorsIndex, type HostTensor } from '@diad/core';
import { appendBackward } from '@diad/core/onnx';
import { configuredAutoencoder } from '@diad/autoencoder';
import { CLIP_VIT_L14_TEXT, diadParamSpec, parseDiadConfig, recordDenoiserLoss, trainableFilter, type DiadConfig } from '@diad/sg-diffusion';
import type { RunConfig } from './config.js';

/** Bytes of each part of the SG stage's training memory at one micro-batch size. */
export interface TrainingMemory {
  /** Images per micro-batch (accumulated micro-batches run one after the other). */
  batch: number;
  /** Every denoiser parameter twice (float32): the host copy checkpoints are written from and the trainer's own. */
  weights: number;
  /** One float32 gradient per trainable parameter (accumulation adds into the first micro-batch's). */
  gradients: number;
  /** AdamW's `exp_avg` and `exp_avg_sq` per trainable parameter. */
  optimizer: number;
  /**
   * The forward values the backward pass reads (each once, float32): the activations kept for
   * the gradient, and the transposed weight views of the linears. onnxruntime's scratch buffers and
   * the decoded train images come on top.
   */
  activations: number;
  total: number;
}

/** Context tokens of the training graph: CLIP's 77, a learned context's count, or the file's. */
async function contextTokens(d: DiadConfig): Promise<number> {
  if (d.context.kind === 'clip') return CLIP_VIT_L14_TEXT.max_position_embeddings;
  if (d.context.kind === 'learned') return d.context.tokens;
  const shape = (await readSafetensorsIndex(d.context.path)).entry(d.context.tensor).shape; // [1, L, D] or [L, D]
  return shape[shape.length - 2];
}

/**
 * Estimates the SG stage's training memory at `batch` images per micro-batch. Weights, gradients
 * and AdamW state are counted from the parameter specs; activations from the training graph itself
 * (the loss recorded, the backward pass appended, and the forward values it reads summed by their
 * static shapes), so they follow the architecture rather than a rule of thumb.
 * @param batch images per micro-batch (default the stage's `batchSize`).
 */
export async function estimateTrainingMemory(cfg: RunConfig, batch = cfg.stages.sg.batchSize): Promise<TrainingMemory> {
  const d = parseDiadConfig(cfg.models.diad, 'models.diad');
  const ae = configuredAutoencoder(cfg.models.autoencoder, 'models.autoencoder');
  const latent = cfg.data.imageSize / ae.kind.downsampleFactor(ae.config);
  const specs = diadParamSpec(d);
  const trainable = trainableFilter('official');
  const count = (f: (n: string) => boolean) => specs.filter((s) => f(s.name)).reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
  const all = count(() => true);
  const train = count(trainable);
  // Shapes only: the recorder reads no parameter value when parameters are graph inputs.
  const shapes: Record<string, HostTensor<'float32'>> = Object.fromEntries(
    specs.map((s) => [s.name, { dtype: 'float32', shape: s.shape, layout: 'any', data: new Float32Array(0) }]),
  );
  const { rec, loss } = recordDenoiserLoss(d, shapes, {
    batch,
    latentHeight: latent,
    latentWidth: latent,
    guided: true,
    contextTokens: await contextTokens(d),
  });
  const forward = rec.graphNodes.length;
  const forwardValues = new Set(rec.graphNodes.flatMap((n) => n.output));
  appendBackward(rec, loss, rec.paramInputNames.filter(trainable));
  const read = new Set(rec.graphNodes.slice(forward).flatMap((n) => n.input.filter((i) => forwardValues.has(i))));
  let activations = 0;
  for (const v of read) activations += 4 * rec.shapeOf(v).reduce((a, b) => a * b, 1);
  const m = { batch, weights: 2 * 4 * all, gradients: 4 * train, optimizer: 2 * 4 * train, activations };
  return { ...m, total: m.weights + m.gradients + m.optimizer + m.activations };
}

/** The memory this process may use: the machine's, or the cgroup's limit when lower (containers). */
export function availableMemory(): { bytes: number; source: string } {
  for (const [file, source] of [
    ['/sys/fs/cgroup/memory.max', 'cgroup memory.max'],
    ['/sys/fs/cgroup/memory/memory.limit_in_bytes', 'cgroup memory.limit_in_bytes'],
  ]) {
    try {
      const v = Number(readFileSync(file, 'utf8').trim());
      if (Number.isFinite(v) && v > 0 && v < totalmem()) return { bytes: v, source };
    } catch {
      // No such cgroup file: not limited that way.
    }
  }
  return { bytes: totalmem(), source: 'os.totalmem' };
}

const gib = (b: number) => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(1)} GiB` : `${(b / 2 ** 20).toFixed(0)} MiB`);

/** One line: the total and its parts. */
export function formatTrainingMemory(m: TrainingMemory): string {
  return `${gib(m.total)} at batch ${m.batch} (weights ${gib(m.weights)}, gradients ${gib(m.gradients)}, AdamW state ${gib(m.optimizer)}, activations ${gib(m.activations)})`;
}

/**
 * Refuses a fit whose SG stage cannot fit `available` bytes, with the estimate and the fix.
 * @throws Error giving the estimate at the configured batch, the memory seen, and the estimate at
 *   batch 1 (a smaller `--batch-size` with more accumulation keeps the official images per step).
 */
export async function checkTrainingMemory(cfg: RunConfig, available: { bytes: number; source: string } = availableMemory()): Promise<TrainingMemory> {
  const m = await estimateTrainingMemory(cfg);
  if (m.total <= available.bytes) return m;
  const one = cfg.stages.sg.batchSize > 1 ? await estimateTrainingMemory(cfg, 1) : m;
  const hint =
    one.total <= available.bytes
      ? `lower --batch-size (batch 1 needs ${formatTrainingMemory(one)})`
      : `even batch 1 needs ${formatTrainingMemory(one)}: train on a machine with more memory`;
  throw new Error(
    `preset ${cfg.preset}: the SG stage needs about ${formatTrainingMemory(m)}, but this machine offers ${gib(available.bytes)} (${available.source}); ${hint}`,
  );
}
