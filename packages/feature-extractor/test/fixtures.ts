/** Locations of the shared fixtures, overridable by environment (see ../shared/fixtures/README.md). */
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root (two levels above this package). */
export const repoRoot = resolve(here, '../../..');

/** `DIAD_REFERENCE_DIR`, default `<repo>/../shared/fixtures/reference`. */
export const referenceDir = process.env.DIAD_REFERENCE_DIR ?? resolve(repoRoot, '../shared/fixtures/reference');
/** `DIAD_ONNX_FIXTURE_DIR`, default `<repo>/../shared/fixtures/onnx`. */
export const onnxFixtureDir = process.env.DIAD_ONNX_FIXTURE_DIR ?? resolve(repoRoot, '../shared/fixtures/onnx');
/** Shared real data, `<repo>/../shared/data`. */
export const dataDir = resolve(repoRoot, '../shared/data');

/** True when `dir` exists; otherwise prints why the tests that need it are skipped. */
export function present(dir: string, what: string): boolean {
  if (existsSync(dir)) return true;
  console.warn(`[skip] ${what}: ${dir} does not exist`);
  return false;
}
