#!/usr/bin/env node
/**
 * The `diad` command. Each command lives in `commands/<name>.ts` and exports `register(program)`;
 * adding one is one import and one `register` call below.
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { env } from '@diad/core';
import { register as registerEnv } from './commands/env.js';
import { register as registerInspect } from './commands/inspect.js';
import { register as registerFit } from './commands/fit.js';
import { register as registerTest } from './commands/test.js';
import { register as registerValidate } from './commands/validate.js';
import { register as registerPredict } from './commands/predict.js';
import { register as registerDemo } from './commands/demo.js';
import { register as registerBaseline } from './commands/baseline.js';
import { register as registerExport } from './commands/export.js';
import { register as registerBench } from './commands/bench.js';
import { register as registerAblate } from './commands/ablate.js';
import { register as registerMerge } from './commands/merge.js';
import { register as registerServe } from './commands/serve.js';

const program = new Command('diad')
  .description('DiAD: diffusion-based multi-class anomaly detection (He et al., AAAI 2024), in TypeScript')
  .version(JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version)
  .showHelpAfterError()
  .option(
    '--providers <list>',
    'onnxruntime execution providers in priority order, e.g. webgpu,cpu or cuda,cpu (a later one is the fallback you allow); default DIAD_ORT_PROVIDERS, else cpu',
  );

// One setting for every command that runs onnxruntime: the flag sets core's env, which every session reads.
program.hook('preAction', async () => {
  const providers = program.opts<{ providers?: string }>().providers;
  if (providers === undefined) return;
  const { resolveOrtProviders } = await import('@diad/core/ort');
  env.ortProviders = resolveOrtProviders(providers.split(','), `--providers ${providers}`);
});

registerInspect(program);
registerEnv(program);
registerFit(program);
registerTest(program);
registerValidate(program);
registerAblate(program);
registerMerge(program);
registerPredict(program);
registerDemo(program);
registerBaseline(program);
registerExport(program);
registerBench(program);
registerServe(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  // Errors carry the file and the fix in their message; the stack only helps when debugging.
  process.stderr.write(`diad: ${env.debug ? (e as Error).stack : (e as Error).message}\n`);
  process.exitCode = 1;
}
