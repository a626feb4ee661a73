/**
 * Feature banks: scoring one image against the other images of a batch equals what
 * the batch run gives it; the file format is versioned and checksummed; rolling
 * updates; few-shot banks of known-good images; the `musc bank build` / `musc score` CLI.
 * Data tier: real bottle images ($MUSC_DATA or ../shared/data), the bundled ResNet50.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Backbone } from '../../src/backbone/backbone.js';
import { openBackbone } from '../../src/backbone/open.js';
import { appendToBank, assertCompatible, buildBank } from '../../src/bank/bank.js';
import { BankError, decodeBank, encodeBank, fromHalf, inspectBank, toHalf, type Bank } from '../../src/bank/format.js';
import { Musc } from '../../src/api/musc.js';
import { bankBackboneOf } from '../../src/bank/scorer.js';
import { bankHeatScale, heatScaleOfMaps, rscinAgainstBank, scoreAgainstBank } from '../../src/bank/score.js';
import { extractFeatures, resolveConfig, scoreFeatures, type ImageFeatures, type MuscConfig } from '../../src/pipeline/musc.js';
import { lnamd } from '../../src/pipeline/lnamd.js';
import { createHash } from 'node:crypto';
import { excessScore, imageScore, typicalMap } from '../../src/pipeline/maps.js';
import { rscin } from '../../src/pipeline/rscin.js';
import { evaluationData, MUSC_BIN } from '../helpers.js';

const execFileAsync = promisify(execFile);
const BOTTLE = join(evaluationData(), 'mvtec_ad', 'bottle');

let backbone: Backbone;
let cfg: MuscConfig;
let features: ImageFeatures[] = [];
let tmp = '';

before(async () => {
  tmp = await mkdtemp(join(os.tmpdir(), 'musc-bank-'));
  const opened = await openBackbone();
  backbone = opened.backbone;
  cfg = resolveConfig({ imageSize: opened.imageSize });
  const pick = async (sub: string, n: number) => (await readdir(join(BOTTLE, 'test', sub))).sort().slice(0, n).map((f) => join(BOTTLE, 'test', sub, f));
  const files = [...(await pick('broken_large', 3)), ...(await pick('good', 7)), ...(await pick('contamination', 2))];
  features = (await extractFeatures(files, backbone, cfg)).features;
  assert.equal(features.length, 12);
});
after(async () => {
  await backbone?.dispose();
  await rm(tmp, { recursive: true, force: true });
});

const bankOf = (f: readonly ImageFeatures[], encoding: 'int8' | 'fp16' | 'fp32' = 'int8', c: MuscConfig = cfg) =>
  buildBank(f, c, { backbone: bankBackboneOf(backbone, {}, null), encoding });

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/** Largest |component| of each image's LNAMD vectors per (layer, r), in bank set order (one unit: no tiles): the range int8 codes must cover. */
function lnamdMaxAbs(f: ImageFeatures, c: MuscConfig): number[] {
  return c.layers.flatMap((_, l) =>
    c.rList.map((r) => {
      let m = 0;
      for (const v of lnamd(f.units[0][l], r).data) m = Math.max(m, Math.abs(v));
      return m;
    }),
  );
}

/**
 * Images whose vectors lie within the range of the other images' (so a bank of the others
 * holds the batch's int8 codes), and images that exceed it (they hold some set's largest component).
 */
function splitByRange(c: MuscConfig): { within: number[]; beyond: number[] } {
  const maxima = features.map((f) => lnamdMaxAbs(f, c));
  const within: number[] = [];
  const beyond: number[] = [];
  maxima.forEach((m, q) => {
    const othersMax = m.map((_, k) => Math.max(...maxima.filter((_, j) => j !== q).map((x) => x[k])));
    (m.every((v, k) => v <= othersMax[k]) ? within : beyond).push(q);
  });
  return { within, beyond };
}

/** Scores image q against a bank of the other images; checks RsCIN against the batch formula. */
async function scoreAsNew(q: number, encoding: 'int8' | 'fp32', c: MuscConfig) {
  const others = features.filter((_, i) => i !== q);
  const bank = await bankOf(others, encoding, c);
  const res = await scoreAgainstBank([features[q]], bank, { precision: c.precision });
  // RsCIN against the bank's frozen scores = the batch formula with those scores.
  const emb = new Float32Array((others.length + 1) * bank.embeddingDim);
  others.forEach((f, i) => emb.set(f.embedding, i * bank.embeddingDim));
  emb.set(features[q].embedding, others.length * bank.embeddingDim);
  const expected = rscin([...bank.images.map((im) => im.score), res.imageScores[0]], emb, bank.embeddingDim, cfg.kList, { cosine: true });
  assert.ok(Math.abs(res.scores[0] - expected[others.length]) < 1e-12, `RsCIN of image ${q}`);
  return { bank, res };
}

