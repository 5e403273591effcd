import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync, copyFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { readSafetensors } from '../src/safetensors.js';
import { int32, mask, tensor } from '../src/tensor.js';
import { createOrtSession, describeOrt, fromOrt, resolveOrtProviders, toOrt } from '../src/ort/index.js';
import { env, readEnv } from '../src/env.js';
import { ONNX_FIXTURE_DIR } from '../src/testing.js';

const ONNX_DIR = ONNX_FIXTURE_DIR;
const MODEL = join(ONNX_DIR, 'resnet18_trunk.onnx');
const HAVE_MODEL = existsSync(MODEL);
if (!HAVE_MODEL) console.warn(`[ort.test] ${MODEL} not found: the session tests are skipped`);

afterEach(() => {
  env.ortProviders = ['cpu'];
});

describe('toOrt / fromOrt', () => {
  it('round-trips float32 NCHW, int32 and uint8 masks', () => {
    const f = tensor(Float32Array.from([1, 2, 3, 4, 5, 6]), [1, 2, 3, 1], 'NCHW');
    const o = toOrt(f);
    expect(o.type).toBe('float32');
    expect(o.dims).toEqual([1, 2, 3, 1]);
    const back = fromOrt(o);
    expect(back).toEqual(f);
    expect(back.data).not.toBe(f.data);
    const i = int32(Int32Array.from([7, -8]), [2]);
    expect(fromOrt(toOrt(i))).toEqual(i);
    const m = mask(Uint8Array.from([0, 1, 1, 0]), [1, 1, 2, 2]);
    expect(fromOrt(toOrt(m))).toEqual(m);
  });

  it('permutes NHWC host tensors to NCHW for ONNX', () => {
    // NHWC [1, 1, 2, 3]: pixel 0 = (1,2,3), pixel 1 = (4,5,6) -> NCHW channel planes (1,4), (2,5), (3,6).
    const o = toOrt(tensor(Float32Array.from([1, 2, 3, 4, 5, 6]), [1, 1, 2, 3], 'NHWC'));
    expect(o.dims).toEqual([1, 3, 1, 2]);
    expect(Array.from(o.data as Float32Array)).toEqual([1, 4, 2, 5, 3, 6]);
  });

  it('converts int64 and bool, and names the tensor for unsupported types', () => {
    expect(fromOrt(new ort.Tensor('int64', BigInt64Array.from([3n, -4n]), [2])).data).toEqual(Int32Array.from([3, -4]));
    expect(() => fromOrt(new ort.Tensor('int64', BigInt64Array.from([2n ** 40n]), [1]), 'ids')).toThrow('fromOrt: ids[0] = 1099511627776 does not fit int32');
    expect(fromOrt(new ort.Tensor('bool', Uint8Array.from([1, 0]), [2])).data).toEqual(Uint8Array.from([1, 0]));
    expect(() => fromOrt(new ort.Tensor('float64', Float64Array.from([1]), [1]), 'x')).toThrow(/x has element type float64/);
  });
});

describe('createOrtSession', () => {
  it.skipIf(!HAVE_MODEL)('opens the ResNet-18 trunk fixture and runs the probe input to the right output shapes', async () => {
    const io = await readSafetensors(join(ONNX_DIR, 'resnet18_trunk_io.safetensors'));
    const s = await createOrtSession(MODEL, { threads: 2 });
    expect(s.providers).toEqual(['cpu']);
    const input = io.float32('input');
    const out = await s.run({ [s.inputNames[0]]: { ...input, layout: 'NCHW' } });
    const expected = io.names().filter((n) => n.startsWith('output.'));
    expect(
      Object.keys(out)
        .map((k) => `output.${k}`)
        .sort(),
    ).toEqual(expected.sort());
    for (const name of expected) {
      const got = out[name.slice('output.'.length)];
      expect(got.shape).toEqual(io.entry(name).shape);
      expect(got.layout).toBe('NCHW');
      expect(Number.isFinite(got.data[0])).toBe(true);
    }
    await expect(s.run({ wrong: input })).rejects.toThrow(
      `${MODEL}: inputs do not match the graph (missing: [input], unexpected: [wrong]; the graph takes [input])`,
    );
    await s.release();
  });

  it.skipIf(!HAVE_MODEL)('names a missing or corrupt model file', async () => {
    await expect(createOrtSession('/nonexistent/model.onnx')).rejects.toThrow('ONNX model /nonexistent/model.onnx does not exist');
    const dir = mkdtempSync(join(tmpdir(), 'diad-ort-'));
    const bad = join(dir, 'truncated.onnx');
    writeFileSync(bad, readFileSync(MODEL).subarray(0, 1000));
    await expect(createOrtSession(bad)).rejects.toThrow(`${bad} is not a valid ONNX model`);
    const ok = join(dir, 'copy.onnx');
    copyFileSync(MODEL, ok);
    await expect(createOrtSession(ok)).resolves.toBeDefined();
  });

  it.skipIf(!HAVE_MODEL)('takes providers from env.ortProviders (DIAD_ORT_PROVIDERS), falling back along the list', async () => {
    env.ortProviders = readEnv({ DIAD_ORT_PROVIDERS: 'cuda, CPU' }).ortProviders;
    expect(env.ortProviders).toEqual(['cuda', 'cpu']);
    expect(resolveOrtProviders()).toEqual(['cuda', 'cpu']);
    expect(resolveOrtProviders(['CPU'])).toEqual(['cpu']);
    const s = await createOrtSession(MODEL);
    const cuda = describeOrt().providers.find((p) => p.name === 'cuda');
    expect(cuda).toBeDefined();
    if (s.providers[0] === 'cpu') {
      // No CUDA libraries here: the failure is reported, cpu runs.
      expect(s.providers).toEqual(['cpu']);
      expect(s.skipped[0].provider).toBe('cuda');
      expect(s.skipped[0].reason).toMatch(/Cuda|CUDA|shared librar/);
    } else {
      expect(s.providers).toEqual(['cuda', 'cpu']);
    }
    await s.release();
  });

  it('refuses unknown providers', () => {
    env.ortProviders = ['cpu', 'tpu'];
    expect(() => resolveOrtProviders()).toThrow(
      /env\.ortProviders \(DIAD_ORT_PROVIDERS\): unknown execution provider\(s\) \[tpu\]; onnxruntime-node 1\.30\.0 knows cpu, /,
    );
  });
});
