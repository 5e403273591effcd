import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { DatasetError, loadRgb, loadSample, readMask, readRgb, rgbToTensor, tensorToRgb, type Sample } from '../src/index.js';
import { png, solid, squareMask, tempDir } from './helpers.js';

const tmp = tempDir();
afterAll(tmp.cleanup);
const at = (name: string) => join(tmp.dir, name);

async function png16(path: string, width: number, height: number, channels: 1 | 3, values: number[]): Promise<void> {
  const buf = await sharp(Uint16Array.from(values), { raw: { width, height, channels } })
    .toColourspace(channels === 1 ? 'grey16' : 'rgb16')
    .png()
    .toBuffer();
  expect((await sharp(buf).metadata()).depth).toBe('ushort');
  writeFileSync(path, buf);
}

describe('readRgb', () => {
  it('reads 8-bit RGB exactly', async () => {
    await png(at('rgb.png'), 2, 1, 3, [255, 0, 10, 1, 2, 3]);
    const img = await readRgb(at('rgb.png'));
    expect([img.width, img.height, img.channels]).toEqual([2, 1, 3]);
    expect([...img.data]).toEqual([255, 0, 10, 1, 2, 3]);
  });

  it('names an empty file as such', async () => {
    writeFileSync(at('empty.png'), '');
    await expect(readRgb(at('empty.png'))).rejects.toThrow(/empty\.png: unreadable image: empty file \(0 bytes\)/);
    await expect(readRgb(at('missing.png'))).rejects.toThrow(/missing\.png: no such file \(fix: check the path/);
  });

  it('replicates grayscale to RGB', async () => {
    await png(at('gray.png'), 2, 1, 1, [7, 200]);
    expect([...(await readRgb(at('gray.png'))).data]).toEqual([7, 7, 7, 200, 200, 200]);
  });

  it('drops alpha (RGBA and gray + alpha) without compositing', async () => {
    await png(at('rgba.png'), 2, 1, 4, [255, 0, 0, 0, 0, 0, 255, 128]);
    expect([...(await readRgb(at('rgba.png'))).data]).toEqual([255, 0, 0, 0, 0, 255]);
    await png(at('ga.png'), 2, 1, 2, [100, 0, 200, 255]);
    expect([...(await readRgb(at('ga.png'))).data]).toEqual([100, 100, 100, 200, 200, 200]);
  });

  it('reduces 16-bit gray and RGB to 8 bits (v >> 8)', async () => {
    await png16(at('g16.png'), 3, 1, 1, [65535, 32768, 1000]);
    expect([...(await readRgb(at('g16.png'))).data]).toEqual([255, 255, 255, 128, 128, 128, 3, 3, 3]);
    await png16(at('c16.png'), 1, 1, 3, [30000, 20000, 10000]);
    expect([...(await readRgb(at('c16.png'))).data]).toEqual([117, 78, 39]);
  });

  it('reads JPEG', async () => {
    const data = new Uint8Array(16 * 16 * 3).fill(0).map((_, i) => [40, 120, 200][i % 3]);
    writeFileSync(
      at('a.jpg'),
      await sharp(Buffer.from(data), { raw: { width: 16, height: 16, channels: 3 } })
        .jpeg({ quality: 100 })
        .toBuffer(),
    );
    const img = await readRgb(at('a.jpg'));
    for (let i = 0; i < img.data.length; i++) expect(Math.abs(img.data[i] - [40, 120, 200][i % 3])).toBeLessThanOrEqual(2);
  });

  it('names the file of a truncated PNG, a truncated JPEG, and a non-image', async () => {
    const noisy = Uint8Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 7919) % 251);
    await png(at('full.png'), 64, 64, 3, noisy);
    const full = readFileSync(at('full.png'));
    writeFileSync(at('cut.png'), full.subarray(0, Math.floor(full.length * 0.6)));
    const jpg = await sharp(full).jpeg().toBuffer();
    expect(jpg.length).toBeGreaterThan(2000);
    writeFileSync(at('cut.jpg'), jpg.subarray(0, Math.floor(jpg.length * 0.95)));
    writeFileSync(at('text.png'), 'not an image');
    for (const f of ['cut.png', 'cut.jpg', 'text.png']) {
      const err = await readRgb(at(f)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DatasetError);
      expect((err as DatasetError).problems[0].file).toBe(at(f));
      expect((err as Error).message).toContain(at(f));
      expect((err as Error).message).toMatch(/unreadable image.*fix: replace it/);
    }
    await expect(readRgb(at('missing.png'))).rejects.toThrow(at('missing.png'));
  });
});

