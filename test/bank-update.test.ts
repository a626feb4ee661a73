/**
 * The bank scorer's update path in the library: saves from several scorers on one file
 * merge instead of overwriting each other, updates that would leave a bank unusable are
 * refused, results name the bank they were scored against, failures keep input order.
 * Synthetic plates and the bundled ResNet50 (no ../shared needed).
 */
import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { openBackbone } from '../src/backbone/open.js';
import { buildBank } from '../src/bank/bank.js';
import { BankError, MIN_BANK_IMAGES, readBank, writeBank, type Bank } from '../src/bank/format.js';
import { Musc } from '../src/api/musc.js';
import { bankBackboneOf } from '../src/bank/scorer.js';
import { ConfigError } from '../src/errors.js';
import { extractFeatures, resolveConfig } from '../src/pipeline/musc.js';
import { writePlates } from './robustness/harness.js';

let tmp = '';
let bank: Bank;
let goodBank: Bank;
let uploads: string[] = [];

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'musc-bank-update-'));
  const ref = await writePlates(tmp, 'ref', 6, 7);
  const up = await writePlates(tmp, 'up', 4, 21);
  uploads = (await readdir(up)).sort().map((f) => path.join(up, f));
  // Image score excess, as `musc bank build` makes banks by default: merges must keep the typical map.
  const cfg = resolveConfig({ imageScore: 'excess' });
  const { backbone } = await openBackbone();
  try {
    const files = (await readdir(ref)).sort().map((f) => path.join(ref, f));
    const { features } = await extractFeatures(files, backbone, cfg);
    bank = await buildBank(features, cfg, { backbone: bankBackboneOf(backbone, {}, null) });
    goodBank = await buildBank(features, cfg, { backbone: bankBackboneOf(backbone, {}, null), reference: 'good' });
  } finally {
    await backbone.dispose();
  }
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('an unlabeled bank stores the vectors its own mutual scoring made: the same sets as computed apart (a good bank)', () => {
  assert.equal(bank.sets.length, 6);
  const bytes = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  bank.sets.forEach(({ data, ...meta }, i) => {
    const { data: apart, ...metaApart } = goodBank.sets[i];
    assert.deepEqual(meta, metaApart);
    // Compared as bytes: a failing deepEqual of millions of codes would print (and build) a giant diff.
    assert.ok(bytes(data).equals(bytes(apart)), `set ${meta.layer} r=${meta.r}: stored codes differ from the vectors computed apart`);
  });
});

test('two scorers updating one bank file both keep their images (save merges under a lock)', async () => {
  const file = path.join(tmp, 'shared.mbank');
  await writeBank(file, bank);
  const a = await Musc.open({ bank: file });
  const b = await Musc.open({ bank: file });
  try {
    await a.score([uploads[0]], { update: true });
    await b.score([uploads[1], uploads[2]], { update: true });
    await a.save(file);
    assert.equal(a.bank.images.length, 7);
    await b.save(file); // b's in-memory bank never saw a's image: the save re-reads the file and adds b's two
    assert.equal(b.bank.images.length, 9, "b's bank after saving is what the file holds");
    const onDisk = await readBank(file);
    assert.deepEqual(onDisk.images.slice(6).map((im) => im.name), [uploads[0], uploads[1], uploads[2]].map((f) => path.basename(f)));
    assert.ok(onDisk.typical && Buffer.from(onDisk.typical.buffer).equals(Buffer.from(bank.typical!.buffer)), 'the typical map survives the merges');
    assert.deepEqual(onDisk.heatScale, bank.heatScale);
    // Saving again adds nothing twice.
    await b.save(file);
    assert.equal((await readBank(file)).images.length, 9);
    // a saves a later update on top of b's.
    await a.score([uploads[3]], { update: true, maxBank: 8 });
    await a.save(file);
    const last = await readBank(file);
    assert.equal(last.images.length, 8);
    assert.equal(last.images[7].name, path.basename(uploads[3]));
    assert.equal(last.images[0].name, bank.images[2].name, 'the window dropped the two oldest');
    assert.deepEqual((await readdir(tmp)).filter((f) => /\.lock$|\.tmp-/.test(f)), []);
  } finally {
    await a.dispose();
    await b.dispose();
  }
});