/** Two images of each kind (within / beyond the others' int8 range); both kinds occur among these 12 bottle images. */
function picks(c: MuscConfig): { q: number; inRange: boolean }[] {
  const { within, beyond } = splitByRange(c);
  assert.ok(within.length >= 2 && beyond.length >= 2, `images within the others' range: ${within}; beyond: ${beyond}`);
  return [...within.slice(0, 2).map((q) => ({ q, inRange: true })), ...beyond.slice(0, 2).map((q) => ({ q, inRange: false }))];
}

/**
 * The batch with image q first: a batch measures each image pair once with the earlier image on
 * the query side (int8 sides round with their own dithers, pipeline/pairwise.ts), and a new image
 * scored against a bank is on the query side of all its pairs, as the first image of a batch is.
 */
async function batchWithFirst(q: number, c: MuscConfig): Promise<{ map: Float32Array; imageScore: number }> {
  const batch = await scoreFeatures([features[q], ...features.filter((_, i) => i !== q)], c);
  return { map: batch.maps[0], imageScore: batch.imageScores[0] };
}

for (const precision of ['int8', 'fp32'] as const) {
  test(`a new image scored in ${precision} against an fp32-stored bank of the other images of a batch gets bit-identical batch scores`, async () => {
    const c = resolveConfig({ ...cfg, precision });
    // Images beyond the others' range too: float banks are requantised at the batch's scale in int8.
    for (const { q } of picks(c)) {
      const { res } = await scoreAsNew(q, 'fp32', c);
      const batch = await batchWithFirst(q, c);
      assert.equal(maxAbsDiff(res.maps[0], batch.map), 0, `map of image ${q}`);
      assert.equal(res.imageScores[0], batch.imageScore, `image score of image ${q}`);
    }
  });
}

/** Image score change of an image beyond the bank's int8 range: ~10x the largest measured over these 12 images (1.9e-4). */
const BEYOND_RANGE_TOL = 2e-3;

test("a new image scored against the default int8-stored bank: bit-identical when it lies within the bank's range, image score within 0.2 % when it exceeds it", async () => {
  const c = resolveConfig({ ...cfg, precision: 'int8' });
  for (const { q, inRange } of picks(c)) {
    const { bank, res } = await scoreAsNew(q, 'int8', c);
    const batch = await batchWithFirst(q, c);
    const qMax = lnamdMaxAbs(features[q], c);
    assert.equal(qMax.every((m, k) => m <= bank.sets[k].maxAbs), inRange, `image ${q}: the bank's stored range agrees with the split`);
    const dMap = maxAbsDiff(res.maps[0], batch.map);
    const dScore = Math.abs(res.imageScores[0] - batch.imageScore) / batch.imageScore;
    process.stderr.write(`# int8-stored bank, image ${q}: ${inRange ? 'within' : 'beyond'} the bank's range, max map diff ${dMap.toExponential(2)}, image score rel diff ${dScore.toExponential(2)}\n`);
    if (inRange) {
      assert.equal(dMap, 0, `image ${q} lies within the bank's int8 range: its map must equal the batch's bit for bit`);
      assert.equal(res.imageScores[0], batch.imageScore, `image ${q}: image score`);
    } else {
      // The bank keeps its codes (requantising codes would add error), so the new image is clamped at the bank's scale.
      assert.ok(dScore < BEYOND_RANGE_TOL, `image ${q} exceeds the bank's int8 range: image score differs by ${dScore.toExponential(2)} (bound ${BEYOND_RANGE_TOL})`);
    }
  }
});

test('rscinAgainstBank equals the full RsCIN row for the new image (cosine and dot; the reference windows and the own score)', async () => {
  const bank = await bankOf(features.slice(1));
  for (const [sim, kList] of [['cosine', bank.config.kList], ['dot', bank.config.kList], ['cosine', [1]], ['dot', [1]]] as const) {
    const b: Bank = { ...bank, config: { ...bank.config, embeddingSimilarity: sim, kList } };
    const raw = 0.37;
    const emb = new Float32Array(features.length * b.embeddingDim);
    features.slice(1).forEach((f, i) => emb.set(f.embedding, i * b.embeddingDim));
    emb.set(features[0].embedding, (features.length - 1) * b.embeddingDim);
    const full = rscin([...b.images.map((im) => im.score), raw], emb, b.embeddingDim, b.config.kList, { cosine: sim === 'cosine' });
    assert.ok(Math.abs(rscinAgainstBank(raw, features[0].embedding, b) - full[features.length - 1]) < 1e-9);
  }
});

