import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The built `diad` entry the CLI tests run. */
export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');

/** Runs the built CLI; resolves with exit code, stdout, stderr (never rejects). */
export function diad(args: string[], timeoutMs = 240_000): Promise<{ code: number; stdout: string; stderr: string }> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (pnpm --filter @diad/demo build)`);
  return new Promise((ok) =>
    execFile('node', [CLI, ...args], { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      ok({ code: err ? (((err as { code?: number }).code as number) ?? 1) : 0, stdout, stderr }),
    ),
  );
}

/** `diad fit` of the `ci` preset on `data` into `out`, with step counts per stage and more flags. */
export function ciFitArgs(data: string, out: string, steps: { ae: number; diffusion: number; sg: number }, ...more: string[]): string[] {
  return [
    'fit',
    '--data',
    data,
    '--preset',
    'ci',
    '--out',
    out,
    '--ae-steps',
    String(steps.ae),
    '--diffusion-steps',
    String(steps.diffusion),
    '--sg-steps',
    String(steps.sg),
    ...more,
  ];
}
