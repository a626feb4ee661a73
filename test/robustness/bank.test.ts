/**
 * Robustness table: banks on the command line — concurrent updates, updates that would
 * leave a bank unusable, stale locks, and `musc bank info` on healthy, corrupt, truncated
 * and foreign files. One row per case; see harness.ts. Banks come from `bankFixture`
 * (synthetic plates, built once per run).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, rename, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { decodeBank } from '../../src/bank/format.js';
import { cliCases, copyBank, writePlates } from './harness.js';

/** Writes `n` synthetic plates not in the bank as `new/n0.png`, `new/n1.png`, ... */
async function newImages(dir: string, n: number): Promise<void> {
  const src = await writePlates(dir, '.new', n, 21);
  await mkdir(path.join(dir, 'new'));
  for (const [i, f] of (await readdir(src)).sort().entries()) await rename(path.join(src, f), path.join(dir, 'new', `n${i}.png`));
}

const bankAt = async (dir: string, name = 'bank.mbank') => decodeBank(new Uint8Array(await readFile(path.join(dir, name))));
const sha = async (file: string) => createHash('sha256').update(await readFile(file)).digest('hex');
const heldCounts = (outs: readonly { stderr: string }[]) => outs.map((o) => Number(/now holds (\d+) images/.exec(o.stderr)?.[1])).sort((a, b) => a - b);

/** A bank file with one payload byte flipped (the header still parses). */
async function corruptBank(dir: string): Promise<void> {
  const file = await copyBank(dir);
  const bytes = await readFile(file);
  bytes[bytes.length - 1000] ^= 0xff;
  await writeFile(file, bytes);
}

let before = '';

