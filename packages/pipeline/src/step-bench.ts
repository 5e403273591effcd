/**
 * The time and peak memory of one DDIM step of a denoiser too big for the tfjs engine (the `sd15`
 * sizes: 1.33 G parameters, 5.3 GB float32, past tfjs-wasm's 4 GiB heap), on onnxruntime-node with
 * external-data weights. Two child processes (`step-bench-worker.ts`), so each peak RSS is its
 * own job's: one writes random weights of the config's shapes as the ONNX hint + step graphs into a
 * temporary folder, the other opens them and times the step graph. The folder is removed afterwards.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DiadConfig } from '@diad/sg-diffusion';

/** A job of the worker (its argv[2], JSON). */
export type StepBenchJob =
  | { mode: 'export'; dir: string; config: DiadConfig; latentSize: number; contextTokens: number }
  | { mode: 'step'; dir: string; config: DiadConfig; latentSize: number; contextTokens: number; batch: number; runs: number };

/** What the export child reports. */
export interface StepBenchExport {
  /** Weight bytes written (float32), the model files' total size on disk. */
  weightBytes: number;
  diskBytes: number;
  /** FLOPs per image of the hint block and of one step. */
  flops: { hint: number; step: number };
  seconds: number;
  peakRssMb: number;
}

/** What the step child reports. */
export interface StepBenchStep {
  /** Seconds to open both sessions (load the external data, optimise the graphs). */
  openSeconds: number;
  /** Seconds of the hint block (once per batch). */
  hintSeconds: number;
  /** Seconds of each timed step-graph run (after one warm-up run). */
  stepSeconds: number[];
  /** RSS after the sessions were opened, and the process's peak. */
  rssAfterOpenMb: number;
  peakRssMb: number;
}

function runWorker<T>(job: StepBenchJob): Promise<T> {
  const worker = fileURLToPath(new URL('./step-bench-worker.js', import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [worker, JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) return resolve(JSON.parse(out.trim().split('\n').pop()!) as T);
      const why = signal === 'SIGKILL' ? 'killed (SIGKILL: out of memory?)' : `exited with ${code ?? signal}`;
      reject(new Error(`step benchmark, ${job.mode} process ${why}`));
    });
  });
}

/**
 * Exports random weights of `config` and times its step graph.
 * @param o latent side, context tokens L, batch and timed runs.
 * @throws Error when a child process fails (its stderr is passed through), e.g. killed for memory.
 */
export async function stepBenchmark(
  config: DiadConfig,
  o: { latentSize: number; contextTokens: number; batch: number; runs: number },
): Promise<{ export: StepBenchExport; step: StepBenchStep }> {
  const dir = mkdtempSync(join(tmpdir(), 'diad-step-bench-'));
  try {
    const common = { dir, config, latentSize: o.latentSize, contextTokens: o.contextTokens };
    const exported = await runWorker<StepBenchExport>({ mode: 'export', ...common });
    const step = await runWorker<StepBenchStep>({ mode: 'step', ...common, batch: o.batch, runs: o.runs });
    return { export: exported, step };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
