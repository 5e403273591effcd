import { initTfjs } from '@diad/core/tfjs';

/** The wasm engine for tests (the engine the package targets on CPU), gradients registered. */
export async function useBackend(): Promise<void> {
  await initTfjs({ engine: 'wasm' });
}
