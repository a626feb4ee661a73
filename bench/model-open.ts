/**
 * Model-open time: how long `openBackbone` takes from file to a ready ONNX Runtime
 * session (read, checksum, graph analysis and rewrite, session creation), for the
 * bundled ResNet50, the ViT fixtures of test/fixtures/vit and, optionally, a
 * full-size export (`/usr/bin/python3 scripts/export-torchvision-vit.py`).
 * Each configuration is opened `--runs` times after one warm-up; the median is reported.
 * ViT re-bakes (non-native sizes) go to a fresh temporary cache, so the warm-up pays
 * for any one-off cache fill and the timed runs are the steady state.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/model-open.js [--runs 5] [--vit /tmp/vit_b_16_random.onnx]
 */
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { cacheDir } from '../src/backbone/model-cache.js';
import { openBackbone, type OpenBackboneOptions } from '../src/backbone/open.js';
import { repoRoot } from '../test/helpers.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const runs = Math.max(1, Number(arg('runs') ?? '5'));
const fullVit = arg('vit');

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const fixtures = join(repoRoot(), 'test', 'fixtures', 'vit');
const cases: { label: string; opts: OpenBackboneOptions }[] = [
  { label: 'resnet50 (bundled, 95 MB)', opts: {} },
  { label: 'vit fixture dinov2_hub @224 (native)', opts: { model: join(fixtures, 'dinov2_hub.onnx'), imageSize: 224 } },
  { label: 'vit fixture dinov2_hub @320 (re-baked)', opts: { model: join(fixtures, 'dinov2_hub.onnx'), imageSize: 320 } },
  { label: 'vit fixture clip_openclip @320 (re-baked, erf GELU)', opts: { model: join(fixtures, 'clip_openclip.onnx'), imageSize: 320 } },
];
if (fullVit) {
  cases.push({ label: `full ViT ${fullVit} @224 (native)`, opts: { model: fullVit, imageSize: 224 } });
  cases.push({ label: `full ViT ${fullVit} @512 (re-baked)`, opts: { model: fullVit, imageSize: 512 } });
}

// A fresh cache for ViT re-bakes, with the converted ResNet50 linked in (no re-download).
const sharedResnet = join(cacheDir(), 'resnet50');
const tmp = await mkdtemp(join(os.tmpdir(), 'musc-model-open-'));
await symlink(sharedResnet, join(tmp, 'resnet50'));
process.env.MUSC_CACHE_DIR = tmp;
try {
  console.log(`| model | median open (ms), ${runs} runs |\n|---|---|`);
  for (const c of cases) {
    const times: number[] = [];
    for (let i = 0; i <= runs; i++) {
      const t = performance.now();
      const { backbone } = await openBackbone({ ...c.opts, log: () => {} });
      const ms = performance.now() - t;
      await backbone.dispose();
      if (i > 0) times.push(ms);
    }
    console.log(`| ${c.label} | ${median(times).toFixed(0)} |`);
  }
} finally {
  await rm(tmp, { recursive: true, force: true });
}
