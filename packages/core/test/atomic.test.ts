import { describe, it, expect } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { writeFileAtomic } from '../src/index.js';

describe('writeFileAtomic', () => {
  it('replaces the file and leaves no temp file behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'diad-atomic-'));
    const p = join(dir, 'a.json');
    await writeFileAtomic(p, 'one');
    await writeFileAtomic(p, 'two');
    expect(readFileSync(p, 'utf8')).toBe('two');
    expect(readdirSync(dir)).toEqual(['a.json']);
  });

  it('keeps the previous file when the write fails, and names the path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'diad-atomic-'));
    const p = join(dir, 'ckpt.safetensors');
    writeFileSync(p, 'previous');
    // A data source that throws part-way through the write stands in for a full disk.
    function* failing(): Generator<Uint8Array> {
      yield new TextEncoder().encode('partial');
      throw new Error('ENOSPC: no space left on device');
    }
    await expect(writeFileAtomic(p, failing())).rejects.toThrow(/ckpt\.safetensors.*previous version kept.*ENOSPC/);
    expect(readFileSync(p, 'utf8')).toBe('previous');
    expect(readdirSync(dir)).toEqual(['ckpt.safetensors']);
  });
});