test('bank files round-trip, and corrupt, truncated, foreign or other-version files are clear errors', async () => {
  const bank = await bankOf(features.slice(0, 6));
  const bytes = encodeBank(bank);
  const back = decodeBank(bytes);
  assert.deepEqual(back.images, bank.images);
  assert.deepEqual(back.config, bank.config);
  assert.deepEqual(Array.from(back.sets[0].data), Array.from(bank.sets[0].data));
  assert.deepEqual(Array.from(back.embeddings), Array.from(bank.embeddings));
  const flipped = bytes.slice();
  flipped[bytes.length >> 1] ^= 1;
  assert.throws(() => decodeBank(flipped, 'x.mbank'), (e: unknown) => e instanceof BankError && /corrupt/.test(e.message));
  assert.throws(() => decodeBank(bytes.subarray(0, bytes.length - 100), 'x.mbank'), BankError);
  assert.throws(() => decodeBank(new TextEncoder().encode('PK\u0003\u0004 definitely not a bank, just some zip bytes here....................'), 'x.mbank'), /not a musc-ts feature bank/);
  const v3 = bytes.slice();
  new DataView(v3.buffer).setUint32(8, 3, true);
  assert.throws(() => decodeBank(v3, 'x.mbank'), /version 3; this musc-ts reads versions 1 and 2/);
  assert.throws(() => assertCompatible(bank, { ...cfg, imageSize: 320 }, backbone.id), /image size 224 vs 320/);
  assert.throws(() => assertCompatible(bank, { ...cfg, layers: ['layer3'] }, backbone.id), /layers/);
  await assert.rejects(Musc.open({ bank: { ...bank, backbone: { kind: 'resnet50', id: 'resnet50-other' } } }), BankError);
});

test("image score excess in banks: the bank keeps its batch's typical map (unlabeled: its own scoring; good: the leave-one-out maps), scores new images by it, keeps it on update and round-trips it", async () => {
  const c = resolveConfig({ ...cfg, imageScore: 'excess' });
  const others = features.slice(1);
  const bank = await bankOf(others, 'int8', c);
  const own = await scoreFeatures(others, c);
  assert.equal(bank.config.imageScore, 'excess');
  assert.deepEqual(bank.typical, own.typical);
  assert.deepEqual(
    bank.images.map((im) => im.score),
    Array.from(own.imageScores),
  );
  const res = await scoreAgainstBank([features[0]], bank);
  assert.equal(res.imageScores[0], excessScore(res.maps[0], bank.typical!));
  // Heatmaps of new images are drawn in map units: the scale spans the bank images' map maxima.
  assert.deepEqual(bank.heatScale, heatScaleOfMaps(own.maps));
  assert.deepEqual(bankHeatScale(bank), bank.heatScale);
  assert.ok(bank.heatScale!.high > Math.max(...bank.images.map((im) => im.score)), 'not the excess scores');
  // A bank of the paper's max: the same map, its max as the score.
  const plainBank = await bankOf(others, 'int8', cfg);
  const plain = await scoreAgainstBank([features[0]], plainBank);
  assert.deepEqual(plain.maps[0], res.maps[0]);
  assert.equal(plain.imageScores[0], imageScore(res.maps[0]));
  assert.notEqual(plain.imageScores[0], res.imageScores[0]);
  const back = decodeBank(encodeBank(bank));
  assert.deepEqual(back.typical, bank.typical);
  assert.equal(back.config.imageScore, 'excess');
  assert.equal(decodeBank(encodeBank(plainBank)).typical, undefined);
  // Format 2 only where the typical map is: musc-ts before it refuses such a bank instead of scoring it by the max.
  const versionOf = (b: Bank) => new DataView(encodeBank(b).buffer).getUint32(8, true);
  assert.deepEqual([versionOf(bank), bank.version, back.version], [2, 2, 2]);
  assert.deepEqual([versionOf(plainBank), plainBank.version], [1, 1]);
  // The rule and the map must agree: a bank that says excess but lost its map, or holds a map but
  // says max, is refused (neither written nor scored by the wrong rule).
  const { typical: _t, ...withoutMap } = bank;
  assert.throws(() => encodeBank(withoutMap), /excess without its typical map/);
  await assert.rejects(scoreAgainstBank([features[0]], withoutMap), /excess without its typical map/);
  assert.throws(() => encodeBank({ ...plainBank, typical: bank.typical }), /holds a typical map but scores by the max/);
  assert.throws(() => encodeBank({ ...bank, typical: bank.typical!.subarray(1) }), /the typical map has/);
  // A format-1 file that says excess (written by hand: the version, then the checksum again).
  const v1 = encodeBank(bank).slice();
  new DataView(v1.buffer).setUint32(8, 1, true);
  v1.set(createHash('sha256').update(v1.subarray(0, v1.length - 32)).digest(), v1.length - 32);
  assert.throws(() => decodeBank(v1, 'x.mbank'), /format version 1 cannot hold image score excess/);
  // Cut inside the typical map (the last section): decode refuses it, inspect says truncated.
  const cut = encodeBank(bank).subarray(0, encodeBank(bank).length - 32 - 1000);
  assert.throws(() => decodeBank(cut, 'x.mbank'), BankError);
  assert.equal(inspectBank(cut).checksum, 'truncated');
  // Banks written before the rule existed (no imageScore, no heatScale): the max, and the old heat scale.
  const { imageScore: _r, ...oldConfig } = plainBank.config;
  const { heatScale: _h, ...oldBank } = { ...plainBank, config: oldConfig };
  const old = decodeBank(encodeBank(oldBank));
  assert.equal(old.config.imageScore, undefined);
  assert.deepEqual(Array.from((await scoreAgainstBank([features[0]], old)).imageScores), Array.from(plain.imageScores));
  const scores = old.images.map((im) => im.score);
  assert.deepEqual(bankHeatScale(old), { low: 0.5 * Math.min(...scores), high: Math.max(...scores) });
  const good = await buildBank(others, c, { backbone: bankBackboneOf(backbone, {}, null), reference: 'good' });
  const loo = await scoreAgainstBank(others, { ...good, config: { ...good.config, imageScore: 'max' }, typical: undefined }, { excludeBankIndex: others.map((_, i) => i) });
  assert.deepEqual(good.typical, typicalMap(loo.maps));
  assert.deepEqual(
    good.images.map((im) => im.score),
    loo.maps.map((m) => excessScore(m, good.typical!)),
  );
  assert.deepEqual(good.heatScale, heatScaleOfMaps(loo.maps));
  assert.equal(appendToBank(bank, [features[0]], [res.imageScores[0]]).typical, bank.typical, 'kept on update, like the threshold');
});

