import { describe, expect, it } from 'vitest';
import { resolve } from 'node:path';
import { modelPath, readEnv, env } from '../src/env.js';

describe('env', () => {
  it('reads every setting from its variable, with defaults', () => {
    expect(readEnv({})).toEqual({ tfjsEngine: 'auto', ortProviders: ['cpu'], ortThreads: null, modelsDir: null, debug: false });
    expect(
      readEnv({ DIAD_TFJS_ENGINE: 'wasm', DIAD_ORT_PROVIDERS: ' CUDA , cpu,', DIAD_ORT_THREADS: '3', DIAD_MODELS_DIR: 'models', DIAD_DEBUG: '1' }),
    ).toEqual({
      tfjsEngine: 'wasm',
      ortProviders: ['cuda', 'cpu'],
      ortThreads: 3,
      modelsDir: resolve('models'),
      debug: true,
    });
    expect(readEnv({ DIAD_DEBUG: '0' }).debug).toBe(false);
  });
  it('refuses a thread count that is not a whole number >= 1, naming the variable', () => {
    expect(() => readEnv({ DIAD_ORT_THREADS: '2.5' })).toThrow(/DIAD_ORT_THREADS=2\.5: must be a whole number >= 1/);
    expect(() => readEnv({ DIAD_ORT_THREADS: '0' })).toThrow(/DIAD_ORT_THREADS=0/);
  });
  it('resolves relative model paths against modelsDir when one is set', () => {
    const saved = env.modelsDir;
    try {
      env.modelsDir = null;
      expect(modelPath('a/b.onnx')).toBe('a/b.onnx');
      env.modelsDir = '/models';
      expect(modelPath('a/b.onnx')).toBe('/models/a/b.onnx');
      expect(modelPath('/abs/c.onnx')).toBe('/abs/c.onnx');
    } finally {
      env.modelsDir = saved;
    }
  });
});