cliCases('bank', [
  {
    name: 'four concurrent `score --update` processes on one bank leave exactly four more images, each message true',
    setup: async (dir) => {
      await copyBank(dir);
      await newImages(dir, 4);
    },
    parallel: 4,
    args: (_dir, i) => ['score', '--bank', 'bank.mbank', `new/n${i}.png`, '--update'],
    expect: {
      exit: 0,
      stderr: /bank bank\.mbank now holds \d+ images/,
      check: async (dir, _out, all) => {
        const bank = await bankAt(dir);
        assert.equal(bank.images.length, 6 + 4);
        assert.deepEqual(bank.images.slice(6).map((im) => im.name).sort(), ['n0.png', 'n1.png', 'n2.png', 'n3.png']);
        assert.deepEqual(heldCounts(all), [7, 8, 9, 10], 'each process reports the count after its own update');
        assert.deepEqual((await readdir(dir)).filter((f) => /\.lock$|\.tmp-/.test(f)), [], 'no lock or temporary file left');
      },
    },
    timeout: 240_000,
  },
  {
    name: '`--update --max-bank 3` on a 6-image unlabeled bank is refused before scoring, the bank untouched',
    setup: async (dir) => {
      before = await sha(await copyBank(dir));
      await newImages(dir, 1);
    },
    args: ['score', '--bank', 'bank.mbank', 'new/n0.png', '--update', '--max-bank', '3'],
    expect: {
      exit: 2,
      stderr: /--max-bank 3 .*unlabeled bank needs at least 4/,
      check: async (dir) => assert.equal(await sha(path.join(dir, 'bank.mbank')), before, 'bank unchanged'),
    },
  },
  {
    name: '`--max-bank` without `--update` is refused (it would be silently ignored)',
    setup: async (dir) => {
      await copyBank(dir);
      await newImages(dir, 1);
    },
    args: ['score', '--bank', 'bank.mbank', 'new/n0.png', '--max-bank', '5'],
    expect: { exit: 2, stderr: /--max-bank applies to --update/ },
  },
  {
    name: 'with `--update --max-bank 5` the output names the 6 bank images used, then the 5 kept',
    setup: async (dir) => {
      await copyBank(dir);
      await newImages(dir, 1);
    },
    args: ['score', '--bank', 'bank.mbank', 'new/n0.png', '--update', '--max-bank', '5'],
    expect: {
      exit: 0,
      stdout: /1 scored against 6 bank images/,
      stderr: /bank bank\.mbank now holds 5 images \(1 added, 2 oldest dropped\)/,
      check: async (dir) => assert.equal((await bankAt(dir)).images.length, 5),
    },
  },
  {
    name: '`--json` reports the bank images used and the count after the update',
    setup: async (dir) => {
      await copyBank(dir);
      await newImages(dir, 2);
    },
    args: ['score', '--bank', 'bank.mbank', 'new/n0.png', 'new/n1.png', '--update', '--max-bank', '7', '--json'],
    expect: {
      exit: 0,
      check: (_dir, out) => {
        const j = JSON.parse(out.stdout) as { bankImages: number; bankImagesAfterUpdate: number };
        assert.equal(j.bankImages, 6);
        assert.equal(j.bankImagesAfterUpdate, 7);
      },
    },
  },
  {
    name: 'a good bank may shrink to one image (its minimum)',
    setup: async (dir) => {
      await copyBank(dir, { images: 3, reference: 'good' });
      await newImages(dir, 1);
    },
    args: ['score', '--bank', 'bank.mbank', 'new/n0.png', '--update', '--max-bank', '1'],
    expect: { exit: 0, stderr: /now holds 1 images/, check: async (dir) => assert.equal((await bankAt(dir)).images.length, 1) },
  },
  {
    name: '`score --update` through a symbolic link updates the bank it points to and keeps the link',
    setup: async (dir) => {
      await mkdir(path.join(dir, 'banks'));
      await copyBank(path.join(dir, 'banks'));
      await symlink(path.join('banks', 'bank.mbank'), path.join(dir, 'line.mbank'));
      await newImages(dir, 1);
    },
    args: ['score', '--bank', 'line.mbank', 'new/n0.png', '--update'],
    expect: {
      exit: 0,
      stderr: /now holds 7 images/,
      check: async (dir) => {
        assert.ok((await lstat(path.join(dir, 'line.mbank'))).isSymbolicLink(), 'the link is still a link');
        assert.equal((await bankAt(path.join(dir, 'banks'))).images.length, 7, 'the bank it points to holds the new image');
        assert.deepEqual((await readdir(path.join(dir, 'banks'))).sort(), ['bank.mbank'], 'no lock or temporary file left beside the bank');
        assert.deepEqual((await readdir(dir)).filter((f) => /\.lock$|\.tmp-/.test(f)), [], 'nor beside the link');
      },
    },
  },
  {
    name: 'a stale lock left by a crashed process does not block an update',
    setup: async (dir) => {
      await copyBank(dir);
      await newImages(dir, 1);
      const lock = path.join(dir, 'bank.mbank.lock');
      await mkdir(lock);
      const old = new Date(Date.now() - 10 * 60_000);
      await utimes(lock, old, old);
    },
    args: ['score', '--bank', 'bank.mbank', 'new/n0.png', '--update'],
    expect: { exit: 0, stderr: /now holds 7 images/, absent: ['bank.mbank.lock'] },
  },
  {
    name: '`--update` on a corrupt bank: exit 2, the file untouched',
    setup: async (dir) => {
      await corruptBank(dir);
      before = await sha(path.join(dir, 'bank.mbank'));
      await newImages(dir, 1);
    },
    args: ['score', '--bank', 'bank.mbank', 'new/n0.png', '--update'],
    expect: { exit: 2, stderr: /corrupt/, check: async (dir) => assert.equal(await sha(path.join(dir, 'bank.mbank')), before) },
  },
  {
    name: '`bank build --reference good --threshold-method otsu` keeps the explicit rule (the default for good banks is MAD)',
    setup: (dir) => writePlates(dir, 'ref', 3, 7).then(() => undefined),
    args: ['bank', 'build', 'ref', '--reference', 'good', '--threshold-method', 'otsu', '--out', 'good.mbank'],
    expect: { exit: 0, stdout: /threshold [\d.]+ \(Otsu split\)/, check: async (dir) => assert.equal((await bankAt(dir, 'good.mbank')).threshold.method, 'Otsu split') },
  },
  {
    name: '`bank build --refine` is refused before the model loads (a bank stores one size)',
    setup: (dir) => writePlates(dir, 'ref', 5, 7).then(() => undefined),
    args: ['bank', 'build', 'ref', '--refine', '0.1', '--out', 'b.mbank'],
    expect: { exit: 2, stderr: /build the bank without --refine/, absent: ['b.mbank'], check: (_dir, out) => assert.doesNotMatch(out.stderr, /\bextract|features/i, 'nothing was extracted') },
  },
  {
    name: '`bank build --divide-num 2` is refused before the model loads (new images are scored against the whole bank)',
    setup: (dir) => writePlates(dir, 'ref', 8, 7).then(() => undefined),
    args: ['bank', 'build', 'ref', '--divide-num', '2', '--out', 'b.mbank'],
    expect: { exit: 2, stderr: /an unlabeled bank is one reference set: .*without --divide-num/, absent: ['b.mbank'] },
  },
  // musc bank info: what a bank holds, without scoring against it.
  {
    name: '`bank info` prints images, kind, config (image score included), backbone, encoding, size and a good checksum',
    setup: (dir) => copyBank(dir).then(() => undefined),
    args: ['bank', 'info', 'bank.mbank'],
    expect: {
      exit: 0,
      stdout: /images:\s+6\b[\s\S]*reference:\s+unlabeled[\s\S]*encoding:\s+int8[\s\S]*backbone:\s+resnet50[\s\S]*image size:\s+224[\s\S]*layers:\s+layer2,layer3[\s\S]*image score:\s+excess over the bank's typical map[\s\S]*size:\s+[\d.]+ MiB[\s\S]*checksum:\s+ok/,
    },
  },
  {
    name: '`bank info --json` has the documented keys (`images` is the image count)',
    setup: (dir) => copyBank(dir, { images: 3, reference: 'good' }).then(() => undefined),
    args: ['bank', 'info', 'bank.mbank', '--json'],
    expect: {
      exit: 0,
      check: (_dir, out) => {
        const j = JSON.parse(out.stdout) as Record<string, unknown>;
        for (const k of ['file', 'version', 'images', 'imageNames', 'reference', 'encoding', 'config', 'backbone', 'threshold', 'embeddingDim', 'sets', 'createdAt', 'updatedAt', 'sizeBytes', 'checksum', 'usable', 'minImages', 'locked', 'problems']) {
          assert.ok(k in j, `key ${k}`);
        }
        assert.equal(j.images, 3);
        assert.equal(j.reference, 'good');
        assert.equal((j.threshold as { method: string }).method, 'median + 3·MAD', 'a good bank built without a rule decides by median + 3·MAD');
        assert.equal(j.embeddingDim, 2048);
        assert.ok(Array.isArray(j.sets) && j.sets.length === 6, 'one set per layer and r (2 layers × 3 r)');
        assert.equal(j.checksum, 'ok');
        assert.equal(j.usable, true);
        assert.equal(j.minImages, 1);
        assert.deepEqual(j.problems, []);
      },
    },
  },
  {
    name: '`bank info` on a corrupt bank reports what it can and says the checksum failed (exit 2)',
    setup: corruptBank,
    args: ['bank', 'info', 'bank.mbank'],
    expect: { exit: 2, stdout: /images:\s+6\b[\s\S]*checksum:\s+MISMATCH/, stderr: /corrupt|checksum/ },
  },
  {
    name: '`bank info --json` on a truncated bank: checksum "truncated", what the header says, exit 2',
    setup: async (dir) => {
      const file = await copyBank(dir);
      await truncate(file, 200_000);
    },
    args: ['bank', 'info', 'bank.mbank', '--json'],
    expect: {
      exit: 2,
      check: (_dir, out) => {
        const j = JSON.parse(out.stdout) as { images: number; checksum: string; usable: boolean; problems: string[] };
        assert.equal(j.images, 6);
        assert.equal(j.checksum, 'truncated');
        assert.equal(j.usable, false);
        assert.match(j.problems.join('\n'), /truncated: 200000 of \d+ bytes/);
      },
    },
  },
  {
    name: '`bank info` on a file that is not a bank',
    setup: (dir) => writeFile(path.join(dir, 'notes.mbank'), 'just some text, long enough to look like a header........'),
    args: ['bank', 'info', 'notes.mbank'],
    expect: { exit: 2, stderr: /not a musc-ts feature bank/ },
  },
  {
    name: '`bank info` on a missing file',
    args: ['bank', 'info', 'missing.mbank'],
    expect: { exit: 2, stderr: /cannot read bank "missing\.mbank"/ },
  },
]);
