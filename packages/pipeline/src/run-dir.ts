/**
 * The run folder `runs/NAME/`: `config.json` (the resolved config and its hash), one state file per
 * stage (`state/<stage>.json`, naming its latest checkpoint), checkpoints under `checkpoints/`, and
 * whatever later steps write (validation threshold, test outputs, report). Every file is written
 * atomically, so a run killed at any moment (Ctrl-C, kill -9, a full disk) leaves a folder that
 * resumes from the last checkpoint its state file names.
 */
import { promises as fs, existsSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join, resolve, relative } from 'node:path';
import { writeFileAtomic, readSafetensors, writeSafetensors, type SafetensorsFile, type WritableTensor } from '@diad/core';
import { configHash, diffConfigs, parseConfig, type RunConfig } from './config.js';

/** The stages of `diad fit`, in order. */
export const STAGES = ['autoencoder', 'diffusion', 'sg'] as const;
export type StageName = (typeof STAGES)[number];

/** What a stage has done so far; rewritten after every checkpoint. */
export interface StageState {
  stage: StageName;
  /** Optimiser steps completed (the checkpoint holds the weights after this many steps). */
  step: number;
  totalSteps: number;
  /** Checkpoint path relative to the run folder; null before the first one. */
  checkpoint: string | null;
  done: boolean;
  /** Training time spent in this stage over all sessions, seconds. */
  seconds: number;
  /** Images per second of the last session. */
  imagesPerSecond: number;
  /**
   * Loss per logged step (every checkpoint interval, the mean over the interval) and the learning
   * rate of that step's update (absent in runs made before it was logged).
   */
  losses: { step: number; loss: number; lr?: number }[];
}

/**
 * `selection.json`: the checkpoint that validation chose for a stage when it is not the stage's
 * last one; inference (`test`, `predict`, `export`) uses it instead of the last.
 */
export interface Selection {
  stage: StageName;
  step: number;
  /** Path relative to the run folder (`checkpoints/best-<stage>.safetensors`). */
  checkpoint: string;
  rule: string;
  value: number;
}

/** Raised when a run folder exists with another config. */
export class ConfigMismatchError extends Error {}

/** A run folder. Create or reopen it with {@link RunDir.open}. */
export class RunDir {
  private constructor(
    readonly dir: string,
    readonly config: RunConfig,
    readonly hash: string,
    /** The hash `config.json` records (the train config's when the run was made); differs from `hash` after a hand edit. */
    readonly recordedHash: string = hash,
  ) {}

  /**
   * Opens `dir` for `config`: a new folder gets `config.json`; an existing one must hold the same
   * config, else it refuses, listing each differing field. The inference defaults count too (the
   * fit validates with them), though the hash covers the train config only.
   * The config is validated first (a script may have changed a resolved preset), so a run folder
   * never holds a config that its own later commands would refuse.
   * @throws Error naming each invalid field; ConfigMismatchError naming the fields that differ and the way out.
   */
  static async open(dir: string, given: RunConfig): Promise<RunDir> {
    const config = parseConfig(given, `${dir}: the config to open the run with`);
    const abs = resolve(dir);
    const hash = configHash(config);
    const path = join(abs, 'config.json');
    if (existsSync(path)) {
      const stored = await RunDir.load(abs);
      const differences = diffConfigs(stored.config, config);
      if (differences.length) {
        const diffs = differences.map((d) => `  ${d.path}: run has ${d.stored}, now ${d.requested}`).join('\n');
        const onlyInference = differences.every((d) => d.path.startsWith('inference.'));
        throw new ConfigMismatchError(
          `${dir} was made with another config (hash ${stored.hash}, now ${hash}); it will not be resumed with different settings.\n` +
            `Differing fields:\n${diffs}\n` +
            (onlyInference
              ? `Only inference settings differ: resume with the run's own (\`diad fit --resume ${dir}\`) and change them per command afterwards (\`diad test --run ${dir} --set key=value\`).\n`
              : '') +
            `Use the same options to resume (\`diad fit --resume ${dir}\` continues with its own config), or start a new run in another folder (--out), or delete ${dir} to start over there.`,
        );
      }
      return stored;
    }
    await fs.mkdir(abs, { recursive: true });
    await writeFileAtomic(path, JSON.stringify({ hash, config }, null, 2) + '\n');
    return new RunDir(abs, config, hash);
  }

  /**
   * Loads an existing run folder with its stored config.
   * @throws Error when the folder or its `config.json` is missing or invalid.
   */
  static async load(dir: string): Promise<RunDir> {
    const abs = resolve(dir);
    const path = join(abs, 'config.json');
    let raw: string;
    try {
      raw = await fs.readFile(path, 'utf8');
    } catch {
      throw new Error(`${dir} is not a run folder (no config.json); create one with \`diad fit --out ${dir} ...\``);
    }
    let parsed: { hash?: string; config?: unknown };
    try {
      parsed = JSON.parse(raw);
    } catch (e) {
      throw new Error(`${path} is not valid JSON (${(e as Error).message}); the run folder is damaged`);
    }
    const config = parseConfig(parsed.config, path);
    const hash = configHash(config);
    return new RunDir(abs, config, hash, typeof parsed.hash === 'string' ? parsed.hash : hash);
  }

