import { describe, expect, it } from 'vitest';
import { preset, sgnConfigOf } from '../src/config.js';
import { parameterCount, sgnParamSpec, unetParamSpec } from '../src/spec.js';

describe('parameter specs', () => {
  it('sd15 counts: 859.52 M UNet, 471.87 M SG network with SFF', () => {
    const c = preset('sd15');
    expect((parameterCount(unetParamSpec(c.unet)) / 1e6).toFixed(2)).toBe('859.52');
    expect((parameterCount(sgnParamSpec(sgnConfigOf(c))) / 1e6).toFixed(2)).toBe('471.87');
  });

  it('sd15 without SFF is the plain SD-1.5 ControlNet (361.28 M)', () => {
    const c = preset('sd15');
    expect((parameterCount(sgnParamSpec({ ...sgnConfigOf(c), sff: false })) / 1e6).toFixed(2)).toBe('361.28');
  });

  it('zero-initialises the zero convs, hint output conv, SFF convs and proj_out', () => {
    const specs = sgnParamSpec(sgnConfigOf(preset('tiny')));
    const zeros = new Set(specs.filter((s) => s.init === 'zeros').map((s) => s.name));
    expect(zeros.has('control_model.zero_convs.0.0.weight')).toBe(true);
    expect(zeros.has('control_model.input_hint_block.14.weight')).toBe(true);
    expect(zeros.has('control_model.input_hint_block.12.weight')).toBe(false);
    expect(zeros.has('control_model.down23.0.weight')).toBe(true);
    expect(zeros.has('control_model.middle_block_out.0.bias')).toBe(true);
    expect(zeros.has('control_model.input_blocks.4.1.proj_out.weight')).toBe(true);
  });
});
