/**
 * Benchmark: all seven metrics on 113 million synthetic pixels (15 classes x 115 images of
 * 256x256). Each case runs in its own child process so that its peak RSS is its own.
 *   pnpm --filter @diad/metrics bench                   # standard, diad, both, standard+defect types
 *   node bench/bench.mjs --case standard                # one case
 *   node bench/bench.mjs --dump /tmp/dir                # write the data for bench/sklearn_yardstick.py
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, openSync, writeSync, closeSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { MetricsAccumulator, formatTable } from '../dist/index.js';
import { generate, CLASSES, PER_CLASS, H, W } from './synthetic.mjs';

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};

function runCase(name) {
  const acc = new MetricsAccumulator();
  // Time spent inside add() only; the synthetic data generation is not the metric's cost.
  let addMs = 0,
    addCpu = 0;
  generate((cls, _k, map, mask, type) => {
    const t = performance.now(),
      c = process.cpuUsage();
    acc.add(cls, map, mask, { height: H, width: W, defectType: type });
    const d = process.cpuUsage(c);
    addCpu += (d.user + d.system) / 1000;
    addMs += performance.now() - t;
  });
  const modes = name === 'both' ? ['standard', 'diad'] : [name.replace('+types', '')];
  const t1 = performance.now(),
    c1 = process.cpuUsage();
  const reports = acc.computeAll(modes, { byDefectType: name.endsWith('+types') });
  const c2 = process.cpuUsage(c1);
  const computeMs = performance.now() - t1;
  const rss = process.resourceUsage().maxRSS / 1024;
  const mean = Object.fromEntries(modes.map((m) => [m, reports[m].mean.values]));
  console.log(
    JSON.stringify({
      case: name,
      addSeconds: addMs / 1000,
      computeSeconds: computeMs / 1000,
      cpuSeconds: (addCpu + (c2.user + c2.system) / 1000) / 1000,
      peakRssMiB: rss,
      mean,
    }),
  );
  if (opt('--table')) console.log(formatTable(reports[modes[0]], { digits: 2 }));
}

function dump(dir) {
  mkdirSync(dir, { recursive: true });
  const fm = openSync(`${dir}/maps.f32`, 'w');
  const fk = openSync(`${dir}/masks.u8`, 'w');
  const meta = { height: H, width: W, classes: [], defectTypes: [] };
  const zero = new Uint8Array(H * W);
  generate((cls, _k, map, mask, type) => {
    writeSync(fm, new Uint8Array(map.buffer, map.byteOffset, map.byteLength));
    writeSync(fk, mask ?? zero);
    meta.classes.push(cls);
    meta.defectTypes.push(type);
  });
  closeSync(fm);
  closeSync(fk);
  writeFileSync(`${dir}/meta.json`, JSON.stringify(meta));
  console.log(`wrote ${meta.classes.length} images to ${dir}`);
}

if (opt('--dump')) dump(opt('--dump'));
else if (opt('--case')) runCase(opt('--case'));
else {
  console.log(
    `${CLASSES} classes x ${PER_CLASS} images x ${H}x${W} = ${((CLASSES * PER_CLASS * H * W) / 1e6).toFixed(1)} M pixels; load average before: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  const self = fileURLToPath(import.meta.url);
  for (const c of ['standard', 'diad', 'both', 'standard+types']) {
    const out = execFileSync(process.execPath, [self, '--case', c], { encoding: 'utf8', maxBuffer: 1 << 24 });
    const r = JSON.parse(out.trim().split('\n')[0]);
    const total = r.addSeconds + r.computeSeconds;
    console.log(
      `${c.padEnd(15)} wall ${total.toFixed(1)} s (add ${r.addSeconds.toFixed(1)} + compute ${r.computeSeconds.toFixed(1)}), CPU ${r.cpuSeconds.toFixed(1)} s, peak RSS ${r.peakRssMiB.toFixed(0)} MiB (whole process), load ${loadavg()[0].toFixed(2)}`,
    );
    console.log(`${''.padEnd(15)} mean ${JSON.stringify(r.mean)}`);
  }
}
