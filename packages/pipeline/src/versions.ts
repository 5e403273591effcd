import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));

/**
 * The version of an installed package, found as Node does: `node_modules/<name>/package.json` in
 * this folder or a parent (works for workspace links and for a published install, and for
 * packages whose `exports` hide their package.json). Null when it is not installed.
 * @param from the folder to start from (default this package's; an app passes its own to see its dependencies).
 */
export function packageVersion(name: string, from: string = HERE): string | null {
  for (let dir = from; ; dir = dirname(dir)) {
    const pj = join(dir, 'node_modules', name, 'package.json');
    if (existsSync(pj)) return (JSON.parse(readFileSync(pj, 'utf8')) as { version?: string }).version ?? null;
    if (dir === dirname(dir)) return null;
  }
}

/** The version of @diad/pipeline, from its own package.json. */
export function pipelineVersion(): string {
  return (JSON.parse(readFileSync(join(HERE, '..', 'package.json'), 'utf8')) as { version: string }).version;
}

/** The diad packages whose versions results record. */
export const DIAD_PACKAGES = [
  '@diad/core',
  '@diad/datasets',
  '@diad/metrics',
  '@diad/feature-extractor',
  '@diad/autoencoder',
  '@diad/sg-diffusion',
  '@diad/pipeline',
];

/** The diad packages' versions (null: not installed). */
export function diadVersions(): Record<string, string | null> {
  return { ...Object.fromEntries(DIAD_PACKAGES.map((p) => [p, packageVersion(p)])), '@diad/pipeline': pipelineVersion() };
}
