import { describe, expect, it } from 'vitest';
import { parseEngine } from '@diad/pipeline';
import { configFromFlags } from '../src/commands/fit.js';

describe('diad fit integer flags', () => {
  it('are refused naming the flag and the bound', () => {
    expect(() => configFromFlags({ data: ['/d'], preset: 'tiny', checkpointEvery: '0' })).toThrow(
      '--checkpoint-every must be an integer of at least 1, got "0"',
    );
    expect(() => configFromFlags({ data: ['/d'], preset: 'tiny', batchSize: '2.5' })).toThrow('--batch-size must be an integer of at least 1, got "2.5"');
    expect(() => configFromFlags({ data: ['/d'], preset: 'tiny', aeSteps: '-1' })).toThrow('--ae-steps must be an integer of at least 0');
    expect(() => configFromFlags({ data: ['/d'], preset: 'tiny', sgSteps: '' })).toThrow('--sg-steps must be an integer');
  });

  it('reach the stages', () => {
    const cfg = configFromFlags({ data: ['/d'], preset: 'tiny', aeSteps: '0', checkpointEvery: '7', batchSize: '2' });
    expect(cfg.stages.autoencoder.steps).toBe(0);
    expect(cfg.stages.sg.checkpointEvery).toBe(7);
    expect(cfg.stages.diffusion.batchSize).toBe(2);
  });
});

describe('--engine with --onnx-dir (test, predict)', () => {
  it('needs the ort engine, which reads export folders', () => {
    expect(parseEngine('ort', 'runs/a/onnx')).toBe('ort');
    expect(parseEngine(undefined)).toBe('tfjs');
    expect(() => parseEngine(undefined, '/nonexistent')).toThrow('--onnx-dir /nonexistent: an export folder is read by the ort engine only; add --engine ort');
    expect(() => parseEngine('cuda')).toThrow('--engine cuda: unknown engine');
  });
});
