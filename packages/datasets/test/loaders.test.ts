import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatasetError, loadImageFolder, loadSample, openDataset, scanRoots, type Dataset } from '../src/index.js';
import { HAS_SHARED, SHARED_DATA, mvtecClass, solid, squareMask, tempDir } from './helpers.js';

const tmp = tempDir();
afterAll(tmp.cleanup);

async function rejects(p: Promise<unknown>): Promise<DatasetError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(DatasetError);
  return e as DatasetError;
}

function counts(ds: Dataset, cls: string) {
  const s = ds.samples.filter((x) => x.className === cls);
  return {
    train: s.filter((x) => x.split === 'train').length,
    good: s.filter((x) => x.split === 'test' && x.label === 0).length,
    bad: s.filter((x) => x.split === 'test' && x.label === 1).length,
    masks: s.filter((x) => x.maskPath !== null).length,
  };
}

describe('MVTec AD layout', () => {
  const root = join(tmp.dir, 'mv');

  it('finds classes and gives each sample class, split, label, defect, image and mask', async () => {
    await mvtecClass(root, 'alpha', 3, 2, { crack: 2, hole: 1 });
    await mvtecClass(root, 'beta', 2, 1, { cut: 1 });
    const ds = await openDataset(root);
    expect(ds.classes).toEqual(['alpha', 'beta']);
    expect(counts(ds, 'alpha')).toEqual({ train: 3, good: 2, bad: 3, masks: 3 });
    expect(counts(ds, 'beta')).toEqual({ train: 2, good: 1, bad: 1, masks: 1 });
    const crack1 = ds.samples.find((s) => s.imagePath === join(root, 'alpha', 'test', 'crack', '001.png'))!;
    expect(crack1).toEqual({
      className: 'alpha',
      split: 'test',
      label: 1,
      defect: 'crack',
      format: 'mvtec',
      root,
      imagePath: join(root, 'alpha', 'test', 'crack', '001.png'),
      maskPath: join(root, 'alpha', 'ground_truth', 'crack', '001_mask.png'),
    });
    // Order: class, then train, test good, test defects by name.
    expect(ds.samples.slice(0, 9).map((s) => `${s.split}/${s.defect}`)).toEqual([
      'train/good',
      'train/good',
      'train/good',
      'test/good',
      'test/good',
      'test/crack',
      'test/crack',
      'test/hole',
      'train/good',
    ]);
    const loaded = await loadSample(crack1, 8);
    expect([...loaded.mask.data].reduce((a, b) => a + b, 0)).toBe(4);
  });

  it('filters classes and accepts a class folder as a root', async () => {
    expect((await openDataset(root, { classes: ['beta'] })).classes).toEqual(['beta']);
    const one = await openDataset(join(root, 'alpha'));
    expect(one.classes).toEqual(['alpha']);
    expect(one.samples).toHaveLength(8);
  });

  it('names a missing root, a missing class and a root without classes', async () => {
    const a = await rejects(openDataset(join(tmp.dir, 'nope')));
    expect(a.message).toContain(`${join(tmp.dir, 'nope')}: dataset root does not exist`);
    writeFileSync(join(tmp.dir, 'a-file'), 'x');
    expect((await rejects(openDataset(join(tmp.dir, 'a-file')))).message).toContain(`${join(tmp.dir, 'a-file')}: dataset root is a file, not a folder`);
    const b = await rejects(openDataset(root, { classes: ['gamma'] }));
    expect(b.message).toMatch(/class gamma not found.*choose among: alpha, beta/);
    mkdirSync(join(tmp.dir, 'empty'), { recursive: true });
    const c = await rejects(openDataset(join(tmp.dir, 'empty')));
    expect(c.message).toMatch(/no class folders found/);
  });

  it('names a defective image without mask and an orphan mask, with the fix', async () => {
    const r = join(tmp.dir, 'broken');
    await mvtecClass(r, 'c', 1, 1, { crack: 2 });
    rmSync(join(r, 'c', 'ground_truth', 'crack', '001_mask.png'));
    await squareMask(join(r, 'c', 'ground_truth', 'crack', '007_mask.png'), 8);
    const e = await rejects(openDataset(r));
    expect(e.problems).toHaveLength(2);
    expect(e.problems[0]).toEqual({
      file: join(r, 'c', 'test', 'crack', '001.png'),
      message: 'defective image without mask',
      fix: `add its ground-truth mask as ${join(r, 'c', 'ground_truth', 'crack', '001_mask.png')}, or move the image out of the test set`,
      split: 'test',
    });
    expect(e.problems[1].file).toBe(join(r, 'c', 'ground_truth', 'crack', '007_mask.png'));
    expect(e.problems[1].message).toMatch(/orphan mask/);
    expect(e.message).toContain('001.png: defective image without mask (fix: add its ground-truth mask');
    // Both concern the test split only: a user of the train split (fit) is not refused.
    const trainOnly = await openDataset(r, { splits: ['train'] });
    expect(trainOnly.samples.filter((s) => s.split === 'train')).toHaveLength(1);
    await expect(openDataset(r, { splits: ['test'] })).rejects.toThrow(/defective image without mask/);
  });

  it('follows symbolic links to class folders and images, and names a broken link', async () => {
    const real = join(tmp.dir, 'real');
    await mvtecClass(real, 'alpha', 2, 1, { crack: 1 });
    await mvtecClass(real, 'beta', 2, 1, {});
    const linked = join(tmp.dir, 'linked');
    mkdirSync(join(linked, 'gamma', 'train', 'good'), { recursive: true });
    symlinkSync(join(real, 'alpha'), join(linked, 'alpha')); // a linked class folder
    symlinkSync(join(real, 'beta', 'test'), join(linked, 'gamma', 'test')); // a linked test folder
    for (const f of ['000.png', '001.png']) symlinkSync(join(real, 'beta', 'train', 'good', f), join(linked, 'gamma', 'train', 'good', f)); // linked images
    const ds = await openDataset(linked);
    expect(ds.classes).toEqual(['alpha', 'gamma']);
    expect(counts(ds, 'alpha').train).toBe(2);
    expect(counts(ds, 'gamma').train).toBe(2);
    symlinkSync(join(real, 'beta', 'train', 'good', 'gone.png'), join(linked, 'gamma', 'train', 'good', '002.png'));
    const e = await rejects(openDataset(linked));
    expect(e.problems).toEqual([
      expect.objectContaining({
        file: join(linked, 'gamma', 'train', 'good', '002.png'),
        message: 'broken symbolic link: its target does not exist',
        split: 'train',
      }),
    ]);
    symlinkSync(join(tmp.dir, 'no-such-class'), join(linked, 'delta'));
    const f = await rejects(openDataset(linked));
    expect(f.problems[0]).toMatchObject({ file: join(linked, 'delta'), message: 'broken symbolic link: its target does not exist' });
  });

  it('names a class without train/good', async () => {
    const r = join(tmp.dir, 'notrain');
    await mvtecClass(r, 'c', 0, 1, {});
    const e = await rejects(openDataset(r));
    expect(e.problems[0].file).toBe(join(r, 'c', 'train', 'good'));
  });

  it('refuses one class name in two roots unless class names are prefixed', async () => {
    const r2 = join(tmp.dir, 'mv2');
    await mvtecClass(r2, 'alpha', 1, 1, { x: 1 });
    const e = await rejects(openDataset([root, r2]));
    expect(e.message).toMatch(/class alpha is also in .*prefixClasses/);
    const ds = await openDataset([root, r2], { prefixClasses: true });
    expect(ds.classes).toEqual(['mv/alpha', 'mv/beta', 'mv2/alpha']);
    expect((await openDataset([root, r2], { prefixClasses: true, classes: ['mv2/alpha'] })).samples).toHaveLength(3);
  });
});

