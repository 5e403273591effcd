import { promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';
import { DatasetError } from './errors.js';
import { isDir, isFile, listImages } from './files.js';
import type { ClassScan } from './scan.js';
import type { Sample } from './types.js';

/** Path of the VisA split file relative to the VisA root (the official 1-class split). */
export const VISA_SPLIT_CSV = join('split_csv', '1cls.csv');

const COLUMNS = ['object', 'split', 'label', 'image', 'mask'] as const;

/** One row of `split_csv/1cls.csv`. */
interface VisaRow {
  object: string;
  split: string;
  label: string;
  image: string;
  mask: string;
  line: number;
}

/**
 * Scans a VisA root (Zou et al., ECCV 2022) through its `split_csv/1cls.csv`, whose columns are
 * `object,split,label,image,mask` (split `train`/`test`, label `normal`/`anomaly`, paths relative
 * to the root such as `candle/Data/Images/Anomaly/000.JPG` and `candle/Data/Masks/Anomaly/000.png`).
 * VisA names no defect types, so every anomalous image gets defect `anomaly`. Problems collected:
 * missing image or mask file, anomaly row without mask, unknown split/label, masks under
 * `<class>/Data/Masks` that no row refers to (orphans).
 *
 * @param prefix prepended to class names (`''` or `<root name>/`).
 * @throws DatasetError when the CSV is missing or its header is not the VisA header.
 */
export async function scanVisa(root: string, prefix = ''): Promise<ClassScan[]> {
  const csvPath = join(root, VISA_SPLIT_CSV);
  const rows = parseVisaCsv(
    await fs.readFile(csvPath, 'utf8').catch(() => {
      throw DatasetError.of(csvPath, 'VisA split file not found', `pass the VisA root folder (the one holding split_csv/ and the class folders)`);
    }),
    csvPath,
  );
  const byClass = new Map<string, ClassScan>();
  const referenced = new Set<string>();
  for (const r of rows) {
    let scan = byClass.get(r.object);
    if (!scan) {
      scan = { name: prefix + r.object, root, format: 'visa', samples: [], masks: 0, problems: [] };
      byClass.set(r.object, scan);
    }
    const where = `${csvPath}:${r.line}`;
    if (r.split !== 'train' && r.split !== 'test') {
      scan.problems.push({ file: where, message: `unknown split "${r.split}"`, fix: 'use train or test' });
      continue;
    }
    if (r.label !== 'normal' && r.label !== 'anomaly') {
      scan.problems.push({ file: where, message: `unknown label "${r.label}"`, fix: 'use normal or anomaly' });
      continue;
    }
    const imagePath = resolve(root, r.image);
    if (!(await isFile(imagePath))) {
      scan.problems.push({
        file: imagePath,
        message: `image listed at ${where} does not exist`,
        fix: 'restore the file or remove its row',
        split: r.split as 'train' | 'test',
      });
      continue;
    }
    const label = r.label === 'anomaly' ? 1 : 0;
    let maskPath: string | null = null;
    if (r.mask) {
      maskPath = resolve(root, r.mask);
      referenced.add(maskPath);
      if (!(await isFile(maskPath))) {
        scan.problems.push({
          file: maskPath,
          message: `mask listed at ${where} does not exist`,
          fix: 'restore the mask or clear the mask column',
          split: 'test',
        });
        maskPath = null;
      } else if (label === 1) {
        scan.masks++;
      }
    } else if (label === 1 && r.split === 'test') {
      scan.problems.push({
        file: imagePath,
        message: `defective image without mask (${where})`,
        fix: 'add its mask under Data/Masks and fill the mask column',
        split: 'test',
      });
    }
    if (label === 1 && r.split === 'train') {
      scan.problems.push({ file: imagePath, message: `anomalous image in the train split (${where})`, fix: 'set its split to test', split: 'train' });
      continue;
    }
    const sample: Sample = {
      className: prefix + r.object,
      split: r.split,
      label,
      defect: label ? 'anomaly' : 'good',
      imagePath,
      maskPath: label ? maskPath : null,
      format: 'visa',
      root,
    };
    scan.samples.push(sample);
  }
  for (const [object, scan] of byClass) {
    const maskDir = join(root, object, 'Data', 'Masks', 'Anomaly');
    if (!(await isDir(maskDir))) continue;
    for (const f of await listImages(maskDir)) {
      const p = join(maskDir, f);
      if (!referenced.has(p)) {
        scan.problems.push({ file: p, message: `orphan mask: no row of ${csvPath} refers to it`, fix: 'add its image row to the CSV or delete the mask' });
      }
    }
  }
  return [...byClass.values()];
}

/**
 * Parses the VisA split CSV (no quoted fields in the official file; quotes are still honoured).
 * @throws DatasetError naming the file when the header is not `object,split,label,image,mask`.
 */
export function parseVisaCsv(text: string, file: string): VisaRow[] {
  const lines = text.split(/\r?\n/);
  const header = splitCsvLine(lines[0] ?? '').map((h) => h.trim().toLowerCase());
  const idx = COLUMNS.map((c) => header.indexOf(c));
  if (idx.some((i) => i < 0)) {
    throw DatasetError.of(file, `header "${lines[0] ?? ''}" lacks VisA columns`, `the first line must name the columns ${COLUMNS.join(',')}`);
  }
  const rows: VisaRow[] = [];
  for (let i = 1; i < lines.length; i++) {
    if (!lines[i].trim()) continue;
    const cells = splitCsvLine(lines[i]);
    const [object, split, label, image, mask] = idx.map((j) => (cells[j] ?? '').trim());
    rows.push({ object, split, label, image, mask, line: i + 1 });
  }
  return rows;
}

function splitCsvLine(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

/** Whether a folder is a VisA root (holds `split_csv/1cls.csv`). */
export async function isVisaRoot(dir: string): Promise<boolean> {
  return isFile(join(dir, VISA_SPLIT_CSV));
}
