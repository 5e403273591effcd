import { join } from 'node:path';
import { brokenLinkProblem, brokenLinks, isDir, listDirs, listImages, stem } from './files.js';
import type { ClassScan } from './scan.js';
import type { Problem, Sample } from './types.js';

/**
 * Scans one class folder in the MVTec AD layout (Bergmann et al., CVPR 2019):
 * `<class>/train/good/*`, `<class>/test/<defect>/*` (`good` = normal) and
 * `<class>/ground_truth/<defect>/<id>_mask.png` for every defective `<id>` (a mask named
 * `<id>.png` is accepted too). Structural problems (no train/good, defective image without mask,
 * orphan mask, unexpected folders) are collected, not thrown, so `inspect` can list them all.
 *
 * @param classDir absolute path of the class folder.
 * @param name class name given to the samples.
 * @param root dataset root recorded in the samples.
 */
export async function scanMvtecClass(classDir: string, name: string, root: string): Promise<ClassScan> {
  const samples: Sample[] = [];
  const problems: Problem[] = [];
  const base = { className: name, format: 'mvtec' as const, root };

  const trainDir = join(classDir, 'train');
  const goodDir = join(trainDir, 'good');
  if (!(await isDir(goodDir))) {
    problems.push({ file: goodDir, message: 'missing train/good folder', fix: `put the normal training images of class ${name} in ${goodDir}` });
  } else {
    for (const f of await listImages(goodDir)) {
      samples.push({ ...base, split: 'train', label: 0, defect: 'good', imagePath: join(goodDir, f), maskPath: null });
    }
    for (const l of await brokenLinks(goodDir)) problems.push(brokenLinkProblem(l, 'train'));
  }
  if (await isDir(trainDir)) {
    for (const d of await listDirs(trainDir)) {
      if (d !== 'good') {
        problems.push({
          file: join(trainDir, d),
          message: 'train may only hold good images',
          fix: `move ${d} to ${join(classDir, 'test', d)} (with masks in ground_truth/${d})`,
        });
      }
    }
  }

  const testDir = join(classDir, 'test');
  const gtDir = join(classDir, 'ground_truth');
  const masksByDefect = new Map<string, Map<string, string>>();
  if (await isDir(gtDir)) {
    for (const d of await listDirs(gtDir)) masksByDefect.set(d, indexMasks(await listImages(join(gtDir, d))));
  }
  let masks = 0;
  const testDefects = (await isDir(testDir)) ? await listDirs(testDir) : [];
  if (testDefects.length === 0) {
    problems.push({ file: testDir, message: 'no test images', fix: `put test images in ${testDir}/good and ${testDir}/<defect type>`, split: 'test' });
  }
  if (await isDir(testDir)) for (const l of await brokenLinks(testDir)) problems.push(brokenLinkProblem(l, 'test'));
  for (const defect of testDefects) {
    const dir = join(testDir, defect);
    const gt = masksByDefect.get(defect);
    for (const l of await brokenLinks(dir)) problems.push(brokenLinkProblem(l, 'test'));
    for (const f of await listImages(dir)) {
      const imagePath = join(dir, f);
      if (defect === 'good') {
        samples.push({ ...base, split: 'test', label: 0, defect, imagePath, maskPath: null });
        continue;
      }
      const maskName = gt?.get(stem(f));
      if (maskName === undefined) {
        const want = join(gtDir, defect, `${stem(f)}_mask.png`);
        problems.push({
          file: imagePath,
          message: 'defective image without mask',
          fix: `add its ground-truth mask as ${want}, or move the image out of the test set`,
          split: 'test',
        });
      } else {
        gt!.delete(stem(f));
        masks++;
      }
      samples.push({ ...base, split: 'test', label: 1, defect, imagePath, maskPath: maskName === undefined ? null : join(gtDir, defect, maskName) });
    }
  }
  for (const [defect, left] of masksByDefect) {
    for (const maskName of left.values()) {
      problems.push({
        file: join(gtDir, defect, maskName),
        message: 'orphan mask: no test image it belongs to',
        fix: `add the image as ${join(testDir, defect, maskName.replace(/_mask(\.[^.]+)$/, '$1'))} or delete the mask`,
        split: 'test',
      });
    }
  }
  return { name, root, format: 'mvtec', samples, masks, problems };
}

/** Maps image id -> mask file name; `<id>_mask.<ext>` and `<id>.<ext>` both name image `<id>`. */
function indexMasks(files: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of files) {
    const s = stem(f);
    const id = s.endsWith('_mask') ? s.slice(0, -'_mask'.length) : s;
    out.set(id, f);
  }
  return out;
}

/** Whether a folder looks like an MVTec class folder (has `train` or `test`). */
export async function isMvtecClassDir(dir: string): Promise<boolean> {
  return (await isDir(join(dir, 'train'))) || (await isDir(join(dir, 'test')));
}
