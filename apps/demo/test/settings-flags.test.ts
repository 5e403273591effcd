import { describe, expect, it } from 'vitest';
import { applyInferenceSets, resolveConfig } from '@diad/pipeline';
import { settingsFromFlags } from '../src/commands/settings-flags.js';

describe('inference shortcut flags', () => {
  it('become key=value settings that the inference schema accepts', () => {
    const sets = settingsFromFlags({ tStart: '400', sigma: '2', levels: '0, 2', reference: 'autoencoded', schedule: 'official' });
    expect(sets).toEqual([
      'reconstructor.tStart=400',
      'reconstructor.schedule="official"',
      'anomalyMap.sigma=2',
      'anomalyMap.levels=[0,2]',
      'anomalyMap.reference="autoencoded"',
    ]);
    const cpu = resolveConfig('cpu', { roots: ['/d'] }).inference;
    const s = applyInferenceSets(cpu, sets);
    expect(s.anomalyMap).toEqual({ sigma: 2, combine: 'add', levels: [0, 2], reference: 'autoencoded' });
    // `all` removes the cpu preset's layer2-3 choice: every level, as the paper.
    expect(cpu.anomalyMap.levels).toEqual([1, 2]);
    expect(applyInferenceSets(cpu, settingsFromFlags({ levels: 'all' })).anomalyMap).toEqual({ sigma: 4, combine: 'add' });
  });

  it('refuses values outside their choices before any work, naming the flag', () => {
    expect(() => settingsFromFlags({ reference: 'foo' })).toThrow('--reference foo: use one of input, autoencoded');
    expect(() => settingsFromFlags({ schedule: 'linear' })).toThrow('--schedule linear: use one of official, partial');
    expect(() => settingsFromFlags({ levels: '1;2' })).toThrow(/--levels 1;2: expected comma-separated indices/);
    expect(() => settingsFromFlags({ levels: '-1' })).toThrow(/--levels -1/);
    expect(() => settingsFromFlags({ levels: '2,1' })).toThrow('--levels 2,1: give distinct indices in ascending order, e.g. 1,2');
    expect(() => settingsFromFlags({ backbone: 'resnet50', onnx: 'a.onnx' })).toThrow(/exclude each other/);
    expect(() => settingsFromFlags({ sigma: '-1' })).toThrow(
      /^--sigma anomalyMap\.sigma=-1: invalid inference settings: anomalyMap\.sigma: Number must be greater than or equal to 0/,
    );
    expect(() => settingsFromFlags({ targetFpr: 'lots' })).toThrow(
      /^--target-fpr threshold\.targetFpr=lots: invalid inference settings: threshold\.targetFpr: Expected number/,
    );
    expect(settingsFromFlags({ sigma: '0', targetFpr: '0.01' })).toEqual(['anomalyMap.sigma=0', 'threshold.targetFpr=0.01']);
    expect(() => settingsFromFlags({ tStart: '0' })).toThrow('--t-start 0: Number must be greater than or equal to 1; give an integer timestep from 1 to 999');
    expect(() => settingsFromFlags({ tStart: '1000' })).toThrow(/^--t-start 1000: Number must be less than or equal to 999/);
    expect(() => settingsFromFlags({ tStart: 'late' })).toThrow(/^--t-start late: Expected number, received nan/);
    expect(() => settingsFromFlags({ ddimSteps: '2.5' })).toThrow('--ddim-steps 2.5: Expected integer, received float; give an integer from 1 to 1000');
    expect(settingsFromFlags({ tStart: '999', ddimSteps: '1' })).toEqual(['reconstructor.tStart=999', 'reconstructor.steps=1']);
  });
});
