import { describe, expect, it } from 'vitest';
import { autoencoders, configuredAutoencoder, KL_AUTOENCODER } from '../src/registry.js';
import { PRESETS } from '../src/config.js';
import { countParams, paramSpec } from '../src/params.js';

describe('autoencoder registry', () => {
  it('a config without kind is the AutoencoderKL; its entry gives the sizes of the official model', () => {
    const { kind, config } = configuredAutoencoder({ ...PRESETS['kl-f8'] }, 'models.autoencoder');
    expect(kind).toBe(KL_AUTOENCODER);
    expect(kind.downsampleFactor(config)).toBe(8);
    expect(kind.latentChannels(config)).toBe(4);
    expect(kind.scaleFactor).toBe(0.18215);
    expect(countParams(kind.paramSpec(config, 'first_stage_model.'))).toBe(countParams(paramSpec(PRESETS['kl-f8'])));
    expect(configuredAutoencoder({ kind: 'kl', ...PRESETS.tiny }, 'x').config).toEqual(PRESETS.tiny);
  });
  it('an unknown kind lists the registered ones; an invalid config names the field', () => {
    expect(() => configuredAutoencoder({ kind: 'vq', ...PRESETS.tiny }, 'models.autoencoder')).toThrow(
      /models\.autoencoder\.kind: unknown autoencoder "vq"; registered: kl/,
    );
    expect(() => configuredAutoencoder({ embed_dim: 4 }, 'cfg.json models.autoencoder')).toThrow(/cfg\.json models\.autoencoder.*ddconfig/);
    expect(() => autoencoders.register('kl', KL_AUTOENCODER)).toThrow(/autoencoder "kl" is already registered/);
  });
});
