/** The official golden tensors, from core's one lookup (`DIAD_REFERENCE_DIR`). */
import { readFileSync } from 'node:fs';
import { fixturesPresent, REFERENCE_DIR } from '@diad/core/testing';

export const dir = REFERENCE_DIR;
export const present = fixturesPresent('sg-diffusion parity tests', dir);

/** A fixture's JSON description. */
export const json = (name: string) => JSON.parse(readFileSync(`${dir}/${name}.json`, 'utf8'));
