/**
 * The child process of `step-bench.ts`: `node step-bench-worker.js '<job JSON>'` runs one job and
 * prints one JSON line (`StepBenchExport` or `StepBenchStep`).
 */
import { statSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Rng, tensor, type HostTensor, type ParamSpec } from '@diad/core';
import { OrtGuidedDenoiser } from '@diad/core/ort';
import { diadParamSpec, exportDenoiserOnnx } from '@diad/sg-diffusion';
import type { StepBenchExport, StepBenchJob, StepBenchStep } from './step-bench.js';

const peakRssMb = () => Math.round(process.resourceUsage().maxRSS / 1024);

/**
 * Random values at PyTorch's default scales (uniform +-1/sqrt(fan_in), N(0, std) approximated by a
 * uniform of the same std) from a xorshift32 stream: 1.3 G values take seconds, where the seeded
 * `Rng` (BigInt PCG) would take minutes. Timing does not depend on the values.
 */
function benchValues(spec: ParamSpec, seed: number): Float32Array {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  if (spec.init === 'zeros') return out;
  if (spec.init === 'ones') return out.fill(1);
  const bound = spec.init === 'normal' ? (spec.std ?? 1) * Math.sqrt(3) : 1 / Math.sqrt(spec.fanIn ?? spec.shape.slice(1).reduce((a, b) => a * b, 1));
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 4294967296 - 0.5) * 2 * bound;
  }
  return out;
}

async function exportJob(job: StepBenchJob): Promise<StepBenchExport> {
  const t0 = performance.now();
  const list = diadParamSpec(job.config);
  const specs = new Map(list.map((s, i) => [s.name, { s, i }]));
  const weightBytes = 4 * list.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
  // Values made when the recorder reads a tensor's data (not its shape), so only the graph's own copy stays.
  const params = new Proxy({} as Record<string, HostTensor<'float32'>>, {
    get(_, name) {
      const e = typeof name === 'string' ? specs.get(name) : undefined;
      if (!e) return undefined;
      let data: Float32Array | null = null;
      return {
        dtype: 'float32',
        shape: e.s.shape,
        layout: 'any',
        get data() {
          data ??= benchValues(e.s, e.i + 1);
          return data;
        },
      };
    },
  });
  const files = await exportDenoiserOnnx(job.dir, job.config, params, {
    latentHeight: job.latentSize,
    latentWidth: job.latentSize,
    contextTokens: job.contextTokens,
  });
  const diskBytes = readdirSync(job.dir).reduce((a, f) => a + statSync(join(job.dir, f)).size, 0);
  return { weightBytes, diskBytes, flops: files.flopsPerImage!, seconds: (performance.now() - t0) / 1000, peakRssMb: peakRssMb() };
}

async function stepJob(job: Extract<StepBenchJob, { mode: 'step' }>): Promise<StepBenchStep> {
  const { batch: n, latentSize: hw, config: c } = job;
  const rng = new Rng(1);
  const f = c.hint_downsample;
  const context = tensor(rng.normals(job.contextTokens * c.unet.context_dim), [1, job.contextTokens, c.unet.context_dim]);
  const latents = tensor(rng.normals(n * c.unet.in_channels * hw * hw), [n, c.unet.in_channels, hw, hw], 'NCHW');
  const hint = tensor(rng.normals(n * c.hint_channels * f * hw * f * hw), [n, c.hint_channels, f * hw, f * hw], 'NCHW');
  let t = performance.now();
  const den = await OrtGuidedDenoiser.open({ hint: join(job.dir, 'hint.onnx'), step: join(job.dir, 'step.onnx') }, context);
  const openSeconds = (performance.now() - t) / 1000;
  const rssAfterOpenMb = Math.round(process.memoryUsage().rss / 2 ** 20);
  try {
    t = performance.now();
    const g = await den.guide(hint);
    const hintSeconds = (performance.now() - t) / 1000;
    await g.eps(latents, 999); // warm-up: onnxruntime sizes its arenas on the first run
    const stepSeconds: number[] = [];
    for (let i = 0; i < job.runs; i++) {
      t = performance.now();
      await g.eps(latents, 999 - 100 * i);
      stepSeconds.push((performance.now() - t) / 1000);
    }
    return { openSeconds, hintSeconds, stepSeconds, rssAfterOpenMb, peakRssMb: peakRssMb() };
  } finally {
    await den.release();
  }
}

const job = JSON.parse(process.argv[2]) as StepBenchJob;
const result = job.mode === 'export' ? await exportJob(job) : await stepJob(job);
process.stdout.write(`${JSON.stringify(result)}\n`);
