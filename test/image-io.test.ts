/**
 * Image decoding at the edge: photos are read as viewers show them (EXIF orientation applied),
 * for the size the geometry plans with, the pixels scored and the pixels of overlays alike.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { imageSize, loadImageOriginal, loadImageRgb } from '../src/image/io.js';

const tmp = await mkdtemp(path.join(os.tmpdir(), 'musc-image-io-'));
after(() => rm(tmp, { recursive: true, force: true }));

/** A 96 × 64 stored picture (left half red, right half blue) written as a JPEG tagged `orientation`. */
async function taggedJpeg(name: string, orientation: number): Promise<string> {
  const w = 96;
  const h = 64;
  const raw = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) raw.set(x < w / 2 ? [230, 20, 20] : [20, 20, 230], (y * w + x) * 3);
  const file = path.join(tmp, name);
  await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).withMetadata({ orientation }).jpeg({ quality: 100 }).toFile(file);
  return file;
}

test('a photo tagged EXIF orientation 6 (rotate 90° clockwise) is read upright: size, scored pixels and overlay pixels', async () => {
  const file = await taggedJpeg('phone.jpg', 6);
  assert.equal((await sharp(file).metadata()).orientation, 6, 'the fixture carries the tag');
  assert.deepEqual(await imageSize(file), { width: 64, height: 96 });

  const original = await loadImageOriginal(file);
  assert.deepEqual([original.width, original.height], [64, 96]);
  // Rotated clockwise, the stored left half (red) is on top, the right half (blue) at the bottom.
  const px = (x: number, y: number) => Array.from(original.data.subarray((y * 64 + x) * 3, (y * 64 + x) * 3 + 3));
  assert.ok(px(32, 10)[0] > 180 && px(32, 10)[2] < 80, `top is red: ${px(32, 10)}`);
  assert.ok(px(32, 85)[2] > 180 && px(32, 85)[0] < 80, `bottom is blue: ${px(32, 85)}`);

  const scored = await loadImageRgb(file, { width: 32, height: 48 });
  assert.deepEqual([scored.originalWidth, scored.originalHeight], [64, 96]);
  const top = scored.data.subarray((5 * 32 + 16) * 3, (5 * 32 + 16) * 3 + 3);
  assert.ok(top[0] > 180 && top[2] < 80, `the scored image is upright too: ${Array.from(top)}`);
});

test('a photo without an orientation tag is read as stored', async () => {
  const file = await taggedJpeg('plain.jpg', 1);
  assert.deepEqual(await imageSize(file), { width: 96, height: 64 });
  const original = await loadImageOriginal(file);
  assert.deepEqual([original.width, original.height], [96, 64]);
  assert.ok(original.data[(10 * 96 + 10) * 3] > 180, 'left is red');
});
