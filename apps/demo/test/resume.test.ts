/**
 * Fault tolerance of `diad fit` through the built CLI: a fit killed with SIGKILL during stage 3
 * resumes to the same final step count with a loadable checkpoint; a run folder refuses another
 * config, naming the differing fields.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureSynthetic } from '@diad/datasets';
import { readSafetensors } from '@diad/core';
import { resolveConfig } from '@diad/pipeline';
import { CLI, ciFitArgs, diad as runCli } from './run-cli.js';

/** The built CLI with this file's longer default time limit. */
const diad = (args: string[], timeoutMs = 300_000) => runCli(args, timeoutMs);
import { RunDir } from '@diad/pipeline';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const readState = (run: string, stage: string) => {
  try {
    return JSON.parse(readFileSync(join(run, 'state', `${stage}.json`), 'utf8'));
  } catch {
    return null;
  }
};

describe('resume after Ctrl-C and kill -9 during stage 3', () => {
  const dir = mkdtempSync(join(tmpdir(), 'diad-resume-'));
  const data = join(dir, 'data');
  const run = join(dir, 'run');
  const SG_STEPS = 10;
  const fitArgs = () => ciFitArgs(data, run, { ae: 2, diffusion: 2, sg: SG_STEPS }, '--checkpoint-every', '2', '--max-train-per-class', '4', '--quiet');

  beforeAll(async () => {
    await ensureSynthetic(data, { size: 64, train: 4, testGood: 1, testDefective: 1 });
  });

  /** Starts the fit, waits until stage 3 has a checkpoint at step >= `atLeast`, sends `signal`; resolves with the exit code and the step seen. */
  async function interrupt(signal: NodeJS.Signals, atLeast: number): Promise<{ code: number | null; sig: string | null; seen: number }> {
    const child = spawn('node', [CLI, ...fitArgs()], { stdio: 'ignore' });
    const exited = new Promise<{ code: number | null; sig: string | null }>((r) => child.on('exit', (code, sig) => r({ code, sig })));
    let seen = -1;
    for (let i = 0; i < 1500 && child.exitCode === null; i++) {
      const st = readState(run, 'sg');
      if (st && st.step >= atLeast && st.step < SG_STEPS) {
        child.kill(signal);
        seen = st.step;
        break;
      }
      await sleep(200);
    }
    return { ...(await exited), seen };
  }

  it('Ctrl-C saves and exits 130; kill -9 loses at most an interval; the rerun ends at the same step', async () => {
    // Ctrl-C (SIGINT): the current step finishes, a checkpoint is written, exit code 130.
    const a = await interrupt('SIGINT', 2);
    expect(a.seen).toBeGreaterThanOrEqual(2);
    expect(a.code).toBe(130);
    const afterInt = readState(run, 'sg');
    expect(afterInt.done).toBe(false);
    expect(afterInt.step).toBeGreaterThanOrEqual(a.seen);
    expect(existsSync(join(run, afterInt.checkpoint))).toBe(true);

    // kill -9 during stage 3 of the resumed run.
    const b = await interrupt('SIGKILL', afterInt.step + 1);
    expect(b.sig).toBe('SIGKILL');
    const before = readState(run, 'sg');
    expect(before.done).toBe(false);
    expect(before.step).toBeGreaterThan(afterInt.step);
    expect(before.step).toBeLessThan(SG_STEPS);
    expect(existsSync(join(run, before.checkpoint))).toBe(true);
    expect(readState(run, 'autoencoder')).toMatchObject({ done: true, step: 2 });

    // Rerun the same command: stages 1-2 are not redone, stage 3 picks up at its checkpoint.
    const r = await diad(fitArgs());
    expect(r.code, r.stderr).toBe(0);
    const after = readState(run, 'sg');
    expect(after).toMatchObject({ done: true, step: SG_STEPS, checkpoint: `checkpoints/sg-${String(SG_STEPS).padStart(6, '0')}.safetensors` });
    expect(after.losses.at(-1).step).toBe(SG_STEPS);
    expect(readState(run, 'diffusion')).toMatchObject({ done: true, step: 2 });
    const ck = await readSafetensors(join(run, after.checkpoint));
    expect(ck.float32('optimizer.step').data[0]).toBe(SG_STEPS);
    expect(ck.names().filter((n) => n.startsWith('control_model.')).length).toBeGreaterThan(100);
    expect(existsSync(join(run, 'validation.json'))).toBe(true);
  }, 500_000);

  it('refuses to resume with another config, naming the differing fields', async () => {
    const r = await diad([...fitArgs(), '--seed', '5', '--sg-steps', '12']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/was made with another config/);
    expect(r.stderr).toMatch(/seed: run has 0, now 5/);
    expect(r.stderr).toMatch(/stages\.sg\.steps: run has 10, now 12/);
  }, 60_000);

  it('a NaN loss stops the stage, naming the step and the last good checkpoint', async () => {
    const nanRun = join(dir, 'nan');
    // A run whose stage 1 learning rate blows the weights up after one update.
    const cfg = resolveConfig('ci', { roots: [data], steps: { autoencoder: 6 }, checkpointEvery: 1, maxTrainPerClass: 4 });
    cfg.stages.autoencoder.lr = 1e30;
    await RunDir.open(nanRun, cfg);
    const r = await diad(['fit', '--resume', nanRun, '--quiet']);
    expect(r.code).toBe(1);
    const m = /stage autoencoder: loss is (NaN|Infinity|-Infinity) at step (\d+); training stopped\. The last good checkpoint is (\S+) /.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    const step = Number(m![2]) - 1; // steps completed before the failing one
    expect(step).toBeGreaterThanOrEqual(1);
    expect(m![3]).toBe(join(nanRun, 'checkpoints', `autoencoder-${String(step).padStart(6, '0')}.safetensors`));
    expect(existsSync(m![3])).toBe(true);
    expect(readState(nanRun, 'autoencoder')).toMatchObject({ step, done: false });
  }, 120_000);

  it('a resumed fit drops validation points scored with other inference settings instead of comparing them', async () => {
    const r = join(dir, 'stale');
    const made = await diad(ciFitArgs(data, r, { ae: 2, diffusion: 2, sg: 8 }, '--checkpoint-every', '2', '--max-train-per-class', '4', '--quiet'));
    expect(made.code, made.stderr).toBe(0);
    const file = join(r, 'validation-curve.json');
    const curve = JSON.parse(readFileSync(file, 'utf8'));
    expect(curve.settingsHash).toMatch(/^[0-9a-f]{12}$/);
    expect(curve.points.map((p: { step: number }) => p.step)).toContain(4);
    // As if config.json's inference section had changed after steps 4 and 8 were validated.
    writeFileSync(file, JSON.stringify({ ...curve, settingsHash: '000000000000' }));
    rmSync(join(r, 'validation.json'));
    const again = await diad(['fit', '--resume', r]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('validation: the points of sg step 4, sg step 8');
    expect(again.stderr).toContain('were scored with other inference settings');
    const after = JSON.parse(readFileSync(file, 'utf8'));
    expect(after.settingsHash).toBe(curve.settingsHash);
    // Only the final checkpoint (still on disk) is scored again; step 4 is gone from the curve.
    expect(after.points.every((p: { step: number }) => p.step === 8)).toBe(true);
    expect(after.best.step).toBe(8);
  }, 300_000);
});
