import { describe, it, expect, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng, SafetensorsFile, encodeSafetensors, readSafetensors, tensor, sizeOf, type ParamSpec } from '../src/index.js';
import { ParamStore } from '../src/tfjs/index.js';
import { REFERENCE_DIR } from '../src/testing.js';

const SPECS: ParamSpec[] = [
  { name: 'enc.conv.weight', shape: [16, 8, 3, 3], init: 'kaiming' },
  { name: 'enc.conv.bias', shape: [16], init: 'bias', fanIn: 72 },
  { name: 'enc.norm.weight', shape: [16], init: 'ones' },
  { name: 'enc.norm.bias', shape: [16], init: 'zeros' },
  { name: 'dec.lin.weight', shape: [32, 64], init: 'kaiming' },
  { name: 'dec.lin.bias', shape: [32], init: 'bias', fanIn: 64 },
  { name: 'dec.emb', shape: [4, 500], init: 'normal', std: 0.02 },
  { name: 'dec.zero_conv.weight', shape: [8, 8, 1, 1], init: 'zeros' },
];

const fixtureDir = REFERENCE_DIR;
const aeFixture = join(fixtureDir, 'autoencoder_kl.safetensors');

const bytesEqual = (a: Float32Array, b: Float32Array): boolean => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));

