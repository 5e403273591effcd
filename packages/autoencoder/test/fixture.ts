/** The reference fixture folder (golden tensors of the official code), from core's one lookup. */
import { fixturesPresent, REFERENCE_DIR } from '@diad/core/testing';

export { REFERENCE_DIR };
export const HAS_REFERENCE = fixturesPresent('autoencoder fixture tests', REFERENCE_DIR);