test('fp16 storage: half-precision conversion, scores close to fp32', async () => {
  for (const v of [0, 1, -1, 0.1, 1e-5, 65504, 3.14159, -0.000123]) {
    const back = fromHalf(toHalf(v));
    assert.ok(Math.abs(back - v) <= Math.abs(v) * 2 ** -11 + 6e-8, `${v} -> ${back}`);
  }
  const f32 = await scoreAgainstBank([features[0]], await bankOf(features.slice(1), 'fp32'), { precision: 'fp32' });
  const f16 = await scoreAgainstBank([features[0]], await bankOf(features.slice(1), 'fp16'), { precision: 'fp32' });
  // Near-duplicate patches amplify storage error through √(2 − 2s); the image score moves far less.
  assert.ok(maxAbsDiff(f16.maps[0], f32.maps[0]) < 0.01 * f32.imageScores[0], `max map diff ${maxAbsDiff(f16.maps[0], f32.maps[0])}`);
  assert.ok(Math.abs(f16.imageScores[0] - f32.imageScores[0]) < 0.002 * f32.imageScores[0]);
});

test('rolling update keeps the newest images and their vectors', async () => {
  const bank = await bankOf(features.slice(0, 6));
  const grown = appendToBank(bank, features.slice(6, 9), [0.1, 0.2, 0.3], 7);
  assert.equal(grown.images.length, 7);
  assert.deepEqual(
    grown.images.map((i) => i.name),
    [...features.slice(2, 6), ...features.slice(6, 9)].map((f) => f.file.split('/').pop()),
  );
  const per = bank.sets[0].patches * bank.sets[0].channels;
  assert.deepEqual(Array.from(grown.sets[0].data.subarray(0, per)), Array.from(bank.sets[0].data.subarray(2 * per, 3 * per)));
  assert.equal(grown.embeddings.length, 7 * bank.embeddingDim);
  assert.deepEqual(Array.from(grown.embeddings.subarray(0, bank.embeddingDim)), Array.from(features[2].embedding));
  // What was added scores like a bank built from the same images (up to int8 clamping at the old scale).
  const rebuilt = await bankOf([...features.slice(2, 9)]);
  const a = await scoreAgainstBank([features[10]], grown);
  const b = await scoreAgainstBank([features[10]], rebuilt);
  assert.ok(Math.abs(a.imageScores[0] - b.imageScores[0]) < 0.02 * b.imageScores[0]);
});

