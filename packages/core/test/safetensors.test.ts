import { describe, it, expect } from 'vitest';
import { readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensors, readSafetensorsIndex, encodeSafetensors, SafetensorsFile, tensor, int32, writeSafetensors } from '../src/index.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { SHARED_DIR } from '../src/testing.js';

const shared = join(SHARED_DIR, 'fixtures');

describe('safetensors', () => {
  it('round-trips float32 and int32 tensors with metadata', async () => {
    const a = tensor(Float32Array.from([1.5, -2, 3.25, 0]), [2, 2]);
    const b = int32(Int32Array.from([7, -9, 2147483647]), [3]);
    const f = new SafetensorsFile(encodeSafetensors({ 'w.b': a, 'w.a': b }, { step: '12' }));
    expect(f.names()).toEqual(['w.a', 'w.b']);
    expect(f.metadata).toEqual({ step: '12' });
    expect([...f.float32('w.b').data]).toEqual([1.5, -2, 3.25, 0]);
    expect(f.float32('w.b').shape).toEqual([2, 2]);
    expect([...f.int32('w.a').data]).toEqual([7, -9, 2147483647]);
    const dir = mkdtempSync(join(tmpdir(), 'diad-st-'));
    await writeSafetensors(join(dir, 'x.safetensors'), { a });
    expect([...(await readSafetensors(join(dir, 'x.safetensors'))).float32('a').data]).toEqual([1.5, -2, 3.25, 0]);
  });

  it('reads the index (names, shapes, metadata) of a file without its data; refuses a truncated one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'diad-st-'));
    const bytes = encodeSafetensors({ 'm.w': tensor(new Float32Array(6), [2, 3]), 'm.b': int32(new Int32Array(2), [2]) }, { kind: 'x' });
    writeFileSync(join(dir, 'ok.safetensors'), bytes);
    const index = await readSafetensorsIndex(join(dir, 'ok.safetensors'));
    expect(index.names()).toEqual(new SafetensorsFile(bytes).names());
    expect(index.entry('m.w')).toEqual({ dtype: 'F32', shape: [2, 3], data_offsets: new SafetensorsFile(bytes).entry('m.w').data_offsets });
    expect(index.metadata).toEqual({ kind: 'x' });
    expect(index.has('m.x')).toBe(false);
    writeFileSync(join(dir, 'cut.safetensors'), bytes.subarray(0, bytes.length - 4));
    await expect(readSafetensorsIndex(join(dir, 'cut.safetensors'))).rejects.toThrow(/cut\.safetensors.*truncated/);
    rmSync(dir, { recursive: true });
  });

  it('rejects truncated files and names the source', () => {
    const bytes = encodeSafetensors({ a: tensor(new Float32Array(16), [16]) });
    expect(() => new SafetensorsFile(bytes.subarray(0, bytes.length - 4), 'cut.safetensors')).toThrow(/cut\.safetensors.*truncated/);
    expect(() => new SafetensorsFile(new Uint8Array(3), 'tiny')).toThrow(/tiny: not a safetensors/);
  });

  it('reports a missing file by path', async () => {
    await expect(readSafetensors('/nonexistent/x.safetensors')).rejects.toThrow(/\/nonexistent\/x\.safetensors/);
  });

  const dirs = ['reference', 'onnx'].map((d) => join(shared, d)).filter(existsSync);
  it.skipIf(dirs.length === 0)('loads every fixture file in ../shared/fixtures', async () => {
    let files = 0;
    for (const dir of dirs) {
      for (const f of readdirSync(dir).filter((n) => n.endsWith('.safetensors'))) {
        const st = await readSafetensors(join(dir, f));
        expect(st.names().length).toBeGreaterThan(0);
        for (const name of st.names()) {
          const e = st.entry(name);
          const t = e.dtype === 'I64' ? st.int32(name) : st.float32(name);
          expect(t.data.length).toBe(e.shape.reduce((x, y) => x * y, 1));
          if (t.dtype === 'float32') expect(t.data.every(Number.isFinite)).toBe(true);
        }
        files++;
      }
    }
    expect(files).toBeGreaterThanOrEqual(6);
  });
});
