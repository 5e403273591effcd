import { describe, expect, it } from 'vitest';
import { levelsFlag } from '../src/commands/baseline.js';
import { diad } from './run-cli.js';

describe('diad baseline --levels', () => {
  it('parses indices and all', () => {
    expect(levelsFlag('1, 2', 'resnet50', undefined)).toEqual([1, 2]);
    expect(levelsFlag('all', 'resnet50', undefined)).toBe('all');
    expect(levelsFlag(undefined, 'resnet50', undefined)).toBeUndefined();
  });

  it('refuses, naming the flag, repeated or descending indices and levels the backbone lacks, before any model loads', () => {
    expect(() => levelsFlag('0,0', 'resnet50', undefined)).toThrow('--levels 0,0: give distinct indices in ascending order');
    expect(() => levelsFlag('2,1', 'resnet50', undefined)).toThrow('--levels 2,1: give distinct indices');
    expect(() => levelsFlag('7', 'resnet50', undefined)).toThrow('--levels 7: resnet50 gives 3 feature levels here (indices 0..2)');
    expect(() => levelsFlag('x', 'resnet50', undefined)).toThrow('--levels x: expected comma-separated indices');
    // --taps sets the count; an ONNX file's is known only once loaded (the bank refuses then).
    expect(() => levelsFlag('2', 'resnet50', ['activation_9', 'activation_21'])).toThrow('gives 2 feature levels');
    expect(levelsFlag('5', 'model.onnx', undefined)).toEqual([5]);
  });

  it('refuses numbers out of range naming the flag, before loading the backbone', async () => {
    const base = ['baseline', '--data', '/nonexistent-root', '--classes', 'x'];
    for (const [flag, value, text] of [
      ['--bank-size', '0', '--bank-size must be an integer of at least 1, got "0"'],
      ['--dim', '0', '--dim must be an integer of at least 1'],
      ['--image-size', '7', '--image-size must be an integer of at least 32, got "7"'],
      ['--batch-size', '0', '--batch-size must be an integer of at least 1'],
      ['--sigma', '-1', '--sigma must be a number of at least 0, got "-1"'],
    ]) {
      const r = await diad([...base, flag, value]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toContain(text);
    }
  });
});
