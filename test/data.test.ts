/**
 * Dataset readers and mask rules on tiny synthetic layouts written to a temp folder.
 * The same readers on the real evaluation data: test/data/datasets.test.ts (data tier).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { loadMaskBinary, maskValueKind } from '../src/data/dataset.js';
import { compareCodePoints, parseCsv, readBtadCategory, readMvtecCategory, readVisaCategory } from '../src/data/mvtec.js';
import { DatasetError } from '../src/errors.js';
import { IMAGE_EXTENSIONS, loadImageRgb } from '../src/image/io.js';
import { collectImages } from '../src/inputs/collect.js';
import { tempDirs } from './helpers.js';

const tmpDir = tempDirs('musc-data-test-');

/** Writes a grey PNG of w x h from a pixel function. */
async function writeGreyPng(file: string, w: number, h: number, px: (x: number, y: number) => number): Promise<void> {
  const data = Buffer.alloc(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[y * w + x] = px(x, y);
  await mkdir(path.dirname(file), { recursive: true });
  await sharp(data, { raw: { width: w, height: h, channels: 1 } }).png().toFile(file);
}

/** Writes an uncompressed bottom-up 24-bit BMP (sharp cannot write BMP; BTAD ships them). */
async function writeGreyBmp(file: string, w: number, h: number, px: (x: number, y: number) => number): Promise<void> {
  const stride = Math.ceil((w * 3) / 4) * 4;
  const b = Buffer.alloc(54 + stride * h);
  b.write('BM', 0, 'ascii');
  b.writeUInt32LE(b.length, 2);
  b.writeUInt32LE(54, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(w, 18);
  b.writeInt32LE(h, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(24, 28);
  for (let y = 0; y < h; y++) {
    const row = 54 + (h - 1 - y) * stride;
    for (let x = 0; x < w; x++) b.fill(px(x, y), row + x * 3, row + x * 3 + 3);
  }
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, b);
}

const square = (x: number, y: number): number => (x >= 4 && x < 12 && y >= 4 && y < 12 ? 255 : 0);
const img = (x: number, y: number): number => (x * 13 + y * 7) % 256;

function countOnes(m: Uint8Array): number {
  let n = 0;
  for (const v of m) n += v;
  return n;
}

/** A minimal valid MVTec-layout category: good/000, crack/000 + mask. */
async function makeMvtec(): Promise<string> {
  const dir = path.join(await tmpDir(), 'widget');
  await writeGreyPng(path.join(dir, 'test/good/000.png'), 16, 16, img);
  await writeGreyPng(path.join(dir, 'test/crack/000.png'), 16, 16, img);
  await writeGreyPng(path.join(dir, 'ground_truth/crack/000_mask.png'), 16, 16, square);
  return dir;
}

// ---------------------------------------------------------------- error cases

test('missing mask: DatasetError names the image and the expected mask path', async () => {
  const dir = await makeMvtec();
  await writeGreyPng(path.join(dir, 'test/crack/001.png'), 16, 16, img);
  await assert.rejects(readMvtecCategory(dir), (err: unknown) => {
    assert.ok(err instanceof DatasetError);
    assert.match(err.message, /have no ground-truth mask/);
    assert.ok(err.message.includes(path.join(dir, 'test/crack/001.png')));
    assert.ok(err.message.includes(path.join(dir, 'ground_truth/crack/001_mask.png')));
    return true;
  });
});

test('orphan mask: DatasetError names the mask without an image (also for a defect type with no test folder)', async () => {
  const dir = await makeMvtec();
  await writeGreyPng(path.join(dir, 'ground_truth/crack/007_mask.png'), 16, 16, square);
  await assert.rejects(readMvtecCategory(dir), (err: unknown) => {
    assert.ok(err instanceof DatasetError);
    assert.match(err.message, /no matching test image/);
    assert.ok(err.message.includes(path.join(dir, 'ground_truth/crack/007_mask.png')));
    return true;
  });
  const dir2 = await makeMvtec();
  await writeGreyPng(path.join(dir2, 'ground_truth/scratch/000_mask.png'), 16, 16, square);
  await assert.rejects(readMvtecCategory(dir2), (err: unknown) => err instanceof DatasetError && err.message.includes('ground_truth/scratch/000_mask.png'));
  // Both accepted names present for one image: ambiguous, not silently picked.
  const dir3 = await makeMvtec();
  await writeGreyPng(path.join(dir3, 'ground_truth/crack/000.png'), 16, 16, square);
  await assert.rejects(readMvtecCategory(dir3), (err: unknown) => err instanceof DatasetError && /more than one mask/.test(err.message));
});

test('empty test folder, missing test folder and missing category are DatasetErrors with clear messages', async () => {
  const root = await tmpDir();
  await mkdir(path.join(root, 'empty/test/good'), { recursive: true });
  await writeFile(path.join(root, 'empty/test/good/notes.txt'), 'not an image');
  await assert.rejects(readMvtecCategory(path.join(root, 'empty')), (err: unknown) => err instanceof DatasetError && /no test images/.test(err.message));
  await mkdir(path.join(root, 'notest/train/good'), { recursive: true });
  await assert.rejects(readMvtecCategory(path.join(root, 'notest')), (err: unknown) => err instanceof DatasetError && /no "test" folder/.test(err.message));
  await assert.rejects(readMvtecCategory(path.join(root, 'absent')), (err: unknown) => err instanceof DatasetError && /does not exist/.test(err.message));
});

test('corrupt or missing mask file: loadMaskBinary throws a DatasetError naming the file', async () => {
  const dir = await makeMvtec();
  const maskFile = path.join(dir, 'ground_truth/crack/000_mask.png');
  const png = await readFile(maskFile);
  await writeFile(maskFile, png.subarray(0, 40)); // truncated PNG
  const ds = await readMvtecCategory(dir);
  const item = ds.items.find((i) => i.label === 1)!;
  await assert.rejects(loadMaskBinary(item, 32, 'auto'), (err: unknown) => err instanceof DatasetError && err.message.includes(maskFile));
  await writeFile(maskFile, 'this is text, not a PNG');
  await assert.rejects(loadMaskBinary(item, 32, 'mvtec'), (err: unknown) => err instanceof DatasetError && err.message.includes(maskFile));
  const gone = path.join(dir, 'nope_mask.png');
  await assert.rejects(loadMaskBinary({ ...item, maskPath: gone }, 32, 'soft'), (err: unknown) => err instanceof DatasetError && err.message.includes(gone) && /does not exist/.test(err.message));
});

test('MVTec layout: <stem>.png masks, code-point order, other files ignored, ok is normal', async () => {
  const dir = path.join(await tmpDir(), 'cat');
  for (const name of ['b.png', 'B.jpg', '10.png', '9.png']) await writeGreyPng(path.join(dir, 'test/Zdefect', name), 8, 8, img);
  for (const name of ['b.png', 'B.png', '10.png', '9_mask.png']) await writeGreyPng(path.join(dir, 'ground_truth/Zdefect', name), 8, 8, square);
  await writeGreyPng(path.join(dir, 'test/ok/000.png'), 8, 8, img);
  await writeGreyPng(path.join(dir, 'test/good/000.PNG'), 8, 8, img);
  await writeFile(path.join(dir, 'test/good/Thumbs.db'), 'x');
  await writeFile(path.join(dir, 'test/good/._000.png'), 'AppleDouble junk');
  await writeFile(path.join(dir, 'ground_truth/Zdefect/.DS_Store'), 'x');
  const ds = await readMvtecCategory(dir);
  const rel = ds.items.map((i) => path.relative(dir, i.imagePath).split(path.sep).join('/'));
  // Python's sorted(): upper case before lower case, '1' before '9'.
  assert.deepEqual(rel, ['test/Zdefect/10.png', 'test/Zdefect/9.png', 'test/Zdefect/B.jpg', 'test/Zdefect/b.png', 'test/good/000.PNG', 'test/ok/000.png']);
  assert.deepEqual(ds.items.map((i) => i.label), [1, 1, 1, 1, 0, 0]);
  assert.deepEqual(ds.items.map((i) => (i.maskPath === null ? null : path.basename(i.maskPath))), ['10.png', '9_mask.png', 'B.png', 'b.png', null, null]);
});

test('dataset readers and `musc run` take the same image files (GIF included, hidden files not)', async () => {
  const dir = path.join(await tmpDir(), 'gifs');
  await writeGreyPng(path.join(dir, 'test/good/000.png'), 8, 8, img);
  await mkdir(path.join(dir, 'test/good'), { recursive: true });
  await sharp(Buffer.alloc(8 * 8 * 3, 120), { raw: { width: 8, height: 8, channels: 3 } }).gif().toFile(path.join(dir, 'test/good/001.GIF'));
  await writeFile(path.join(dir, 'test/good/._002.gif'), 'AppleDouble junk');
  await writeFile(path.join(dir, 'test/good/notes.txt'), 'x');
  const fromDataset = (await readMvtecCategory(dir)).items.map((i) => i.imagePath);
  const fromRun = (await collectImages([path.join(dir, 'test')])).files;
  assert.deepEqual(fromDataset.map((f) => path.basename(f)), ['000.png', '001.GIF']);
  assert.deepEqual([...fromRun].sort(), [...fromDataset].sort());
  assert.ok(IMAGE_EXTENSIONS.includes('.gif'));
  assert.equal((await loadImageRgb(fromDataset[1], 8)).data[0], 120, 'GIF decodes');
});

test('compareCodePoints is Python code-point order, not UTF-16 order', () => {
  const astral = '\u{1F600}'; // surrogate pair D83D DE00
  const bmpHigh = '\uFFFD';
  assert.ok(compareCodePoints(bmpHigh, astral) < 0); // U+FFFD < U+1F600
  assert.ok(bmpHigh > astral); // JS default order disagrees
  assert.deepEqual(['b', 'a', 'B', 'ab', 'a'].sort(compareCodePoints), ['B', 'a', 'a', 'ab', 'b']);
});
test('a colour mask (red on black) counts by its brightest channel, like the same mask in grey', async () => {
  const dir = await makeMvtec();
  const ds = await readMvtecCategory(dir);
  const greyItem = ds.items.find((i) => i.label === 1)!;
  assert.equal(countOnes(await loadMaskBinary(greyItem, 32, 'auto')), 15 * 15, 'the 8 x 8 square at 2x, its bilinear edge eroded by the mvtec rule');
  const redFile = path.join(dir, 'ground_truth/crack/red_mask.png');
  const red = Buffer.alloc(16 * 16 * 3);
  for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) red[(y * 16 + x) * 3] = square(x, y);
  await sharp(red, { raw: { width: 16, height: 16, channels: 3 } }).png().toFile(redFile);
  assert.equal((await sharp(redFile).metadata()).channels, 3, 'the fixture is an RGB file');
  const redItem = { ...greyItem, maskPath: redFile };
  for (const rule of ['auto', 'mvtec', 'soft', 'visa'] as const) assert.deepEqual(await loadMaskBinary(redItem, 32, rule), await loadMaskBinary(greyItem, 32, rule), rule);
});

test('a mask of another shape than its image (rotated, cropped) is refused naming both; the same aspect at another scale is resized', async () => {
  const dir = await makeMvtec();
  const ds = await readMvtecCategory(dir);
  const item = ds.items.find((i) => i.label === 1)!;
  const at = (width: number, height: number) => loadMaskBinary(item, 16, 'auto', { width, height });
  assert.equal(countOnes(await at(16, 16)), 64);
  assert.equal(countOnes(await at(32, 32)), 64, 'a half-scale mask of a 32 x 32 image fits it');
  assert.equal(countOnes(await at(33, 32)), 64, 'and of a 33 x 32 image (the half size rounds to 16 x 16)');
  await assert.rejects(at(32, 16), (err: unknown) => err instanceof DatasetError && err.message.includes(item.maskPath!) && err.message.includes(item.imagePath) && /16x16, but its image .* is 32x16: another shape/.test(err.message));
});

// ---------------------------------------------------------------- BTAD and VisA

test('BTAD layout: ok/ko, masks as .png or .bmp (BMP masks decode)', async () => {
  const dir = path.join(await tmpDir(), '01');
  await writeGreyBmp(path.join(dir, 'test/ko/0000.bmp'), 16, 16, img);
  await writeGreyPng(path.join(dir, 'test/ko/0001.png'), 16, 16, img);
  await writeGreyBmp(path.join(dir, 'test/ok/0000.bmp'), 16, 16, img);
  await writeGreyBmp(path.join(dir, 'ground_truth/ko/0000.bmp'), 16, 16, square);
  await writeGreyPng(path.join(dir, 'ground_truth/ko/0001.png'), 16, 16, square);
  const ds = await readBtadCategory(dir);
  assert.equal(ds.name, '01');
  assert.deepEqual(ds.rscinKList, [1, 2, 3]);
  assert.deepEqual(ds.items.map((i) => [i.defectType, i.label, i.maskPath && path.basename(i.maskPath)]), [
    ['ko', 1, '0000.bmp'],
    ['ko', 1, '0001.png'],
    ['ok', 0, null],
  ]);
  assert.equal(await maskValueKind(ds.items[0].maskPath!), 'binary-0-255');
  const bmpMask = await loadMaskBinary(ds.items[0], 16, 'auto');
  const pngMask = await loadMaskBinary(ds.items[1], 16, 'auto');
  assert.equal(countOnes(bmpMask), 64);
  assert.deepEqual(bmpMask, pngMask);
  // An image in ko without a mask fails with the expected names.
  await writeGreyPng(path.join(dir, 'test/ko/0002.png'), 16, 16, img);
  await assert.rejects(readBtadCategory(dir), (err: unknown) => err instanceof DatasetError && err.message.includes(path.join(dir, 'ground_truth/ko/0002.png')));
});

test('VisA: 1cls.csv rows of the class and split test in CSV order; anomaly = 1; paths relative to root', async () => {
  const root = await tmpDir();
  const rows = [
    'object,split,label,image,mask',
    'candle,train,normal,candle/Data/Images/Normal/0000.JPG,',
    'candle,test,anomaly,candle/Data/Images/Anomaly/001.JPG,candle/Data/Masks/Anomaly/001.png',
    'candle,test,normal,candle/Data/Images/Normal/0005.JPG,',
    'pcb1,test,normal,pcb1/Data/Images/Normal/0001.JPG,',
    'candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png',
  ];
  await mkdir(path.join(root, 'split_csv'), { recursive: true });
  await writeFile(path.join(root, 'split_csv/1cls.csv'), rows.join('\r\n') + '\r\n');
  for (const r of rows.slice(1)) {
    const [, , , image, mask] = r.split(',');
    await writeGreyPng(path.join(root, image), 12, 10, img);
    if (mask) await writeGreyPng(path.join(root, mask), 12, 10, (x, y) => (x === 5 && y === 5 ? 255 : 0));
  }
  const ds = await readVisaCategory(root, 'candle');
  assert.equal(ds.name, 'candle');
  assert.deepEqual(ds.rscinKList, [1, 8, 9]);
  assert.equal(ds.maskRule, 'visa');
  assert.deepEqual(ds.items.map((i) => [path.relative(root, i.imagePath).split(path.sep).join('/'), i.label, i.defectType]), [
    ['candle/Data/Images/Anomaly/001.JPG', 1, 'Anomaly'],
    ['candle/Data/Images/Normal/0005.JPG', 0, 'Normal'],
    ['candle/Data/Images/Anomaly/000.JPG', 1, 'Anomaly'],
  ]);
  assert.equal(ds.items[1].maskPath, null);
  assert.equal(ds.items[0].maskPath, path.join(root, 'candle/Data/Masks/Anomaly/001.png'));
  // A one-pixel defect must survive: the VisA rule counts any touched pixel.
  assert.ok(countOnes(await loadMaskBinary(ds.items[0], 40, ds.maskRule)) >= 1);

  await assert.rejects(readVisaCategory(root, 'cashew'), (err: unknown) => err instanceof DatasetError && /no test rows for class "cashew"/.test(err.message) && /candle, pcb1/.test(err.message));
  await rm(path.join(root, 'candle/Data/Masks/Anomaly/000.png'));
  await assert.rejects(readVisaCategory(root, 'candle'), (err: unknown) => err instanceof DatasetError && err.message.includes(path.join(root, 'candle/Data/Masks/Anomaly/000.png')));
  await assert.rejects(readVisaCategory(path.join(root, 'nowhere'), 'candle'), (err: unknown) => err instanceof DatasetError && /1cls\.csv/.test(err.message));
});

test('parseCsv: quotes, escaped quotes, CRLF, BOM, blank lines', () => {
  assert.deepEqual(parseCsv('\uFEFFa,b,c\r\n1,"x,y","say ""hi"""\n\n2,,\n'), [
    ['a', 'b', 'c'],
    ['1', 'x,y', 'say "hi"'],
    ['2', '', ''],
  ]);
  assert.deepEqual(parseCsv('a,b'), [['a', 'b']]);
  assert.throws(() => parseCsv('a,"b'), DatasetError);
});
