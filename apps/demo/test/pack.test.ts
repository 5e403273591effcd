/**
 * Publishing: `pnpm pack` @diad/core and @diad/datasets, install both tarballs with npm into a
 * scratch folder outside the workspace (only the npm registry is reachable), and use them there.
 */
import { describe, expect, it, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '@diad/core';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const PACKAGES = { core: join(REPO, 'packages', 'core'), datasets: join(REPO, 'packages', 'datasets') };
const scratch = mkdtempSync(join(tmpdir(), 'diad-pack-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The environment without pnpm's npm_* variables, so npm reads its own configuration. */
function npmEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_|^pnpm_/i.test(k)));
}

function packed(pkg: string): Record<string, unknown> & {
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
} {
  return JSON.parse(readFileSync(join(scratch, 'app', 'node_modules', '@diad', pkg, 'package.json'), 'utf8'));
}

const SCRIPT = `
import { tensor, toLayout, Rng, IMAGENET_MEAN, readSafetensors, writeSafetensors } from '@diad/core';
import { generateSynthetic, openDataset, loadBatch } from '@diad/datasets';
import { join } from 'node:path';
const t = toLayout(tensor(Float32Array.from([1, 2, 3, 4, 5, 6]), [1, 3, 1, 2], 'NCHW'), 'NHWC');
const out = join(process.cwd(), 'data');
await generateSynthetic(out, { seed: 1, size: 32, train: 2, testGood: 1, testDefective: 1 });
const ds = await openDataset(out);
const batch = await loadBatch(ds.samples.filter((s) => s.split === 'test'), { size: 16 });
await writeSafetensors(join(process.cwd(), 'batch.safetensors'), { images: batch.images });
const back = (await readSafetensors(join(process.cwd(), 'batch.safetensors'))).float32('images');
let tfjs = 'loaded';
try { await import('@diad/core/tfjs'); } catch (e) { tfjs = e.code; }
console.log(JSON.stringify({
  nhwc: [...t.data], u32: new Rng(3).nextU32(), mean: IMAGENET_MEAN, classes: ds.classes,
  shape: batch.images.shape, masks: batch.masks.shape, labels: [...batch.labels], tfjs,
  roundTrip: back.shape.join() === batch.images.shape.join() && back.data.every((v, i) => v === batch.images.data[i]),
}));
`;

describe('packed tarballs', () => {
  it('install with npm outside the workspace and work together, without tfjs', () => {
    for (const [name, dir] of Object.entries(PACKAGES)) {
      if (!existsSync(join(dir, 'dist', 'index.js'))) throw new Error(`${dir}/dist missing: run pnpm --filter @diad/${name} build first`);
      execFileSync('pnpm', ['pack', '--pack-destination', scratch], { cwd: dir, stdio: 'pipe' });
    }
    const tarballs = readdirSync(scratch)
      .filter((f) => f.endsWith('.tgz'))
      .sort();
    expect(tarballs).toEqual([expect.stringMatching(/^diad-core-\d+\.\d+\.\d+\.tgz$/), expect.stringMatching(/^diad-datasets-\d+\.\d+\.\d+\.tgz$/)]);

    const app = join(scratch, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module' }));
    const t0 = Date.now();
    execFileSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', ...tarballs.map((f) => join(scratch, f))], {
      cwd: app,
      stdio: 'pipe',
      env: npmEnv(),
      timeout: 150_000,
    });
    console.log(`npm install of the two tarballs: ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    // Manifests: workspace ranges rewritten; tfjs and onnxruntime only as optional peers of core.
    const core = packed('core');
    const datasets = packed('datasets');
    expect(datasets.dependencies?.['@diad/core']).toBe(`^${core.version}`);
    expect(Object.keys(datasets.dependencies ?? {}).sort()).toEqual(['@diad/core', 'image-size', 'sharp']);
    expect(datasets.peerDependencies).toBeUndefined();
    expect(Object.keys(core.dependencies ?? {}).filter((d) => d.startsWith('@tensorflow') || d.startsWith('onnxruntime'))).toEqual([]);
    for (const peer of Object.keys(core.peerDependencies ?? {})) expect(core.peerDependenciesMeta?.[peer]?.optional, peer).toBe(true);
    // Optional peers are not installed, so nothing downloaded libtensorflow or CUDA files.
    expect(existsSync(join(app, 'node_modules', '@tensorflow'))).toBe(false);
    expect(existsSync(join(app, 'node_modules', 'onnxruntime-node'))).toBe(false);
    // core's main entry imports no tfjs/onnxruntime module (only its ./tfjs and ./ort subpaths do).
    const mainFiles = readdirSync(join(app, 'node_modules', '@diad', 'core', 'dist')).filter((f) => f.endsWith('.js'));
    for (const f of mainFiles) {
      expect(readFileSync(join(app, 'node_modules', '@diad', 'core', 'dist', f), 'utf8'), f).not.toMatch(/from ['"](@tensorflow|onnxruntime)/);
    }

    // Source maps ship with the sources they point at.
    for (const pkg of ['core', 'datasets']) {
      const root = join(app, 'node_modules', '@diad', pkg);
      const maps = (readdirSync(join(root, 'dist'), { recursive: true }) as string[]).filter((f) => f.endsWith('.js.map'));
      expect(maps.length, pkg).toBeGreaterThan(0);
      for (const m of maps) {
        const map = JSON.parse(readFileSync(join(root, 'dist', m), 'utf8')) as { sources: string[] };
        for (const src of map.sources) expect(existsSync(join(root, 'dist', dirname(m), src)), `${pkg}/dist/${m} -> ${src}`).toBe(true);
      }
    }

    writeFileSync(join(app, 'use.mjs'), SCRIPT);
    const out = JSON.parse(execFileSync(process.execPath, ['use.mjs'], { cwd: app, encoding: 'utf8' }));
    expect(out).toEqual({
      nhwc: [1, 3, 5, 2, 4, 6],
      u32: new Rng(3).nextU32(),
      mean: [0.485, 0.456, 0.406],
      classes: ['disc', 'grain', 'woven'],
      shape: [12, 3, 16, 16],
      masks: [12, 1, 16, 16],
      labels: [0, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1],
      tfjs: 'ERR_MODULE_NOT_FOUND',
      roundTrip: true,
    });
  });
});
