import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { loadLayersModel, model as layersModel } from '@tensorflow/tfjs-layers';
import { initTfjs } from '@diad/core/tfjs';
import { concatBatch, maxAbsDiff } from '@diad/core';
import { TFJS_BACKBONES, TfjsFeatureExtractor, loadBackbone, loadNsfwjsArtifacts, loadResnetImagenetArtifacts } from '../src/index.js';
import { texture } from './images.js';

// The interpreter (BN folded into convs, fused ops) against tfjs-layers running the same Keras JSON.
describe('Keras interpreter vs tfjs-layers', () => {
  for (const name of ['mobilenet_v2', 'inception_v3', 'resnet50'] as const) {
    it(`${name}: tapped layers agree`, async () => {
      await initTfjs();
      const spec = TFJS_BACKBONES[name];
      const art = spec.package === 'nsfwjs' ? loadNsfwjsArtifacts(spec.model) : loadResnetImagenetArtifacts();
      // resnet50 at 128 px, the size the cpu preset feeds it (its layer3 map is then 8 x 8).
      const size = name === 'resnet50' ? 128 : spec.nativeSize;
      const topo = JSON.parse(JSON.stringify(art.modelTopology));
      // Let the full model accept the input size (the classifier head then gets a wrong shape, but it is never run).
      topo.model_config.config.layers[0].config.batch_input_shape = [null, size, size, 3];
      const full = await loadLayersModel({ load: async () => ({ ...art, modelTopology: topo }) });
      const sub = layersModel({ inputs: full.inputs, outputs: spec.taps.map((t) => full.getLayer(t).output as never) });
      const ext = await TfjsFeatureExtractor.load(name);
      const img = tf.transpose(tf.tensor4d(texture(5, size).data, [1, 3, size, size]), [0, 2, 3, 1]) as tf.Tensor4D;
      const rgb01 = tf.add(tf.mul(img, [0.229, 0.224, 0.225]), [0.485, 0.456, 0.406]);
      // Keras preprocess_input: [0, 1] for the nsfwjs models; caffe mode (BGR, 0-255, mean-subtracted) for ResNet-50.
      const modelInput = spec.input === 'unit' ? rgb01 : tf.sub(tf.mul(tf.reverse(rgb01, 3), 255), [103.939, 116.779, 123.68]);
      const want = sub.predict(modelInput) as tf.Tensor[];
      const got = ext.apply(img);
      got.forEach((g, i) => {
        expect(g.shape).toEqual(want[i].shape);
        const peak = tf.max(tf.abs(want[i])).dataSync()[0];
        const diff = tf.max(tf.abs(tf.sub(g, want[i]))).dataSync()[0];
        expect(diff).toBeLessThan(1e-4 * peak);
      });
      tf.dispose(got);
      ext.dispose();
      full.dispose();
    });
  }
});

// The same parsed Keras graphs recorded as ONNX and run on onnxruntime (the `ort` engine of the shipped backbones).
describe('Keras backbones on onnxruntime vs tfjs', () => {
  for (const name of ['resnet50', 'mobilenet_v2', 'inception_v3'] as const) {
    it(`${name}: the ONNX graph gives the tfjs features`, async () => {
      await initTfjs();
      const size = name === 'inception_v3' ? 139 : 96;
      const tfjsExt = await TfjsFeatureExtractor.load(name);
      const ortExt = await loadBackbone(name, { engine: 'ort', imageSize: size });
      try {
        const img = concatBatch([texture(3, size), texture(4, size)]);
        const [want, got] = [await tfjsExt.extract(img), await ortExt.extractor.extract(img)];
        expect(ortExt.extractor.strides).toEqual([...tfjsExt.strides]);
        want.forEach((w, i) => {
          expect(got[i].shape).toEqual(w.shape);
          const peak = w.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
          expect(maxAbsDiff(got[i], w)).toBeLessThan(1e-4 * peak);
        });
        expect(ortExt.provenance).toMatch(/on onnxruntime \(\d+ px graph\)/);
      } finally {
        tfjsExt.dispose();
        await ortExt.dispose();
      }
    });
  }
  it('refuses what the ONNX path cannot do, by name', async () => {
    await expect(loadBackbone('mobilenet_v2_mid', { engine: 'ort', imageSize: 64 })).rejects.toThrow(/converted TF graph/);
    await expect(loadBackbone('resnet50', { engine: 'ort' })).rejects.toThrow(/give imageSize/);
  });
});
