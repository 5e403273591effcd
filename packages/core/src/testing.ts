/**
 * Where the shared test fixtures are, for every package's tests (one lookup, not one per package):
 * the official code's golden tensors (`DIAD_REFERENCE_DIR`, default
 * `<repo>/../shared/fixtures/reference`), small ONNX models (`DIAD_ONNX_FIXTURE_DIR`, default
 * `<repo>/../shared/fixtures/onnx`) and real data (`<repo>/../shared/data`). Tests that need a
 * missing folder are skipped with a warning saying which variable to set.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** `../shared` beside the repository (this file is at `packages/core/{src,dist}/`). */
export const SHARED_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../shared');
export const REFERENCE_DIR = process.env.DIAD_REFERENCE_DIR ?? join(SHARED_DIR, 'fixtures', 'reference');
export const ONNX_FIXTURE_DIR = process.env.DIAD_ONNX_FIXTURE_DIR ?? join(SHARED_DIR, 'fixtures', 'onnx');
export const SHARED_DATA_DIR = join(SHARED_DIR, 'data');

/** True when every path exists; otherwise warns that `what` is skipped, naming the missing path. */
export function fixturesPresent(what: string, ...paths: string[]): boolean {
  const missing = paths.find((p) => !existsSync(p));
  if (missing === undefined) return true;
  console.warn(`[skip] ${what}: ${missing} does not exist (set DIAD_REFERENCE_DIR / DIAD_ONNX_FIXTURE_DIR to the shared fixtures)`);
  return false;
}
