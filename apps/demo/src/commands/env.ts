import type { Command } from 'commander';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { env, type DiadEnv } from '@diad/core';
import { availableParallelism, cpus, platform, arch, totalmem } from 'node:os';
import type { describeEngines, EngineInfo, TfjsEngine } from '@diad/core/tfjs';
import type { describeOrt, ProviderProbe } from '@diad/core/ort';
import { DIAD_PACKAGES, packageVersion } from '@diad/pipeline';

const OTHER_PACKAGES = ['sharp', 'commander', 'cli-progress', 'zod'];

interface EnvFlags {
  json?: boolean;
  engine?: string;
  init: boolean;
}

/** What `diad env` reports. */
export interface EnvReport {
  node: string;
  platform: string;
  /** @diad/core's env: engines, providers, threads, model paths (from DIAD_* variables and --providers). */
  env: DiadEnv;
  cpus: { logical: number; model: string };
  memoryGiB: number;
  packages: Record<string, string | null>;
  /** tfjs: installed engines, and the one `initTfjs()` selected (with backend and threads). */
  tfjs: { available: ReturnType<typeof describeEngines>; selected: EngineInfo | null } | { error: string };
  /** onnxruntime-node: version, execution providers, the requested ones and whether each starts, threads. */
  onnxruntime: (ReturnType<typeof describeOrt> & { requested: ProviderProbe[] | { error: string }; threads: string }) | { error: string };
}

/**
 * `diad env [--json] [--engine E] [--no-init]`: Node, package versions, the tfjs engine that
 * `initTfjs()` selects (backend, threads, SIMD; `--engine` or DIAD_TFJS_ENGINE override it) and
 * onnxruntime-node's version, providers and threads.
 */
export function register(program: Command): void {
  program
    .command('env')
    .description('show Node, package versions, the tfjs engine (backend, threads) and onnxruntime-node')
    .option('--engine <engine>', 'tfjs engine to initialise: auto, tfjs-node-gpu, tfjs-node, wasm, cpu (default: DIAD_TFJS_ENGINE or auto)')
    .option('--no-init', 'only list installed engines; do not initialise one')
    .option('--json', 'print as JSON')
    .action(async (flags: EnvFlags) => {
      const report = await collectEnv(flags);
      process.stdout.write(flags.json ? JSON.stringify(report, null, 2) + '\n' : formatEnv(report));
      // The report is still printed, but a requested engine that cannot start is a failure.
      if ('error' in report.tfjs) process.exitCode = 1;
      // So is a requested onnxruntime provider list none of which starts.
      const ort = report.onnxruntime;
      if (!('error' in ort) && ('error' in ort.requested || !ort.requested.some((p) => p.ok))) process.exitCode = 1;
    });
}

async function collectEnv(flags: EnvFlags): Promise<EnvReport> {
  const packages: Record<string, string | null> = {};
  // Looked up from this app, which depends on all of them.
  const from = dirname(fileURLToPath(import.meta.url));
  for (const p of [...DIAD_PACKAGES, ...OTHER_PACKAGES]) packages[p] = packageVersion(p, from);
  return {
    node: process.version,
    platform: `${platform()} ${arch()}`,
    env: { ...env },
    cpus: { logical: availableParallelism(), model: cpus()[0]?.model ?? 'unknown' },
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    packages,
    tfjs: await tfjsInfo(flags),
    onnxruntime: await ortInfo(),
  };
}

async function tfjsInfo(flags: EnvFlags): Promise<EnvReport['tfjs']> {
  try {
    // Loaded on demand: tfjs is an optional peer of @diad/core.
    const { describeEngines, initTfjs } = await import('@diad/core/tfjs');
    const available = describeEngines();
    if (!flags.init) return { available, selected: null };
    // initTfjs validates the name and says which engines exist.
    return { available, selected: await initTfjs(flags.engine ? { engine: flags.engine as TfjsEngine } : {}) };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

async function ortInfo(): Promise<EnvReport['onnxruntime']> {
  try {
    const { describeOrt, probeOrtProviders } = await import('@diad/core/ort');
    const requested = await probeOrtProviders().catch((e: Error) => ({ error: e.message }));
    return {
      ...describeOrt(),
      requested,
      threads: env.ortThreads
        ? `${env.ortThreads} intra-op threads (env.ortThreads)`
        : `onnxruntime default: one intra-op thread per physical core (${availableParallelism()} logical CPUs here)`,
    };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

function formatEnv(r: EnvReport): string {
  const out = [
    `node        ${r.node} (${r.platform}, ${r.cpus.logical} CPUs ${r.cpus.model}, ${r.memoryGiB} GiB)`,
    `env         tfjsEngine ${r.env.tfjsEngine} (DIAD_TFJS_ENGINE), ortProviders ${r.env.ortProviders.join(',')} (DIAD_ORT_PROVIDERS or --providers), ` +
      `ortThreads ${r.env.ortThreads ?? "onnxruntime's choice"} (DIAD_ORT_THREADS), modelsDir ${r.env.modelsDir ?? 'working directory'} (DIAD_MODELS_DIR), debug ${r.env.debug} (DIAD_DEBUG)`,
    'packages',
    ...Object.entries(r.packages).map(([k, v]) => `  ${k.padEnd(26)}${v ?? 'not installed'}`),
  ];
  if ('error' in r.tfjs) out.push(`tfjs        unavailable: ${r.tfjs.error}`);
  else {
    const { selected: sel, available: avail } = r.tfjs;
    out.push(`tfjs        installed engines: ${avail.engines.map((e) => `${e.engine}${e.installed ? `@${e.version}` : ' (not installed)'}`).join(', ')}`);
    if (sel) {
      out.push(
        `            selected: ${sel.engine} (backend ${sel.backend}, threads ${sel.threads ?? 'unknown'}${sel.simd === null ? '' : `, SIMD ${sel.simd ? 'on' : 'off'}`}; requested ${sel.requested.engine} by ${sel.requested.source})`,
        `            versions: ${Object.entries(sel.versions)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}`,
        ...sel.tried.filter((t) => !t.ok).map((t) => `            skipped ${t.engine}: ${t.reason}`),
        `            gradients: ${sel.gradients ?? 'none registered (training unavailable)'}; Conv2D gradient override: ${sel.conv2dGradOverride ? 'on' : 'off'}`,
      );
    }
  }
  if ('error' in r.onnxruntime) out.push(`onnxruntime unavailable: ${r.onnxruntime.error}`);
  else {
    out.push(
      `onnxruntime ${r.onnxruntime.version}; providers ${r.onnxruntime.providers.map((p) => `${p.name}${p.bundled ? '' : ' (needs extra libraries)'}`).join(', ')}`,
      `            requested (env.ortProviders: ${r.onnxruntime.envProviders}), in order:`,
      ...('error' in r.onnxruntime.requested
        ? [`              ${r.onnxruntime.requested.error}`]
        : r.onnxruntime.requested.map((p) => `              ${p.provider}: ${p.ok ? 'starts' : `cannot start: ${p.reason}`}`)),
      `            threads: ${r.onnxruntime.threads}`,
    );
  }
  return out.join('\n') + '\n';
}
