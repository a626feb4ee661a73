/**
 * Data tier: `musc run` end to end on real photos ($MUSC_DATA or ../shared/data) mixed with every
 * kind of awkward file: corrupt, truncated, empty and non-image files, 16-bit / RGBA / grey / 1x1 /
 * 12000x12000 images, mixed sizes. Too few images, empty folder, unwritable output and Ctrl-C on
 * synthetic plates: test/run.test.ts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { evaluationData, listRecursive, MUSC_BIN } from '../helpers.js';

const run = promisify(execFile);
const DATA = evaluationData();
const BOTTLE_GOOD = path.join(DATA, 'mvtec_ad', 'bottle', 'test', 'good');
const BOTTLE_BAD = path.join(DATA, 'mvtec_ad', 'bottle', 'test', 'broken_large');
const TILE_GOOD = path.join(DATA, 'magnetic_tile', 'test', 'good');
let tmp = '';

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'musc-run-test-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

interface Row {
  path: string;
  imageScore: number | null;
  rscinScore: number | null;
  decision: string;
  region: { x: number; y: number; width: number; height: number } | null;
  overlay: string | null;
  map: string | null;
  error?: string;
}

async function readRows(out: string): Promise<Row[]> {
  return (JSON.parse(await readFile(path.join(out, 'scores.json'), 'utf8')) as { images: Row[] }).images;
}

test('a batch mixing real photos with every kind of awkward file: bad files are reported, the rest scored', async () => {
  const dir = path.join(tmp, 'mixed');
  await mkdir(path.join(dir, 'sub'), { recursive: true });
  for (let i = 0; i < 5; i++) await copyFile(path.join(BOTTLE_GOOD, `00${i}.png`), path.join(dir, `good_${i}.png`));
  await copyFile(path.join(BOTTLE_BAD, '000.png'), path.join(dir, 'broken_000.png'));
  // Mixed sizes and colour types: a small grey JPEG tile in a sub-folder.
  const tiles = (await readdir(TILE_GOOD)).sort().slice(0, 1);
  await copyFile(path.join(TILE_GOOD, tiles[0]), path.join(dir, 'sub', tiles[0]));
  const bottle = await sharp(path.join(BOTTLE_GOOD, '005.png')).resize(300, 300).raw().toBuffer();
  // 16-bit RGB PNG.
  const u16 = new Uint16Array(300 * 300 * 3);
  for (let i = 0; i < u16.length; i++) u16[i] = bottle[i] * 257;
  await sharp(Buffer.from(u16.buffer), { raw: { width: 300, height: 300, channels: 3, premultiplied: false } })
    .toColourspace('rgb16')
    .png()
    .toFile(path.join(dir, 'sixteen_bit.png'))
    .catch(async () => {
      // Older libvips: fall back to a 16-bit grey PNG, still a 16-bit input.
      await sharp(bottle, { raw: { width: 300, height: 300, channels: 3 } }).toColourspace('grey16').png().toFile(path.join(dir, 'sixteen_bit.png'));
    });
  const meta16 = await sharp(path.join(dir, 'sixteen_bit.png')).metadata();
  assert.equal(meta16.depth, 'ushort', 'the fixture really is 16-bit');
  await sharp(bottle, { raw: { width: 300, height: 300, channels: 3 } }).ensureAlpha(0.5).png().toFile(path.join(dir, 'rgba.png'));
  await sharp(bottle, { raw: { width: 300, height: 300, channels: 3 } }).greyscale().png().toFile(path.join(dir, 'grey.png'));
  await sharp({ create: { width: 1, height: 1, channels: 3, background: { r: 120, g: 120, b: 120 } } }).png().toFile(path.join(dir, 'one_pixel.png'));
  await sharp({ create: { width: 12000, height: 12000, channels: 3, background: { r: 90, g: 90, b: 95 } } }).png({ compressionLevel: 1 }).toFile(path.join(dir, 'huge.png'));
  // Bad files.
  await writeFile(path.join(dir, 'zero_bytes.png'), '');
  await writeFile(path.join(dir, 'text.jpg'), 'this is not a JPEG');
  const whole = await readFile(path.join(BOTTLE_GOOD, '006.png'));
  await writeFile(path.join(dir, 'truncated.png'), whole.subarray(0, whole.length >> 1));

  const out = path.join(tmp, 'mixed-out');
  const { stdout, stderr } = await run(process.execPath, [MUSC_BIN, 'run', dir, '--out', out], { maxBuffer: 4 << 20 });
  assert.match(stdout, /12 images scored/);
  assert.match(stdout, /3 skipped/);
  for (const bad of ['zero_bytes.png', 'text.jpg', 'truncated.png']) assert.match(stderr, new RegExp(`skipped .*${bad.replace('.', '\\.')}`));

  const rows = await readRows(out);
  assert.equal(rows.length, 15);
  const errors = rows.filter((r) => r.decision === 'error');
  assert.deepEqual(errors.map((r) => path.basename(r.path)).sort(), ['text.jpg', 'truncated.png', 'zero_bytes.png']);
  for (const r of errors) assert.ok(r.error && r.error.includes(path.basename(r.path)), 'error names the file');
  const scored = rows.filter((r) => r.decision !== 'error');
  for (const r of scored) {
    assert.ok(Number.isFinite(r.imageScore) && Number.isFinite(r.rscinScore), `${r.path} has scores`);
    assert.ok(r.region && r.region.width >= 1 && r.region.height >= 1);
    const overlayMeta = await sharp(path.join(out, r.overlay!)).metadata();
    const srcMeta = await sharp(r.path).metadata();
    assert.deepEqual([overlayMeta.width, overlayMeta.height], [srcMeta.width, srcMeta.height], `overlay of ${r.path} at original size`);
    const npy = await readFile(path.join(out, r.map!));
    assert.equal(npy.subarray(1, 6).toString('latin1'), 'NUMPY');
  }
  const huge = scored.find((r) => r.path.endsWith('huge.png'))!;
  assert.ok(huge.region!.x + huge.region!.width <= 12000);
  // The broken bottle scores above the good bottles.
  const score = (name: string) => scored.find((r) => path.basename(r.path) === name)!.imageScore!;
  for (let i = 0; i < 5; i++) assert.ok(score('broken_000.png') > score(`good_${i}.png`), 'defect outranks normals');
  const csv = (await readFile(path.join(out, 'scores.csv'), 'utf8')).trim().split('\n');
  assert.equal(csv.length, 16, 'header + one row per input');
  const html = await readFile(path.join(out, 'report.html'), 'utf8');
  assert.ok(html.includes('</html>'));
  const leftovers = (await listRecursive(out)).filter((f) => f.includes('.tmp-'));
  assert.deepEqual(leftovers, [], 'no temporary files remain');
});