describe('VisA layout (split_csv/1cls.csv)', () => {
  const root = join(tmp.dir, 'visa');
  const header = 'object,split,label,image,mask';

  async function make(rows: string[]): Promise<void> {
    rmSync(root, { recursive: true, force: true });
    for (const f of [
      'candle/Data/Images/Normal/0000.JPG',
      'candle/Data/Images/Normal/0001.JPG',
      'candle/Data/Images/Normal/0002.JPG',
      'candle/Data/Images/Anomaly/000.JPG',
      'pcb1/Data/Images/Normal/0000.JPG',
    ]) {
      await solid(join(root, f), 8);
    }
    await squareMask(join(root, 'candle/Data/Masks/Anomaly/000.png'), 8);
    mkdirSync(join(root, 'split_csv'), { recursive: true });
    writeFileSync(join(root, 'split_csv', '1cls.csv'), [header, ...rows].join('\n') + '\n');
  }

  it('reads the official columns: object, split, label (normal/anomaly), image, mask', async () => {
    await make([
      'candle,train,normal,candle/Data/Images/Normal/0000.JPG,',
      'candle,train,normal,candle/Data/Images/Normal/0001.JPG,',
      'candle,test,normal,candle/Data/Images/Normal/0002.JPG,',
      'candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png',
      'pcb1,train,normal,pcb1/Data/Images/Normal/0000.JPG,',
    ]);
    const ds = await openDataset(root);
    expect(ds.classes).toEqual(['candle', 'pcb1']);
    expect(counts(ds, 'candle')).toEqual({ train: 2, good: 1, bad: 1, masks: 1 });
    const bad = ds.samples.find((s) => s.label === 1)!;
    expect(bad).toEqual({
      className: 'candle',
      split: 'test',
      label: 1,
      defect: 'anomaly',
      format: 'visa',
      root,
      imagePath: join(root, 'candle/Data/Images/Anomaly/000.JPG'),
      maskPath: join(root, 'candle/Data/Masks/Anomaly/000.png'),
    });
    expect((await openDataset(root, { classes: ['pcb1'] })).samples).toHaveLength(1);
  });

  it('names anomalies without mask, missing files, orphan masks and a wrong header', async () => {
    await make([
      'candle,train,normal,candle/Data/Images/Normal/0000.JPG,',
      'candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,',
      'candle,test,normal,candle/Data/Images/Normal/0404.JPG,',
    ]);
    const e = await rejects(openDataset(root));
    const csv = join(root, 'split_csv', '1cls.csv');
    expect(e.problems.map((p) => p.file)).toEqual([
      join(root, 'candle/Data/Images/Anomaly/000.JPG'),
      join(root, 'candle/Data/Images/Normal/0404.JPG'),
      join(root, 'candle/Data/Masks/Anomaly/000.png'),
    ]);
    expect(e.problems[0].message).toBe(`defective image without mask (${csv}:3)`);
    expect(e.problems[2].message).toMatch(/orphan mask/);
    writeFileSync(csv, 'cls,image\ncandle,x.png\n');
    const h = await rejects(openDataset(root));
    expect(h.message).toContain(`${csv}: header "cls,image" lacks VisA columns (fix: the first line must name the columns object,split,label,image,mask)`);
  });
});

