import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '@diad/core';
import { PRESETS, parseAutoencoderConfig } from '../src/config.js';
import { countParams, paramSpec } from '../src/params.js';
import { HAS_REFERENCE, REFERENCE_DIR } from './fixture.js';

describe('paramSpec', () => {
  it.skipIf(!HAS_REFERENCE)('matches the official first_stage_model.* names and shapes of the fixture', async () => {
    const json = JSON.parse(await readFile(join(REFERENCE_DIR, 'autoencoder_kl.json'), 'utf8'));
    const cfg = parseAutoencoderConfig(json, 'autoencoder_kl.json');
    const st = await readSafetensors(join(REFERENCE_DIR, 'autoencoder_kl.safetensors'));
    const official = new Map(
      st
        .names()
        .filter((n) => n.startsWith('first_stage_model.'))
        .map((n) => [n, st.entry(n).shape]),
    );
    const specs = paramSpec(cfg);
    expect(specs.map((s) => s.name).sort()).toEqual([...official.keys()].sort());
    for (const s of specs) expect([s.name, ...s.shape]).toEqual([s.name, ...official.get(s.name)!]);
  });

  it('counts 83,653,863 parameters for the SD kl-f8 autoencoder DiAD uses', () => {
    expect(countParams(paramSpec(PRESETS['kl-f8']))).toBe(83_653_863);
  });

  it('places AttnBlocks at attn_resolutions, honours the prefix and PyTorch default inits', () => {
    const cfg = parseAutoencoderConfig({
      ddconfig: {
        double_z: true,
        z_channels: 4,
        resolution: 64,
        in_channels: 3,
        out_ch: 3,
        ch: 32,
        ch_mult: [1, 2],
        num_res_blocks: 2,
        attn_resolutions: [32],
        dropout: 0,
      },
      embed_dim: 3,
    });
    const specs = paramSpec(cfg, '');
    const byName = new Map(specs.map((s) => [s.name, s]));
    // encoder level 1 runs at 32 px: attn after each of its 2 blocks; decoder level 1 (first run, 32 px): 3 blocks.
    const attn = specs.filter((s) => s.name.endsWith('.q.weight')).map((s) => s.name);
    expect(attn).toEqual([
      'encoder.down.1.attn.0.q.weight',
      'encoder.down.1.attn.1.q.weight',
      'encoder.mid.attn_1.q.weight',
      'decoder.mid.attn_1.q.weight',
      'decoder.up.1.attn.0.q.weight',
      'decoder.up.1.attn.1.q.weight',
      'decoder.up.1.attn.2.q.weight',
    ]);
    expect(byName.get('encoder.down.1.attn.0.q.weight')!.shape).toEqual([64, 64, 1, 1]);
    expect(byName.get('quant_conv.weight')!.shape).toEqual([6, 8, 1, 1]);
    expect(byName.get('post_quant_conv.weight')!.shape).toEqual([4, 3, 1, 1]);
    expect(byName.get('decoder.up.0.block.0.nin_shortcut.weight')!.shape).toEqual([32, 64, 1, 1]);
    expect(byName.has('decoder.up.0.upsample.conv.weight')).toBe(false);
    expect(byName.get('encoder.down.0.downsample.conv.weight')!.shape).toEqual([32, 32, 3, 3]);
    const c1 = byName.get('encoder.down.1.block.0.conv1.weight')!;
    expect([c1.init, c1.fanIn]).toEqual(['kaiming', 32 * 9]);
    expect(byName.get('encoder.down.1.block.0.conv1.bias')!.init).toBe('bias');
    expect(byName.get('decoder.norm_out.weight')!.init).toBe('ones');
    expect(byName.get('decoder.norm_out.bias')!.init).toBe('zeros');
    expect(new Set(specs.map((s) => s.name)).size).toBe(specs.length);
  });

  it('rejects configs the official code cannot build, naming the field', () => {
    const d = PRESETS.tiny.ddconfig;
    expect(() => parseAutoencoderConfig({ ddconfig: { ...d, ch: 16 }, embed_dim: 4 }, 'x.json')).toThrow(/x\.json.*multiple of 32/);
    expect(() => parseAutoencoderConfig({ ddconfig: { ...d, double_z: false }, embed_dim: 4 })).toThrow(/double_z/);
    expect(() => parseAutoencoderConfig({ ddconfig: { ...d, dropout: 0.1 }, embed_dim: 4 })).toThrow(/dropout/);
    expect(() => parseAutoencoderConfig({ ddconfig: d })).toThrow(/embed_dim/);
  });
});