test('few-shot bank of known-good images: leave-one-out scores, defects score higher than good images', async () => {
  const trainDir = join(BOTTLE, 'train', 'good');
  const train = (await readdir(trainDir)).sort().map((f) => join(trainDir, f));
  const good = (await extractFeatures(train.slice(0, 8), backbone, cfg)).features;
  const bank = await buildBank(good, cfg, { backbone: bankBackboneOf(backbone, {}, null), reference: 'good' });
  assert.equal(bank.reference, 'good');
  assert.ok(bank.images.every((im) => im.score > 0 && Number.isFinite(im.score)));
  assert.ok(Number.isFinite(bank.threshold.value));
  const res = await scoreAgainstBank([features[0], features[1], features[3], features[4]], bank); // 2 broken, 2 good
  assert.deepEqual(Array.from(res.scores), Array.from(res.imageScores), 'no RsCIN for good banks');
  assert.ok(Math.min(res.scores[0], res.scores[1]) > Math.max(res.scores[2], res.scores[3]), `scores ${Array.from(res.scores).map((s) => s.toFixed(3))}`);
});

test('musc bank build and musc score: JSON results, rolling --update, corrupt bank is exit 2', async () => {
  const env = { ...process.env };
  const bankFile = join(tmp, 'line.mbank');
  const goodDir = join(BOTTLE, 'test', 'good');
  const build = await execFileAsync(process.execPath, [MUSC_BIN, 'bank', 'build', goodDir, '--out', bankFile], { env, maxBuffer: 1 << 24 });
  assert.match(build.stdout, /bank .*line\.mbank: 20 unlabeled images/);
  const defect = join(BOTTLE, 'test', 'broken_large', '000.png');
  const score = await execFileAsync(process.execPath, [MUSC_BIN, 'score', '--bank', bankFile, defect, join(goodDir, '000.png'), '--json', '--out', join(tmp, 'scored')], { env, maxBuffer: 1 << 24 });
  const res = JSON.parse(score.stdout) as { bankImages: number; results: { path: string; score: number; decision: string }[] };
  assert.equal(res.bankImages, 20);
  assert.equal(res.results.length, 2);
  assert.ok(res.results[0].score > res.results[1].score, 'the broken bottle scores higher than a good one');
  const csv = await readFile(join(tmp, 'scored', 'scores.csv'), 'utf8');
  assert.equal(csv.trim().split('\n').length, 3);
  // The same outputs as `musc run`: overlays/, maps/, scores.json with the bank in its metadata, report.html.
  assert.equal((await readdir(join(tmp, 'scored', 'overlays'))).length, 2);
  assert.equal((await readdir(join(tmp, 'scored', 'maps'))).length, 2);
  const json = JSON.parse(await readFile(join(tmp, 'scored', 'scores.json'), 'utf8')) as { command: string; bank: { images: number; reference: string }; resolution: { width: number; height: number; rule: string }; images: unknown[] };
  assert.equal(json.command, 'score');
  assert.deepEqual([json.bank.images, json.bank.reference], [20, 'unlabeled']);
  assert.deepEqual([json.resolution.width, json.resolution.height], [224, 224]);
  assert.match(json.resolution.rule, /square 224x224/, 'the report states how the working size was chosen');
  assert.equal(json.images.length, 2);
  const html = await readFile(join(tmp, 'scored', 'report.html'), 'utf8');
  assert.ok(html.includes('000.png') && html.includes('</html>'));
  await execFileAsync(process.execPath, [MUSC_BIN, 'score', '--bank', bankFile, defect, '--update', '--max-bank', '20', '--json'], { env });
  const updated = decodeBank(new Uint8Array(await readFile(bankFile)));
  assert.equal(updated.images.length, 20);
  assert.equal(updated.images[19].name, '000.png');
  const bytes = await readFile(bankFile);
  bytes[100] ^= 0xff;
  await writeFile(bankFile, bytes);
  await assert.rejects(
    execFileAsync(process.execPath, [MUSC_BIN, 'score', '--bank', bankFile, defect], { env }),
    (e: { code?: number; stderr?: string }) => e.code === 2 && /corrupt/.test(e.stderr ?? ''),
  );
});