test('save refuses to merge into a bank rebuilt since (another typical map): its scores were measured against the old one', async () => {
  const file = path.join(tmp, 'rebuilt.mbank');
  await writeBank(file, { ...bank, typical: bank.typical!.map((v) => v + 0.01) });
  const before = await readFile(file);
  const s = await Musc.open({ bank });
  try {
    await s.score([uploads[0]], { update: true });
    await assert.rejects(s.save(file), (e: unknown) => e instanceof BankError && /another bank \(typical map/.test(e.message));
    assert.deepEqual(await readFile(file), before, 'the file is untouched');
  } finally {
    await s.dispose();
  }
});

test('save through a symbolic link whose target does not exist yet writes the target and keeps the link', async () => {
  await mkdir(path.join(tmp, 'store'));
  const link = path.join(tmp, 'line-b.mbank');
  await symlink(path.join('store', 'line-b.mbank'), link);
  const s = await Musc.open({ bank });
  try {
    await s.save(link);
  } finally {
    await s.dispose();
  }
  assert.ok((await lstat(link)).isSymbolicLink(), 'the link is still a link');
  assert.equal((await readBank(path.join(tmp, 'store', 'line-b.mbank'))).images.length, bank.images.length, 'the bank went to the target');
});

test('save refuses to merge into a file that holds a bank of another kind', async () => {
  const file = path.join(tmp, 'other.mbank');
  await writeBank(file, goodBank);
  const before = await readFile(file);
  const s = await Musc.open({ bank });
  try {
    await s.score([uploads[0]], { update: true });
    await assert.rejects(s.save(file), (e: unknown) => e instanceof BankError && /another bank/.test(e.message));
    assert.deepEqual(await readFile(file), before, 'the file is untouched');
    // A new file gets the scorer's bank.
    await s.save(path.join(tmp, 'fresh.mbank'));
    assert.equal((await readBank(path.join(tmp, 'fresh.mbank'))).images.length, 7);
  } finally {
    await s.dispose();
  }
});

test('an update that would leave the bank below its minimum is refused, the bank unchanged', async () => {
  assert.deepEqual(MIN_BANK_IMAGES, { unlabeled: 4, good: 1 });
  const s = await Musc.open({ bank });
  try {
    await assert.rejects(s.score([uploads[0]], { update: true, maxBank: 3 }), (e: unknown) => e instanceof ConfigError && /maxBank 3 .*at least 4/.test(e.message));
    assert.equal(s.bank.images.length, 6);
    const r = await s.score([uploads[0]], { update: true, maxBank: 4 });
    assert.equal(r.bankImages, 6, 'scored against the 6 images the bank held');
    assert.equal(s.bank.images.length, 4);
  } finally {
    await s.dispose();
  }
  const g = await Musc.open({ bank: goodBank });
  try {
    await g.score([uploads[0]], { update: true, maxBank: 1 });
    assert.equal(g.bank.images.length, 1, 'a good bank works with one image');
  } finally {
    await g.dispose();
  }
});

test('failures come back in input order, not in the order decoding failed', async () => {
  // A large PNG cut short fails late (after decoding most of it); an empty buffer fails at once.
  const big = await sharp({ create: { width: 3000, height: 3000, channels: 3, background: { r: 0, g: 0, b: 0 }, noise: { type: 'gaussian', mean: 128, sigma: 40 } } }).png({ compressionLevel: 1 }).toBuffer();
  const cut = new Uint8Array(big.subarray(0, Math.floor(big.length * 0.95)));
  const s = await Musc.open({ bank });
  try {
    const inputs = [
      { name: 'slow-to-fail.png', bytes: cut },
      uploads[0],
      { name: 'empty.png', bytes: new Uint8Array(0) },
      path.join(tmp, 'does-not-exist.png'),
      { name: 'text.png', bytes: new TextEncoder().encode('not an image') },
    ];
    const { results, failures, bankImages } = await s.score(inputs);
    assert.deepEqual(failures.map((f) => path.basename(f.file)), ['slow-to-fail.png', 'empty.png', 'does-not-exist.png', 'text.png']);
    assert.deepEqual(results.map((r) => r.name), [uploads[0]]);
    assert.equal(bankImages, 6);
  } finally {
    await s.dispose();
  }
});

test('scoring in chunks gives the same results as one chunk (fp32), in input order, and an update adds every chunk', async () => {
  const inputs = [uploads[0], { name: 'bad.png', bytes: new Uint8Array(0) }, uploads[1], uploads[2], uploads[3]];
  const one = await Musc.open({ bank, precision: 'fp32' });
  const chunked = await Musc.open({ bank, precision: 'fp32' });
  try {
    const a = await one.score(inputs, { update: true });
    // Chunks of 2: [u0, bad], [u1, u2], [u3]. Each is scored against the bank as the call found it,
    // not against the chunks before it (which the update adds only at the end).
    const b = await chunked.score(inputs, { update: true, chunk: 2 });
    assert.deepEqual(b.results.map((r) => r.name), uploads.slice(0, 4));
    assert.equal(a.results.length, 4);
    assert.deepEqual(b.failures.map((f) => f.file), ['bad.png']);
    assert.equal(b.bankImages, 6);
    for (const [i, r] of b.results.entries()) {
      assert.equal(r.score, a.results[i].score, r.name);
      assert.equal(r.imageScore, a.results[i].imageScore, r.name);
      assert.deepEqual(r.map, a.results[i].map, r.name);
    }
    assert.equal(chunked.bank.images.length, 10, 'the update holds the images of every chunk');
    assert.deepEqual(chunked.bank.images.map((im) => im.score), one.bank.images.map((im) => im.score));
  } finally {
    await one.dispose();
    await chunked.dispose();
  }
  await assert.rejects(Musc.open({ bank }).then(async (s) => s.score([uploads[0]], { chunk: 0 }).finally(() => s.dispose())), (e: unknown) => e instanceof ConfigError && /chunk/.test(e.message));
  // A rolling window smaller than the images added: chunks keep only the last maxBank, with the same bank.
  const whole = await Musc.open({ bank: goodBank, precision: 'fp32' });
  const ones = await Musc.open({ bank: goodBank, precision: 'fp32' });
  try {
    await whole.score(uploads, { update: true, maxBank: 2 });
    await ones.score(uploads, { update: true, maxBank: 2, chunk: 1 });
    assert.deepEqual(ones.bank.images.map((im) => im.name), uploads.slice(2).map((f) => path.basename(f)));
    assert.deepEqual(ones.bank.images, whole.bank.images);
  } finally {
    await whole.dispose();
    await ones.dispose();
  }
});

test('in int8, chunks differ from one chunk by rounding only: the query side quantises at the larger of the bank\'s and the chunk\'s range', async () => {
  const s = await Musc.open({ bank });
  try {
    const a = await s.score(uploads);
    const b = await s.score(uploads, { chunk: 1 });
    assert.ok(b.results.length === uploads.length && a.results.length === uploads.length, 'every upload scored in both');
    for (const [i, r] of b.results.entries()) {
      const m = a.results[i].map;
      let lo = Infinity;
      let hi = -Infinity;
      let worst = 0;
      for (let p = 0; p < m.length; p++) {
        lo = Math.min(lo, m[p]);
        hi = Math.max(hi, m[p]);
        worst = Math.max(worst, Math.abs(m[p] - r.map[p]));
      }
      assert.ok(worst <= 0.01 * (hi - lo), `${r.name}: maps within 1 % of their range (${(worst / (hi - lo)).toFixed(4)})`);
    }
  } finally {
    await s.dispose();
  }
});
