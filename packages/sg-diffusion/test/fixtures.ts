/** Where the official golden tensors are: DIAD_REFERENCE_DIR, default ../shared/fixtures/reference beside the repository. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const dir = process.env.DIAD_REFERENCE_DIR ?? resolve(dirname(fileURLToPath(import.meta.url)), '../../../../shared/fixtures/reference');
export const present = existsSync(dir);
if (!present) console.warn(`reference fixtures not found at ${dir}: parity tests skipped (set DIAD_REFERENCE_DIR)`);

/** A fixture's JSON description. */
export const json = (name: string) => JSON.parse(readFileSync(`${dir}/${name}.json`, 'utf8'));
