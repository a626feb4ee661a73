/**
 * Backbone throughput: ms/image of the default ResNet50 (ONNX Runtime, CPU, default
 * intra-op threads) at 224 and 448 px, batch 1 and 8. Times `Backbone.extract`
 * (normalisation + inference + copying out layer2, layer3 and the embedding);
 * image decoding is done once up front and not timed. Warm-up runs (2) per
 * configuration are excluded; the reported figure is the median of the timed runs.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/backbone.js [--runs 5] [--warmup 2] [--sizes 224,448] [--batches 1,8]
 *
 * Prints a markdown table and writes bench/backbone-results.json.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createResNet50Backbone } from '../src/backbone/backbone.js';
import { loadImageRgb, type LoadedImage } from '../src/image/io.js';

const PHOTOS = '/usr/share/darknet/data';
const PHOTO_NAMES = ['dog.jpg', 'eagle.jpg', 'giraffe.jpg', 'horses.jpg', 'kite.jpg', 'person.jpg', 'scream.jpg'];

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}
const numbers = (s: string) => s.split(',').map((v) => Number(v.trim())).filter((v) => Number.isFinite(v) && v > 0);

const runs = Math.max(1, Number(arg('runs', '5')));
const warmups = Math.max(1, Number(arg('warmup', '2')));
const sizes = numbers(arg('sizes', '224,448'));
const batches = numbers(arg('batches', '1,8'));

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Real photos when darknet's data is installed, else deterministic noise images. */
async function images(size: number, count: number): Promise<LoadedImage[]> {
  const files = PHOTO_NAMES.map((n) => join(PHOTOS, n)).filter((f) => existsSync(f));
  const out: LoadedImage[] = [];
  for (let i = 0; i < count; i++) {
    if (files.length > 0) {
      out.push(await loadImageRgb(files[i % files.length], size));
    } else {
      const data = new Uint8Array(size * size * 3);
      let x = 12345 + i;
      for (let j = 0; j < data.length; j++) {
        x = (x * 1103515245 + 12345) >>> 0;
        data[j] = x >>> 24;
      }
      out.push({ file: `noise-${i}`, data, width: size, height: size, originalWidth: size, originalHeight: size });
    }
  }
  return out;
}

interface Row {
  size: number;
  batch: number;
  runs: number;
  msPerBatchMedian: number;
  msPerImage: number;
  imagesPerSecond: number;
  msPerBatchAll: number[];
}

async function main(): Promise<void> {
  const bb = await createResNet50Backbone({ log: (m) => process.stderr.write(`${m}\n`) });
  const rows: Row[] = [];
  try {
    for (const size of sizes) {
      const pool = await images(size, Math.max(...batches));
      for (const batch of batches) {
        const input = pool.slice(0, batch);
        for (let w = 0; w < warmups; w++) await bb.extract(input); // warm-up (allocations, kernel selection), excluded
        const times: number[] = [];
        for (let r = 0; r < runs; r++) {
          const t0 = performance.now();
          const out = await bb.extract(input);
          times.push(performance.now() - t0);
          if (out.embedding.dims[0] !== batch) throw new Error('unexpected batch size in output');
        }
        const med = median(times);
        rows.push({
          size,
          batch,
          runs,
          msPerBatchMedian: med,
          msPerImage: med / batch,
          imagesPerSecond: (1000 * batch) / med,
          msPerBatchAll: times.map((t) => Math.round(t * 10) / 10),
        });
        process.stderr.write(`${size}px batch ${batch}: ${(med / batch).toFixed(1)} ms/image\n`);
      }
    }
  } finally {
    await bb.dispose();
  }

  const cpus = os.cpus();
  const env = {
    backbone: bb.id,
    onnxruntime: 'onnxruntime-node (CPU EP, default intra-op threads)',
    cpu: cpus[0]?.model ?? 'unknown',
    logicalCores: os.availableParallelism?.() ?? cpus.length,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    date: new Date().toISOString(),
  };
  const lines = [
    `Backbone: ${env.backbone}; ${env.onnxruntime}; ${env.cpu}, ${env.logicalCores} logical cores; Node ${env.node}`,
    '',
    '| input | batch | ms/batch (median) | ms/image | images/s |',
    '|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.size}x${r.size} | ${r.batch} | ${r.msPerBatchMedian.toFixed(1)} | ${r.msPerImage.toFixed(1)} | ${r.imagesPerSecond.toFixed(1)} |`),
    '',
    `Median of ${runs} timed runs after ${warmups} warm-up run(s); times cover Backbone.extract (normalisation + ONNX Runtime + outputs), not decoding.`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);

  const here = fileURLToPath(new URL('.', import.meta.url));
  // Compiled to dist/bench/backbone.js; the results belong next to the source in bench/.
  const benchDir = existsSync(join(here, '..', '..', 'bench')) ? join(here, '..', '..', 'bench') : here;
  const outFile = join(benchDir, 'backbone-results.json');
  await writeFile(outFile, `${JSON.stringify({ environment: env, results: rows }, null, 2)}\n`);
  process.stderr.write(`wrote ${outFile}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
