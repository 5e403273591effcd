import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors } from '@diad/core';
import { OFFICIAL_HINT_WIDTHS, parseUNetConfig, preset, sgnConfigOf } from '../src/config.js';
import { parameterCount, sgnParamSpec, unetParamSpec } from '../src/spec.js';

const dir = process.env.DIAD_REFERENCE_DIR ?? resolve(dirname(fileURLToPath(import.meta.url)), '../../../../shared/fixtures/reference');

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

  it('names and shapes equal the official state dict of the fixture', async () => {
    if (!existsSync(`${dir}/sgn_unet.json`)) return console.warn(`skipped: no fixtures at ${dir}`);
    const meta = JSON.parse(readFileSync(`${dir}/sgn_unet.json`, 'utf8'));
    const f = await readSafetensors(`${dir}/sgn_unet.safetensors`);
    const unet = parseUNetConfig(meta.unet_config);
    const specs = [...unetParamSpec(unet), ...sgnParamSpec({ unet, hint_channels: meta.hint_channels, hint_widths: [...OFFICIAL_HINT_WIDTHS], sff: true })];
    const ours = new Map(specs.map((s) => [s.name, s.shape.join(',')]));
    const theirs = new Map(f.names().filter((n) => !n.startsWith('input.') && !n.startsWith('output.')).map((n) => [n, f.entry(n).shape.join(',')]));
    expect([...ours.keys()].filter((k) => !theirs.has(k))).toEqual([]);
    expect([...theirs.keys()].filter((k) => !ours.has(k))).toEqual([]);
    for (const [k, s] of ours) expect(s, k).toBe(theirs.get(k));
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