  /** Absolute path of a file inside the run folder. */
  path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  /** Path relative to the run folder (how state files refer to checkpoints). */
  rel(abs: string): string {
    return relative(this.dir, abs);
  }

  /** The stage's state, or null when it has not started. */
  async readStage(stage: StageName): Promise<StageState | null> {
    try {
      return JSON.parse(await fs.readFile(this.path('state', `${stage}.json`), 'utf8')) as StageState;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new Error(`${this.path('state', `${stage}.json`)}: unreadable stage state (${(e as Error).message})`);
    }
  }

  /** Writes the stage's state atomically. */
  async writeStage(state: StageState): Promise<void> {
    await writeFileAtomic(this.path('state', `${state.stage}.json`), JSON.stringify(state, null, 2) + '\n');
  }

  /**
   * Saves a checkpoint `checkpoints/<stage>-<step>.safetensors` atomically, then the state naming
   * it, then removes the stage's older checkpoints: at every moment the state names a whole file.
   */
  async saveCheckpoint(state: StageState, tensors: Record<string, WritableTensor>): Promise<StageState> {
    const name = `${state.stage}-${String(state.step).padStart(6, '0')}.safetensors`;
    const abs = this.path('checkpoints', name);
    await fs.mkdir(this.path('checkpoints'), { recursive: true });
    await writeSafetensors(abs, tensors, { stage: state.stage, step: String(state.step), config_hash: this.hash });
    const next = { ...state, checkpoint: this.rel(abs) };
    await this.writeStage(next);
    for (const f of await fs.readdir(this.path('checkpoints'))) {
      if (!f.startsWith(`${state.stage}-`) || f === name || !f.endsWith('.safetensors')) continue;
      // The new checkpoint and state are safe; failing to tidy an old one only costs disk space.
      await fs
        .rm(this.path('checkpoints', f), { force: true })
        .catch((e: Error) => process.stderr.write(`warning: could not remove old checkpoint ${f}: ${e.message}\n`));
    }
    return next;
  }

  /**
   * Reads the checkpoint a stage state names.
   * @throws Error naming the stage and file when the state names none or it cannot be read.
   */
  async loadCheckpoint(stage: StageName): Promise<SafetensorsFile> {
    const st = await this.readStage(stage);
    if (!st?.checkpoint) throw new Error(`${this.dir}: stage ${stage} has no checkpoint yet; run \`diad fit --resume ${this.dir}\``);
    return readSafetensors(this.path(st.checkpoint));
  }

  /**
   * Copies the checkpoint the stage's state names to `checkpoints/best-<stage>-<step>.safetensors`
   * (atomically: a temporary copy, renamed) and removes the stage's older best copies.
   * @returns the copy's path relative to the run folder.
   */
  async keepBest(stage: StageName): Promise<string> {
    const st = await this.readStage(stage);
    if (!st?.checkpoint) throw new Error(`${this.dir}: stage ${stage} has no checkpoint to keep`);
    const name = `best-${stage}-${String(st.step).padStart(6, '0')}.safetensors`;
    const dest = this.path('checkpoints', name);
    const tmp = `${dest}.tmp-${process.pid}`;
    await fs.copyFile(this.path(st.checkpoint), tmp);
    await fs.rename(tmp, dest);
    for (const f of await fs.readdir(this.path('checkpoints'))) {
      if (f.startsWith(`best-${stage}-`) && f !== name && f.endsWith('.safetensors')) await fs.rm(this.path('checkpoints', f), { force: true });
    }
    return this.rel(dest);
  }

  /** The checkpoint inference uses for a stage: the validation's choice (`selection.json`), else the stage's last. */
  async inferenceCheckpoint(stage: StageName): Promise<string | null> {
    const sel = await this.readJson<Selection>('selection.json');
    if (sel?.stage === stage) return sel.checkpoint;
    return (await this.readStage(stage))?.checkpoint ?? null;
  }

  /** Reads a JSON file of the run folder, or null when absent. */
  async readJson<T>(name: string): Promise<T | null> {
    try {
      return JSON.parse(await fs.readFile(this.path(name), 'utf8')) as T;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new Error(`${this.path(name)}: ${(e as Error).message}`);
    }
  }

  /** Writes a JSON file of the run folder atomically. */
  async writeJson(name: string, value: unknown): Promise<void> {
    await writeFileAtomic(this.path(name), JSON.stringify(value, null, 2) + '\n');
  }

  /**
   * Takes the folder's lock (`fit.lock`, holding the pid) so two processes never train into one
   * folder. A lock left by a dead process (kill -9) is taken over. Returns the release function.
   * @throws Error naming the live process that holds the lock.
   */
  lock(): () => void {
    const path = this.path('fit.lock');
    if (existsSync(path)) {
      const pid = Number(readFileSync(path, 'utf8'));
      if (pid && pid !== process.pid && isAlive(pid)) {
        throw new Error(`${this.dir} is in use by process ${pid} (fit.lock); wait for it or stop it first`);
      }
    }
    writeFileSync(path, String(process.pid));
    return () => rmSync(path, { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