for (const backend of ['cpu', 'wasm']) {
  describe(`ParamStore on ${backend}`, () => {
    beforeAll(async () => {
      await tf.setBackend(backend);
      await tf.ready();
    });

    it('initialises like PyTorch, reproducibly from the seed', async () => {
      const store = ParamStore.create(SPECS, 42);
      const h = await store.toHost();
      expect(Object.keys(h)).toEqual(SPECS.map((s) => s.name));
      const w = h['enc.conv.weight'].data;
      const bound = 1 / Math.sqrt(72);
      expect(Math.max(...w.map(Math.abs))).toBeLessThanOrEqual(bound);
      expect(Math.max(...w.map(Math.abs))).toBeGreaterThan(0.95 * bound);
      expect(Math.abs(w.reduce((a, v) => a + v, 0) / w.length)).toBeLessThan(0.01);
      // Uniform(-b, b) has variance b^2 / 3.
      expect(w.reduce((a, v) => a + v * v, 0) / w.length).toBeCloseTo(bound ** 2 / 3, 3);
      expect(Math.max(...h['dec.lin.weight'].data.map(Math.abs))).toBeLessThanOrEqual(1 / 8);
      expect(Math.max(...h['dec.lin.bias'].data.map(Math.abs))).toBeLessThanOrEqual(1 / 8);
      expect(h['enc.norm.weight'].data.every((v) => v === 1)).toBe(true);
      expect(h['enc.norm.bias'].data.every((v) => v === 0)).toBe(true);
      expect(h['dec.zero_conv.weight'].data.every((v) => v === 0)).toBe(true);
      const e = h['dec.emb'].data;
      const std = Math.sqrt(e.reduce((a, v) => a + v * v, 0) / e.length);
      expect(std).toBeGreaterThan(0.019);
      expect(std).toBeLessThan(0.021);

      const again = ParamStore.create(SPECS, new Rng(42));
      const other = ParamStore.create(SPECS, 43);
      expect(bytesEqual((await again.toHost('enc.conv.weight'))['enc.conv.weight'].data, w)).toBe(true);
      expect(bytesEqual((await other.toHost('enc.conv.weight'))['enc.conv.weight'].data, w)).toBe(false);
      for (const s of [store, again, other]) s.dispose();
    });

    it('rejects bad specs', () => {
      expect(() => ParamStore.create([{ name: 'b', shape: [4], init: 'bias' }], 0)).toThrow(/"b".*needs a positive fanIn/);
      const dup: ParamSpec = { name: 'x', shape: [2], init: 'zeros' };
      expect(() => ParamStore.create([dup, dup], 0)).toThrow(/"x" declared twice/);
    });

    it('holds conv weights as [kh, kw, in, out] and linear weights as [in, out]', async () => {
      const convW = tensor(
        Float32Array.from({ length: 16 * 8 * 9 }, (_, i) => i),
        [16, 8, 3, 3],
      );
      const linW = tensor(
        Float32Array.from({ length: 32 * 64 }, (_, i) => -i),
        [32, 64],
      );
      const store = ParamStore.fromSafetensors(new SafetensorsFile(encodeSafetensors({ 'c.weight': convW, 'l.weight': linW })));
      const c = store.get('c.weight');
      expect(c.shape).toEqual([3, 3, 8, 16]);
      expect(store.officialShape('c.weight')).toEqual([16, 8, 3, 3]);
      const cd = await c.data();
      for (const [o, i, a, b] of [
        [0, 0, 0, 0],
        [15, 7, 2, 2],
        [3, 5, 1, 0],
        [9, 2, 0, 2],
      ]) {
        expect(cd[((a * 3 + b) * 8 + i) * 16 + o]).toBe(convW.data[((o * 8 + i) * 3 + a) * 3 + b]);
      }
      const l = store.get('l.weight');
      expect(l.shape).toEqual([64, 32]);
      const ld = await l.data();
      expect(ld[5 * 32 + 7]).toBe(linW.data[7 * 64 + 5]);
      store.dispose();
    });

    it('round-trips init -> save -> load bit for bit in the official layout', async () => {
      const store = ParamStore.create(SPECS, 1);
      const path = join(mkdtempSync(join(tmpdir(), 'diad-params-')), 'p.safetensors');
      await store.save(path, { step: '3' });
      const file = await readSafetensors(path);
      expect(file.metadata).toEqual({ step: '3' });
      const original = await store.toHost();
      for (const s of SPECS) {
        expect(file.entry(s.name).shape).toEqual([...s.shape]);
        expect(bytesEqual(file.float32(s.name).data, original[s.name].data), s.name).toBe(true);
      }
      const fresh = ParamStore.create(SPECS, 2);
      const report = fresh.load(file);
      expect(report).toEqual({ loaded: SPECS.map((s) => s.name).sort(), missing: [], unexpected: [] });
      const reloaded = await fresh.toHost();
      for (const s of SPECS) expect(bytesEqual(reloaded[s.name].data, original[s.name].data), s.name).toBe(true);
      store.dispose();
      fresh.dispose();
    });

    it('strict load lists missing, unexpected and mis-shaped keys with the file name, and assigns nothing', async () => {
      const store = ParamStore.create(SPECS, 1);
      const before = await store.toHost();
      const h = { ...before };
      delete h['enc.norm.bias'];
      delete h['dec.lin.bias'];
      h['dec.extra.weight'] = tensor(new Float32Array(4), [2, 2]);
      h['enc.conv.weight'] = tensor(new Float32Array(16 * 8 * 9), [16, 8, 9, 1]);
      const file = new SafetensorsFile(encodeSafetensors(h), 'bad.safetensors');
      let msg = '';
      try {
        store.load(file);
      } catch (e) {
        msg = (e as Error).message;
      }
      expect(msg).toMatch(/^bad\.safetensors: cannot load parameters/);
      expect(msg).toContain('missing 2: enc.norm.bias, dec.lin.bias');
      expect(msg).toContain('unexpected 1: dec.extra.weight');
      expect(msg).toContain('mis-shaped 1: enc.conv.weight (file [16, 8, 9, 1], model [16, 8, 3, 3])');
      const after = await store.toHost();
      for (const s of SPECS) expect(bytesEqual(after[s.name].data, before[s.name].data)).toBe(true);

      // Non-strict: missing and unexpected are reported, shape mismatches still fail.
      expect(() => store.load(file, { strict: false })).toThrow(/mis-shaped 1: enc\.conv\.weight/);
      h['enc.conv.weight'] = before['enc.conv.weight'];
      h['dec.emb'] = tensor(new Float32Array(2000).fill(0.5), [4, 500]);
      const report = store.load(new SafetensorsFile(encodeSafetensors(h)), { strict: false });
      expect(report.missing).toEqual(['enc.norm.bias', 'dec.lin.bias']);
      expect(report.unexpected).toEqual(['dec.extra.weight']);
      expect((await store.toHost('dec.emb'))['dec.emb'].data.every((v) => v === 0.5)).toBe(true);
      store.dispose();
    });

    it('loads with a prefix filter, ignoring other tensors of the file', async () => {
      const store = ParamStore.create(SPECS.slice(0, 2), 1);
      const h = await store.toHost();
      const file = new SafetensorsFile(encodeSafetensors({ ...h, 'input.image': tensor(new Float32Array(3), [3]) }), 'mixed.safetensors');
      expect(() => store.load(file)).toThrow(/unexpected 1: input\.image/);
      expect(store.load(file, { prefix: 'enc.' }).loaded).toEqual(['enc.conv.bias', 'enc.conv.weight']);
      const sub = ParamStore.fromSafetensors(file, 'enc.conv.');
      expect(sub.names()).toEqual(['enc.conv.bias', 'enc.conv.weight']);
      expect(() => ParamStore.fromSafetensors(file, 'nothing.')).toThrow(/mixed\.safetensors: no tensors with prefix "nothing\."/);
      store.dispose();
      sub.dispose();
    });

    it('groups parameters: names, variables, trainable flags, counts; dispose frees them', () => {
      const before = tf.memory().numTensors;
      const store = ParamStore.create(SPECS, 1);
      expect(store.size).toBe(SPECS.length);
      expect(store.count()).toBe(SPECS.reduce((a, s) => a + sizeOf(s.shape), 0));
      expect(store.count('enc.')).toBe(16 * 72 + 48);
      expect(store.names(/bias$/)).toEqual(['enc.conv.bias', 'enc.norm.bias', 'dec.lin.bias']);
      expect(store.variables('dec.lin.')).toEqual([store.get('dec.lin.weight'), store.get('dec.lin.bias')]);
      expect(store.setTrainable('enc.', false)).toBe(4);
      expect(store.trainableNames()).toEqual(['dec.lin.weight', 'dec.lin.bias', 'dec.emb', 'dec.zero_conv.weight']);
      expect(store.get('enc.conv.weight').trainable).toBe(false);
      store.setTrainable((n) => n === 'enc.conv.bias', true);
      expect(store.get('enc.conv.bias').trainable).toBe(true);
      expect(() => store.get('enc.missing')).toThrow(/"enc\.missing" is not in the store \(8 parameters\)/);
      expect(tf.memory().numTensors - before).toBe(SPECS.length);
      store.dispose();
      expect(tf.memory().numTensors).toBe(before);
      expect(store.size).toBe(0);
    });

    it.skipIf(!existsSync(aeFixture))('loads the official AutoencoderKL fixture weights and exports them unchanged', async () => {
      const file = await readSafetensors(aeFixture);
      const names = file.names().filter((n) => n.startsWith('first_stage_model.'));
      const store = ParamStore.fromSafetensors(file, 'first_stage_model.');
      expect(store.names()).toEqual(names);
      expect(store.count()).toBe(names.reduce((a, n) => a + sizeOf(file.entry(n).shape), 0));
      const back = await store.toHost();
      for (const n of names) expect(bytesEqual(back[n].data, file.float32(n).data), n).toBe(true);
      // A store built from the same names loads the file strictly under the prefix.
      const specs: ParamSpec[] = names.map((n) => ({ name: n, shape: file.entry(n).shape, init: 'zeros' }));
      const fresh = ParamStore.create(specs, 0);
      expect(fresh.load(file, { prefix: 'first_stage_model.' }).loaded.length).toBe(names.length);
      store.dispose();
      fresh.dispose();
    });
  });
}