describe('readMask', () => {
  it('binarises > 0 at 16-bit precision, for gray, 16-bit and colour masks', async () => {
    await png(at('m8.png'), 4, 1, 1, [0, 1, 2, 255]);
    expect([...(await readMask(at('m8.png'))).data]).toEqual([0, 1, 1, 1]);
    await png16(at('m16.png'), 3, 1, 1, [0, 1, 65535]);
    expect([...(await readMask(at('m16.png'))).data]).toEqual([0, 1, 1]);
    await png(at('mrgb.png'), 3, 1, 3, [0, 0, 0, 255, 0, 0, 0, 0, 1]);
    expect([...(await readMask(at('mrgb.png'))).data]).toEqual([0, 1, 1]);
  });
});

describe('normalisation', () => {
  it('maps bytes to (v/255 - mean)/std (ImageNet) or v/255, NCHW', async () => {
    await png(at('n.png'), 2, 1, 3, [255, 0, 51, 0, 255, 102]);
    const img = await loadRgb(at('n.png'), 2);
    expect(img.height).toBe(2); // 2x1 stretched to 2x2
    const t = rgbToTensor([img]);
    expect(t.shape).toEqual([1, 3, 2, 2]);
    expect(t.layout).toBe('NCHW');
    // Channel R of pixel (0,0): (1 - 0.485) / 0.229; channel G: (0 - 0.456) / 0.224; B: (0.2 - 0.406) / 0.225.
    expect(t.data[0]).toBeCloseTo(2.248908, 5);
    expect(t.data[4]).toBeCloseTo(-2.035714, 5);
    expect(t.data[8]).toBeCloseTo(-0.915556, 5);
    // Pixel (0,1), channel B: (0.4 - 0.406) / 0.225.
    expect(t.data[9]).toBeCloseTo(-0.026667, 5);
    const u = rgbToTensor([img], 'unit');
    expect([...u.data.slice(0, 4)]).toEqual([1, 0, 1, 0]);
    expect(u.data[8]).toBeCloseTo(0.2, 6);
    expect(tensorToRgb(t)[0].data).toEqual(img.data);
    expect(tensorToRgb(u, 'unit')[0].data).toEqual(img.data);
  });

  it('resizes to the default 256 bilinearly', async () => {
    await solid(at('s.png'), 10, [1, 2, 3]);
    const img = await loadRgb(at('s.png'));
    expect([img.width, img.height]).toEqual([256, 256]);
    expect([...img.data.slice(0, 6)]).toEqual([1, 2, 3, 1, 2, 3]);
  });
});

describe('loadSample', () => {
  const sample = (imagePath: string, maskPath: string | null, label: 0 | 1 = 1): Sample => ({
    className: 'c',
    split: 'test',
    label,
    defect: label ? 'd' : 'good',
    imagePath,
    maskPath,
    format: 'mvtec',
    root: tmp.dir,
  });

  it('resizes masks nearest and binarises them; good images get an all-zero mask', async () => {
    await solid(at('i4.png'), 4);
    await squareMask(at('i4_mask.png'), 4, 0, 0, 2); // top-left 2x2 quadrant
    const s = await loadSample(sample(at('i4.png'), at('i4_mask.png')), 8);
    expect(s.originalSize).toEqual({ width: 4, height: 4 });
    const m = s.mask.data;
    let ones = 0;
    for (let y = 0; y < 8; y++)
      for (let x = 0; x < 8; x++) {
        expect(m[y * 8 + x]).toBe(x < 4 && y < 4 ? 1 : 0);
        ones += m[y * 8 + x];
      }
    expect(ones).toBe(16);
    const g = await loadSample(sample(at('i4.png'), null, 0), 8);
    expect(g.mask.data.every((v) => v === 0)).toBe(true);
  });

  it('rejects a mask whose size differs from its image, naming the mask and the image', async () => {
    await solid(at('i5.png'), 5);
    await squareMask(at('i5_mask.png'), 4);
    const err = await loadSample(sample(at('i5.png'), at('i5_mask.png'))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetError);
    expect((err as Error).message).toContain(`${at('i5_mask.png')}: mask is 4x4 but its image ${at('i5.png')} is 5x5`);
  });
});
