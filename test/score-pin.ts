/**
 * The end-to-end pin shared by test/scoring.test.ts (synthetic plates) and
 * test/data/scoring.test.ts (real bottle images): `scoreFeatures` in fp32 against an
 * independent composition of the exported stages, written the way the paper describes them
 * (per image LNAMD, mutual scoring per (layer, r), bilinear upsampling, the mean over all
 * (layer, r) in float64, image score = max, RsCIN over the embeddings).
 */
import assert from 'node:assert/strict';
import { lnamd } from '../src/pipeline/lnamd.js';
import { upsampleBilinear } from '../src/pipeline/maps.js';
import { mutualScores } from '../src/pipeline/msm.js';
import { resolveConfig, scoreFeatures, type ImageFeatures, type MuscConfig } from '../src/pipeline/musc.js';
import { rscin } from '../src/pipeline/rscin.js';

/** The composition: maps in float64, image scores and RsCIN scores. */
export async function composeStages(features: readonly ImageFeatures[], cfg: MuscConfig): Promise<{ maps: Float64Array[]; imageScores: number[]; rscinScores: Float64Array }> {
  const N = features.length;
  // One unit per image (the default geometry: no tiles, no refinement), maps at the working size.
  assert.ok(features.every((f) => f.units.length === 1 && f.fine === null), 'one unit per image');
  const size = features[0].geometry.map;
  const maps = features.map(() => new Float64Array(size.width * size.height));
  for (let l = 0; l < cfg.layers.length; l++) {
    const { channels: C, height: gh, width: gw } = features[0].units[0][l];
    const P = gh * gw;
    for (const r of cfg.rList) {
      const z = new Float32Array(N * P * C);
      features.forEach((f, n) => z.set(lnamd(f.units[0][l], r).data, n * P * C));
      const scores = await mutualScores(z, { N, P, C }, { precision: 'fp32', intervalLow: cfg.interval[0], intervalHigh: cfg.interval[1] });
      for (let n = 0; n < N; n++) {
        const up = upsampleBilinear(scores.subarray(n * P, (n + 1) * P), gh, gw, size);
        for (let i = 0; i < up.length; i++) maps[n][i] += up[i];
      }
    }
  }
  const nMaps = cfg.layers.length * cfg.rList.length;
  for (const m of maps) for (let i = 0; i < m.length; i++) m[i] /= nMaps;
  const imageScores = maps.map((m) => m.reduce((a, b) => Math.max(a, b), -Infinity));
  const dim = features[0].embedding.length;
  const emb = new Float32Array(N * dim);
  features.forEach((f, i) => emb.set(f.embedding, i * dim));
  const rscinScores = rscin(imageScores, emb, dim, cfg.kList.filter((k) => k <= N), { cosine: cfg.embeddingSimilarity === 'cosine' });
  return { maps, imageScores, rscinScores };
}

/**
 * Bound on |scoreFeatures − composition| for maps, image scores and RsCIN scores: about 10x the
 * largest difference measured (float32 accumulation of the maps against float64 here).
 */
export const PIN_TOL = 1e-6;

/** Runs both in fp32 and asserts they agree to PIN_TOL; returns the differences for the log. */
export async function assertScoreFeaturesPinned(features: readonly ImageFeatures[], base: MuscConfig): Promise<{ map: number; image: number; rscin: number }> {
  const cfg = resolveConfig({ ...base, precision: 'fp32' });
  const got = await scoreFeatures(features, cfg);
  const want = await composeStages(features, cfg);
  const d = { map: 0, image: 0, rscin: 0 };
  features.forEach((_, n) => {
    for (let i = 0; i < want.maps[n].length; i++) d.map = Math.max(d.map, Math.abs(got.maps[n][i] - want.maps[n][i]));
    d.image = Math.max(d.image, Math.abs(got.imageScores[n] - want.imageScores[n]));
    d.rscin = Math.max(d.rscin, Math.abs(got.rscinScores[n] - want.rscinScores[n]));
  });
  const text = `max |difference|: maps ${d.map.toExponential(2)}, image scores ${d.image.toExponential(2)}, RsCIN ${d.rscin.toExponential(2)}`;
  process.stderr.write(`# scoreFeatures vs the composed stages, ${features.length} images: ${text}\n`);
  assert.ok(d.map <= PIN_TOL && d.image <= PIN_TOL && d.rscin <= PIN_TOL, `${text} (bound ${PIN_TOL})`);
  // The pin is not vacuous: the maps hold real, varied scores.
  assert.ok(Math.max(...want.imageScores) > 1.2 * Math.min(...want.imageScores), `image scores ${want.imageScores}`);
  return d;
}
