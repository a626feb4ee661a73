/**
 * End-to-end pin of the scoring pipeline on synthetic plates (`musc demo`'s generator, no
 * ../shared needed) through the bundled ResNet50: `scoreFeatures` in fp32 equals an independent
 * composition of the exported stages (test/score-pin.ts). On real bottle images: test/data/scoring.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { createResNet50Backbone } from '../src/backbone/backbone.js';
import { extractFeatures, resolveConfig } from '../src/pipeline/musc.js';
import { writePlates } from './helpers.js';
import { assertScoreFeaturesPinned } from './score-pin.js';

test('scoreFeatures (fp32) on 8 synthetic plates equals lnamd -> mutualScores -> upsampleBilinear -> mean -> max -> rscin composed by hand', async () => {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'musc-scoring-test-'));
  const cfg = resolveConfig();
  const backbone = await createResNet50Backbone({ layers: cfg.layers });
  try {
    const plates = await writePlates(tmp, { count: 8 });
    const { features } = await extractFeatures([...plates.good, ...plates.defective], backbone, cfg);
    await assertScoreFeaturesPinned(features, cfg);
  } finally {
    await backbone.dispose();
    await rm(tmp, { recursive: true, force: true });
  }
});