describe('plain image folder', () => {
  it('loads every image directly in the folder with the given label', async () => {
    const dir = join(tmp.dir, 'plain');
    await solid(join(dir, 'b.png'), 4);
    await solid(join(dir, 'a.jpg'), 4);
    writeFileSync(join(dir, 'notes.txt'), 'x');
    const ds = await loadImageFolder(dir, { className: 'parts' });
    expect(ds.classes).toEqual(['parts']);
    expect(ds.samples.map((s) => [s.imagePath, s.split, s.label, s.defect, s.maskPath])).toEqual([
      [join(dir, 'a.jpg'), 'test', 0, 'good', null],
      [join(dir, 'b.png'), 'test', 0, 'good', null],
    ]);
    mkdirSync(join(tmp.dir, 'noimg'));
    await expect(loadImageFolder(join(tmp.dir, 'noimg'))).rejects.toThrow(/no images in folder/);
  });
});

describe.skipIf(!HAS_SHARED)('real data in ../shared/data', () => {
  it('opens mvtec_ad and mtd together as one multi-class dataset with the documented counts', async () => {
    const ds = await openDataset([join(SHARED_DATA, 'mvtec_ad'), join(SHARED_DATA, 'mtd')]);
    expect(ds.classes).toEqual(['bottle', 'grid', 'magnetic_tile']);
    expect(counts(ds, 'bottle')).toEqual({ train: 200, good: 20, bad: 63, masks: 63 });
    expect(counts(ds, 'grid')).toEqual({ train: 25, good: 3, bad: 11, masks: 11 });
    expect(counts(ds, 'magnetic_tile')).toEqual({ train: 200, good: 191, bad: 388, masks: 388 });
    const s = ds.samples.find((x) => x.imagePath.endsWith(join('bottle', 'test', 'broken_large', '000.png')))!;
    expect(s.maskPath).toBe(join(SHARED_DATA, 'mvtec_ad', 'bottle', 'ground_truth', 'broken_large', '000_mask.png'));
    const l = await loadSample(s);
    expect(l.originalSize).toEqual({ width: 256, height: 256 });
    const ones = l.mask.data.reduce((a, b) => a + b, 0);
    expect(ones).toBeGreaterThan(100);
    expect(ones).toBeLessThan((256 * 256) / 2);
    // Grayscale MTD images come out as RGB with equal channels.
    const tile = await loadSample(ds.samples.find((x) => x.className === 'magnetic_tile')!, 64);
    for (let i = 0; i < 64 * 64; i++) expect(tile.image.data[i * 3]).toBe(tile.image.data[i * 3 + 2]);
  });

  it('scans every class of the shared data without structural problems', async () => {
    const scans = await scanRoots([join(SHARED_DATA, 'mvtec_ad'), join(SHARED_DATA, 'mtd'), join(SHARED_DATA, 'ksdd'), join(SHARED_DATA, 'aitex')]);
    expect(scans.map((s) => s.name)).toEqual(['bottle', 'grid', 'magnetic_tile', 'kolektor_sdd', 'fabric_01', 'fabric_02']);
    expect(scans.flatMap((s) => s.problems)).toEqual([]);
  });
});
