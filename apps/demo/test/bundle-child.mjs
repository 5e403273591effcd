// A fresh process that loads a diad bundle with @diad/core alone: any import of another diad package
// or of tfjs fails (a module-resolution hook refuses it). Prints the image scores and decisions as JSON.
// Usage: node bundle-child.mjs BUNDLE_DIR INPUTS.safetensors (tensor `images` [N, 3, S, S], preprocessed).
import { register } from 'node:module';

const hook = `export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  if (/@tensorflow|\\/packages\\/(?!core\\/)|@diad\\/(?!core)/.test(r.url)) throw new Error('the bundle runtime imported ' + r.url);
  return r;
}`;
register(`data:text/javascript,${encodeURIComponent(hook)}`);

const [bundleDir, inputs] = process.argv.slice(2);
const { DiadBundle } = await import('@diad/core/bundle');
const { readSafetensors } = await import('@diad/core');
const images = (await readSafetensors(inputs)).float32('images');
const bundle = await DiadBundle.open(bundleDir);
try {
  const { scores } = await bundle.score(images);
  process.stdout.write(`${JSON.stringify({ scores, anomalous: scores.map((s) => bundle.judge(s).anomalous) })}\n`);
} finally {
  await bundle.release();
}
