import { afterEach, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { describeEngines, formatEngineInfo, initTfjs } from '../src/tfjs/engine.js';
import { env } from '../src/env.js';

afterEach(() => {
  env.tfjsEngine = 'auto';
});

describe('initTfjs', () => {
  it('auto-selects wasm here, recording why the tfjs-node engines were skipped', async () => {
    const info = await initTfjs();
    expect(info.engine).toBe('wasm');
    expect(info.backend).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(info.requested).toEqual({ engine: 'auto', source: 'default' });
    expect(info.tried.map((t) => [t.engine, t.ok])).toEqual([
      ['tfjs-node-gpu', false],
      ['tfjs-node', false],
      ['wasm', true],
    ]);
    expect(info.tried[0].reason).toBe('@tensorflow/tfjs-node-gpu is not installed');
    expect(info.threads).toBe(1);
    expect(info.simd).toBe(true);
    expect(info.versions).toEqual({ 'tfjs-core': tf.version_core, 'tfjs-backend-wasm': '4.22.0' });
    expect(info.wasmPath).toMatch(/tfjs-backend-wasm[/\\]dist$/);
    expect(info.gradients).toBe('@tensorflow/tfjs-layers');
    expect(tf.getGradient(tf.Square)).toBeDefined();
    expect(info.conv2dGradOverride).toBe(true);
    expect(formatEngineInfo(info)).toMatch(/^tfjs engine wasm \(backend wasm, threads 1, simd true; .*skipped tfjs-node-gpu: /);
    // A conv actually runs on it.
    const y = tf.conv2d(tf.ones([1, 3, 3, 1]) as tf.Tensor4D, tf.ones([3, 3, 1, 1]) as tf.Tensor4D, 1, 'same');
    expect(Array.from(await y.data())).toEqual([4, 6, 4, 6, 9, 6, 4, 6, 4]);
  });

  it('is idempotent for the same request', async () => {
    const [a, b] = await Promise.all([initTfjs(), initTfjs()]);
    expect(a).toBe(b);
    expect(await initTfjs()).toBe(a);
  });

  it('follows DIAD_TFJS_ENGINE, and the option over the env var', async () => {
    env.tfjsEngine = 'cpu';
    const cpu = await initTfjs();
    expect(cpu.engine).toBe('cpu');
    expect(cpu.requested).toEqual({ engine: 'cpu', source: 'env' });
    expect(tf.getBackend()).toBe('cpu');
    expect(cpu.conv2dGradOverride).toBe(false);
    const wasm = await initTfjs({ engine: 'wasm' });
    expect(wasm.requested.source).toBe('option');
    expect(tf.getBackend()).toBe('wasm');
  });

  it('refuses an unknown engine name and a requested engine that is not installed', async () => {
    env.tfjsEngine = 'webgpu';
    await expect(initTfjs()).rejects.toThrow(
      'env.tfjsEngine (DIAD_TFJS_ENGINE): unknown tfjs engine "webgpu"; use one of auto, tfjs-node-gpu, tfjs-node, wasm, cpu',
    );
    await expect(initTfjs({ engine: 'tfjs-node' })).rejects.toThrow(
      /requested tfjs engine "tfjs-node" could not be initialised:\n {2}tfjs-node \(@tensorflow\/tfjs-node\): @tensorflow\/tfjs-node is not installed\nInstall @tensorflow\/tfjs-node/,
    );
  });
});

describe('describeEngines', () => {
  it('lists what is installed without loading it', () => {
    env.tfjsEngine = 'cpu';
    const d = describeEngines();
    expect(d.envOverride).toBe('cpu');
    expect(d.engines.map((e) => [e.engine, e.installed, e.version])).toEqual([
      ['tfjs-node-gpu', false, null],
      ['tfjs-node', false, null],
      ['wasm', true, '4.22.0'],
      ['cpu', true, '4.22.0'],
    ]);
    expect(d.gradientPackages[0]).toBe('@tensorflow/tfjs-layers@4.22.0');
  });
});
