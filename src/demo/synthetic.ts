/**
 * A small, licence-free synthetic inspection batch for `musc demo`: brushed-metal
 * plates, about a quarter with drawn scratches, stains or dents, written in MVTec
 * layout with ground-truth masks. Deterministic for a given seed.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { mulberry32 } from '../util/random.js';


export type DefectKind = 'scratch' | 'stain' | 'dent';

/** Options of the generator. */
export interface SyntheticOptions {
  readonly count?: number;
  readonly defectRate?: number;
  readonly size?: number;
  readonly seed?: number;
}

/** Writes the batch under `dir` (`test/<good|kind>/NNN.png`, `ground_truth/<kind>/NNN_mask.png`). */
export async function writeSyntheticBatch(dir: string, opts: SyntheticOptions = {}): Promise<{ images: number; defective: number }> {
  const count = opts.count ?? 40;
  const size = opts.size ?? 256;
  const rand = mulberry32(opts.seed ?? 7);
  const nDefect = Math.round(count * (opts.defectRate ?? 0.25));
  const kinds: DefectKind[] = ['scratch', 'stain', 'dent'];
  let written = 0;
  for (let n = 0; n < count; n++) {
    const kind: DefectKind | null = n < nDefect ? kinds[n % kinds.length] : null;
    const rgb = new Uint8Array(size * size * 3);
    const mask = new Uint8Array(size * size);
    // Brushed metal: per-row streaks, fine grain, a soft vertical light gradient and a random tint.
    const rowNoise = Float32Array.from({ length: size }, () => (rand() - 0.5) * 18);
    const phase = rand() * Math.PI * 2;
    const tint = [0.95 + rand() * 0.1, 0.95 + rand() * 0.1, 1];
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const v = 150 + rowNoise[y] + 12 * Math.sin(x / 9 + phase + y / 40) + (rand() - 0.5) * 14 - (y / size) * 20;
        for (let c = 0; c < 3; c++) rgb[(y * size + x) * 3 + c] = Math.max(0, Math.min(255, v * tint[c]));
      }
    if (kind) drawDefect(kind, rgb, mask, size, rand);
    const name = String(n).padStart(3, '0');
    const folder = kind ?? 'good';
    await mkdir(join(dir, 'test', folder), { recursive: true });
    await sharp(rgb, { raw: { width: size, height: size, channels: 3 } }).png().toFile(join(dir, 'test', folder, `${name}.png`));
    if (kind) {
      await mkdir(join(dir, 'ground_truth', folder), { recursive: true });
      await sharp(mask, { raw: { width: size, height: size, channels: 1 } }).png().toFile(join(dir, 'ground_truth', folder, `${name}_mask.png`));
    }
    written++;
  }
  return { images: written, defective: nDefect };
}

function drawDefect(kind: DefectKind, rgb: Uint8Array, mask: Uint8Array, size: number, rand: () => number): void {
  const cx = size * (0.25 + rand() * 0.5);
  const cy = size * (0.25 + rand() * 0.5);
  const paint = (x: number, y: number, delta: number) => {
    const o = (y * size + x) * 3;
    for (let c = 0; c < 3; c++) rgb[o + c] = Math.max(0, Math.min(255, rgb[o + c] + delta));
    mask[y * size + x] = 255;
  };
  if (kind === 'scratch') {
    const angle = rand() * Math.PI;
    const len = size * (0.25 + rand() * 0.2);
    const width = 1.5 + rand() * 1.5;
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const dx = x - cx;
        const dy = y - cy;
        const along = dx * Math.cos(angle) + dy * Math.sin(angle);
        const across = -dx * Math.sin(angle) + dy * Math.cos(angle);
        if (Math.abs(along) < len / 2 && Math.abs(across) < width) paint(x, y, -90);
      }
  } else if (kind === 'stain') {
    const rx = size * (0.05 + rand() * 0.06);
    const ry = size * (0.04 + rand() * 0.05);
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const d = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2;
        if (d < 1) paint(x, y, -60 * (1 - 0.5 * d) + 25 * Math.sin(x / 3));
      }
  } else {
    const r = size * (0.04 + rand() * 0.04);
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const dx = x - cx;
        const dy = y - cy;
        const d = Math.hypot(dx, dy) / r;
        if (d < 1) paint(x, y, 70 * (dx + dy) / (r * 1.5));
      }
  }
}
