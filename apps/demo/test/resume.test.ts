/**
 * Fault tolerance of `diad fit` through the built CLI: a fit killed with SIGKILL during stage 3
 * resumes to the same final step count with a loadable checkpoint; a run folder refuses another
 * config, naming the differing fields.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { spawn, execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureSynthetic } from '@diad/datasets';
import { readSafetensors } from '@diad/core';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');
/** Runs the built CLI; resolves with exit code, stdout, stderr. */
function diad(args: string[], timeoutMs = 300_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((ok) =>
    execFile('node', [CLI, ...args], { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      ok({ code: err ? (((err as { code?: number }).code as number) ?? 1) : 0, stdout, stderr }),
    ),
  );
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const readState = (run: string, stage: string) => {
  try {
    return JSON.parse(readFileSync(join(run, 'state', `${stage}.json`), 'utf8'));
  } catch {
    return null;
  }
};

describe('resume after kill -9 during stage 3', () => {
  const dir = mkdtempSync(join(tmpdir(), 'diad-resume-'));
  const data = join(dir, 'data');
  const run = join(dir, 'run');
  const SG_STEPS = 10;
  const fitArgs = () => ['fit', '--data', data, '--preset', 'ci', '--out', run, '--ae-steps', '2', '--diffusion-steps', '2', '--sg-steps', String(SG_STEPS), '--checkpoint-every', '2', '--max-train-per-class', '4', '--quiet'];

  beforeAll(async () => {
    await ensureSynthetic(data, { size: 64, train: 4, testGood: 1, testDefective: 1 });
  });

  it('continues from the last checkpoint to the same final step', async () => {
    const child = spawn('node', [CLI, ...fitArgs()], { stdio: 'ignore' });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    let killedAt = -1;
    for (let i = 0; i < 900 && child.exitCode === null; i++) {
      const st = readState(run, 'sg');
      if (st && st.step >= 4 && st.step < SG_STEPS) {
        child.kill('SIGKILL');
        killedAt = st.step;
        break;
      }
      await sleep(200);
    }
    await exited;
    expect(killedAt).toBeGreaterThanOrEqual(4);
    const before = readState(run, 'sg');
    expect(before.done).toBe(false);
    expect(before.step).toBeLessThan(SG_STEPS);
    expect(existsSync(join(run, before.checkpoint))).toBe(true);
    expect(readState(run, 'autoencoder')).toMatchObject({ done: true, step: 2 });

    // Rerun the same command: stages 1-2 are not redone, stage 3 picks up at its checkpoint.
    const r = await diad(fitArgs());
    expect(r.code, r.stderr).toBe(0);
    const after = readState(run, 'sg');
    expect(after).toMatchObject({ done: true, step: SG_STEPS, checkpoint: `checkpoints/sg-${String(SG_STEPS).padStart(6, '0')}.safetensors` });
    // Every checkpoint interval logged once: those before the kill kept, the rest added on resume.
    expect(after.losses.map((l: { step: number }) => l.step)).toEqual([2, 4, 6, 8, 10]);
    expect(readState(run, 'diffusion')).toMatchObject({ done: true, step: 2 });
    const ck = await readSafetensors(join(run, after.checkpoint));
    expect(ck.float32('optimizer.step').data[0]).toBe(SG_STEPS);
    expect(ck.names().filter((n) => n.startsWith('control_model.')).length).toBeGreaterThan(100);
    expect(existsSync(join(run, 'validation.json'))).toBe(true);
  }, 400_000);

  it('refuses to resume with another config, naming the differing fields', async () => {
    const r = await diad([...fitArgs(), '--seed', '5', '--sg-steps', '12']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/was made with another config/);
    expect(r.stderr).toMatch(/seed: run has 0, now 5/);
    expect(r.stderr).toMatch(/stages\.sg\.steps: run has 10, now 12/);
  }, 60_000);
});
