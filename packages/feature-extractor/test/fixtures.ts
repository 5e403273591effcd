/** Locations of the shared fixtures, from core's one lookup (`DIAD_REFERENCE_DIR`, `DIAD_ONNX_FIXTURE_DIR`). */
import { fixturesPresent, ONNX_FIXTURE_DIR, REFERENCE_DIR, SHARED_DATA_DIR } from '@diad/core/testing';

export const referenceDir = REFERENCE_DIR;
export const onnxFixtureDir = ONNX_FIXTURE_DIR;
export const dataDir = SHARED_DATA_DIR;

/** True when `dir` exists; otherwise prints why the tests that need it are skipped. */
export const present = (dir: string, what: string): boolean => fixturesPresent(what, dir);
