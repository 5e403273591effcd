/** Locates the reference fixture folder: `DIAD_REFERENCE_DIR`, or `<repo>/../shared/fixtures/reference`. */
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const REFERENCE_DIR = process.env.DIAD_REFERENCE_DIR ?? resolve(here, '../../../../shared/fixtures/reference');
export const HAS_REFERENCE = existsSync(REFERENCE_DIR);
if (!HAS_REFERENCE) console.warn(`[autoencoder] reference fixtures not found at ${REFERENCE_DIR}: skipping fixture tests (set DIAD_REFERENCE_DIR)`);
