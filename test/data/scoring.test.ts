/**
 * Data tier: the end-to-end pin of test/scoring.test.ts on real bottle images ($MUSC_DATA or
 * ../shared/data): `scoreFeatures` in fp32 equals an independent composition of the exported stages.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { createResNet50Backbone } from '../../src/backbone/backbone.js';
import { extractFeatures, resolveConfig } from '../../src/pipeline/musc.js';
import { evaluationData } from '../helpers.js';
import { assertScoreFeaturesPinned } from '../score-pin.js';

test('scoreFeatures (fp32) on 8 bottle images equals lnamd -> mutualScores -> upsampleBilinear -> mean -> max -> rscin composed by hand', async () => {
  const bottle = path.join(evaluationData(), 'mvtec_ad', 'bottle', 'test');
  const pick = async (sub: string, n: number) => (await readdir(path.join(bottle, sub))).sort().slice(0, n).map((f) => path.join(bottle, sub, f));
  const files = [...(await pick('good', 5)), ...(await pick('broken_large', 2)), ...(await pick('contamination', 1))];
  const cfg = resolveConfig();
  const backbone = await createResNet50Backbone({ layers: cfg.layers });
  try {
    const { features } = await extractFeatures(files, backbone, cfg);
    await assertScoreFeaturesPinned(features, cfg);
  } finally {
    await backbone.dispose();
  }
});
