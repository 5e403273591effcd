import { describe, expect, it } from 'vitest';
import { diadParamSpec, parameterCount, parseDiadConfig, trainableFilter } from '@diad/sg-diffusion';
import { checkTrainingMemory, estimateTrainingMemory, resolveConfig } from '../src/index.js';

const cfg = resolveConfig('ci', { roots: ['/nowhere'] });

describe('training-memory estimate', () => {
  it('counts weights twice, one gradient and two AdamW slots per trainable parameter (float32)', async () => {
    const specs = diadParamSpec(parseDiadConfig(cfg.models.diad, 'ci'));
    const trainable = parameterCount(specs.filter((s) => trainableFilter('official')(s.name)));
    const m = await estimateTrainingMemory(cfg, 1);
    expect(m.weights).toBe(2 * 4 * parameterCount(specs));
    expect(m.gradients).toBe(4 * trainable);
    expect(m.optimizer).toBe(8 * trainable);
    expect(m.total).toBe(m.weights + m.gradients + m.optimizer + m.activations);
  });

  it('reads activations from the training graph: affine in the batch, growing with it', async () => {
    const [a1, a2, a3] = await Promise.all([1, 2, 3].map(async (b) => (await estimateTrainingMemory(cfg, b)).activations));
    expect(a2 - a1).toBeGreaterThan(0);
    expect(a3 - a2).toBe(a2 - a1);
  });

  it('refuses a batch that does not fit, with the estimate and the batch-1 fix', async () => {
    const atBatch = await estimateTrainingMemory(cfg);
    const one = await estimateTrainingMemory(cfg, 1);
    const between = { bytes: (atBatch.total + one.total) / 2, source: 'test limit' };
    await expect(checkTrainingMemory(cfg, between)).rejects.toThrow(
      new RegExp(
        `preset ci: the SG stage needs about \\d+ MiB at batch ${cfg.stages.sg.batchSize} .*offers \\d+ MiB \\(test limit\\); lower --batch-size \\(batch 1 needs \\d+ MiB at batch 1`,
      ),
    );
    await expect(checkTrainingMemory(cfg, { bytes: one.total - 1, source: 'tiny' })).rejects.toThrow(/even batch 1 needs .*more memory/);
    expect((await checkTrainingMemory(cfg, { bytes: atBatch.total, source: 'exact' })).total).toBe(atBatch.total);
  });
});
