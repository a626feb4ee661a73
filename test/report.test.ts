/**
 * The HTML report: string-level safety checks without a browser, then the real
 * page in headless Chromium (sorting, filtering, heatmap toggle, detail view,
 * hostile file names, no network, no console errors).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { imageCurves } from '../src/outputs/curves.js';
import { decisionQuality } from '../src/outputs/decisions.js';
import { escapeHtml, renderReportHtml, serializeJsonForScript } from '../src/report/html.js';
import type { ReportData, ReportImage } from '../src/report/report-data.js';
import { repoRoot } from './helpers.js';

const CHROMIUM = process.env.MUSC_CHROMIUM ?? '/usr/bin/chromium';
const XSS_IMG = '<img src=x onerror=alert(1)>.png';
const XSS_SCRIPT = '</script><script>window.pwned=1</script>.png';
const SIZE = 96;

let tmp = '';
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'musc-report-test-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A grey "part" on a darker background with a dark blemish at (cx, cy): looks like an inspection image. */
function partPixels(seed: number, cx: number, cy: number, defect: boolean): Buffer {
  const px = Buffer.alloc(SIZE * SIZE * 3);
  const tint = (seed * 37) % 40;
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const r = Math.hypot(x - SIZE / 2, y - SIZE / 2);
      let v = r < SIZE * 0.38 ? 170 + ((x * 7 + y * 3 + seed * 11) % 13) - r * 0.6 : 55 + tint / 4;
      if (defect && Math.hypot(x - cx, y - cy) < 6) v = 60;
      const i = (y * SIZE + x) * 3;
      px[i] = v;
      px[i + 1] = v + tint / 8;
      px[i + 2] = v + tint / 4;
    }
  }
  return px;
}

/** A jet-like overlay: blue everywhere, hot at the blemish, blended with the part. */
function heatPixels(base: Buffer, cx: number, cy: number, strength: number): Buffer {
  const px = Buffer.alloc(base.length);
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const t = strength * Math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 9 ** 2));
      const r = 255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 3)));
      const g = 255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 2)));
      const b = 255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 1)));
      const i = (y * SIZE + x) * 3;
      px[i] = 0.5 * base[i] + 0.5 * r;
      px[i + 1] = 0.5 * base[i + 1] + 0.5 * g;
      px[i + 2] = 0.5 * base[i + 2] + 0.5 * b;
    }
  }
  return px;
}

async function jpegDataUri(px: Buffer): Promise<string> {
  const buf = await sharp(px, { raw: { width: SIZE, height: SIZE, channels: 3 } }).jpeg({ quality: 75 }).toBuffer();
  return `data:image/jpeg;base64,${buf.toString('base64')}`;
}

const THRESHOLD = 0.55;

/** 12 images; RsCIN order deliberately differs from raw-score order so the tests see which one sorts. */
async function makeData(): Promise<ReportData> {
  const names = [
    'bottle_000.png',
    'bottle_001.png',
    'bottle_002.png',
    'bottle_010.png',
    XSS_IMG,
    'bottle_003.png',
    XSS_SCRIPT,
    'bottle_004.png',
    'crack_big.png',
    'scratch_07.png',
    'bottle_020.png',
    'contamination_1.png',
  ];
  const rscin = [0.12, 0.31, 0.08, 0.44, 0.91, 0.27, 0.63, 0.52, 0.97, 0.71, 0.19, 0.86];
  const labels: (0 | 1 | undefined)[] = [0, 0, 0, 1, 1, 0, 0, 0, 1, 1, undefined, 1];
  const images: ReportImage[] = [];
  for (let i = 0; i < names.length; i++) {
    const cx = 30 + ((i * 13) % 40);
    const cy = 28 + ((i * 29) % 42);
    const defect = labels[i] === 1;
    const base = partPixels(i, cx, cy, defect);
    const anomalous = rscin[i] > THRESHOLD;
    images.push({
      id: i,
      name: names[i],
      path: `/data/bottle/test/${names[i]}`,
      score: 1.5 + 2 * (1 - rscin[i]) * ((i % 3) / 2), // not monotone in rscin
      rscin: rscin[i],
      decision: anomalous ? 'anomalous' : 'normal',
      thumb: await jpegDataUri(base),
      heat: await jpegDataUri(heatPixels(base, cx, cy, rscin[i])),
      region: anomalous ? { x: ((cx - 9) / SIZE) * 900, y: ((cy - 9) / SIZE) * 900, width: (18 / SIZE) * 900, height: (18 / SIZE) * 900 } : null,
      originalWidth: 900,
      originalHeight: 900,
      ...(labels[i] === undefined ? {} : { label: labels[i], defectType: labels[i] === 1 ? 'broken_large' : 'good' }),
    });
  }
  // Image-level curves from the labelled images, as `musc eval --report` computes them.
  const lab = images.filter((im) => im.label !== undefined);
  const { roc, pr } = imageCurves(lab.map((im) => im.rscin), lab.map((im) => im.label ?? 0));
  const { fpr, tpr } = roc;
  const { recall, precision } = pr;
  return {
    title: 'bottle — line 3 <b>batch</b> & co',
    generatedAt: '2025-06-01T09:30:00.000Z',
    tool: 'musc-ts 0.1.0',
    config: {
      backbone: 'ResNet-50 (ImageNet)',
      resolution: 224,
      k: [1, 2, 3],
      layers: ['layer2', 'layer3'],
      rscin: true,
      'note<script>': '<img src=x onerror=alert(2)>',
    },
    threshold: {
      value: THRESHOLD,
      method: 'otsu',
      assumption: 'The batch contains two groups (normal and defective) whose RsCIN scores separate; Otsu splits them where the between-group variance is largest.',
    },
    images,
    failures: [{ file: '/data/bottle/test/<b>broken</b>.png', error: 'Input file contains unsupported image format' }],
    metrics: {
      image: { auroc: 0.9524, ap: 0.9321, f1max: 0.9091 },
      pixel: { auroc: 0.9812, ap: 0.6123, f1max: 0.6345, pro: 0.9377, aupro_mvtec: 0.9012 },
      roc: { fpr, tpr },
      pr: { recall, precision },
      decisionQuality: decisionQuality(lab.map((im) => im.rscin), lab.map((im) => im.label ?? 0), THRESHOLD),
    },
  };
}

/** The text of the `musc-data` JSON block. */
function jsonBlock(html: string): string {
  const m = /<script type="application\/json" id="musc-data">([\s\S]*?)<\/script>/.exec(html);
  assert.ok(m, 'musc-data block present');
  return m[1];
}

test('escapeHtml and serializeJsonForScript neutralise markup', () => {
  assert.equal(escapeHtml(`<a href="x">'&'</a>`), '&#60;a href=&#34;x&#34;&#62;&#39;&#38;&#39;&#60;/a&#62;');
  const value = { s: '</script><!-- & \u2028\u2029 >' };
  const json = serializeJsonForScript(value);
  assert.doesNotMatch(json, /[<>&\u2028\u2029]/);
  assert.deepEqual(JSON.parse(json), value);
});

test('renderReportHtml: self-contained, escaped, data round-trips', async () => {
  const data = await makeData();
  data.images[0].name = 'line\u2028sep\u2029.png';
  const html = renderReportHtml(data);
  assert.match(html, /^<!doctype html>/);
  assert.ok(
    html.includes(`<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">`),
    'strict CSP meta tag',
  );
  // No URL that could be fetched: no http(s) anywhere, no src/href other than data:.
  assert.doesNotMatch(html, /https?:\/\//i);
  // Escaped text has no raw `<`, so this sees real tags only.
  for (const tag of html.matchAll(/<[a-z][^>]*>/gi)) {
    for (const m of tag[0].matchAll(/\s(?:src|href|action|srcset|poster|data)\s*=\s*["']?([^"'\s>]*)/gi)) {
      assert.match(m[1], /^data:/, `only data: URLs in markup, got ${m[1].slice(0, 40)}`);
    }
  }
  assert.doesNotMatch(html, /@import|url\(/i, 'no CSS loads');
  // Exactly two scripts: the JSON block and one inline script, neither with src.
  const scripts = [...html.matchAll(/<script\b([^>]*)>/gi)].map((m) => m[1]);
  assert.deepEqual(scripts, [' type="application/json" id="musc-data"', '']);
  // The JSON block cannot be broken out of, and parses back to the input.
  const block = jsonBlock(html);
  assert.doesNotMatch(block, /[<>&\u2028\u2029]/);
  assert.deepEqual(JSON.parse(block), data);
  // Hostile strings never appear as markup anywhere in the document.
  for (const bad of ['<img src=x', '<script>window.pwned', '<b>batch', '<b>broken', 'note<script>', 'onerror=alert(2)>']) {
    assert.ok(!html.includes(bad), `raw ${bad} must not appear`);
  }
  assert.ok(html.includes('bottle — line 3 &#60;b&#62;batch&#60;/b&#62; &#38; co'), 'title escaped');
  assert.ok(html.includes('&#60;b&#62;broken&#60;/b&#62;.png'), 'failure file escaped');
  // Static parts the browser test relies on.
  for (const id of ['sort-select', 'filter-select', 'heatmap-toggle', 'histogram', 'threshold-line', 'detail', 'detail-close', 'metrics-table', 'roc-curve', 'pr-curve', 'failures']) {
    assert.ok(html.includes(`data-testid="${id}"`), `hook ${id}`);
  }
  assert.match(html, /<td>95\.2<\/td><td>93\.2<\/td><td>90\.9<\/td>/, 'image metrics in %');
  // Thumbnails are embedded once each (in the JSON), so images dominate the size.
  const thumbBytes = data.images.reduce((s, im) => s + im.thumb.length + im.heat.length, 0);
  for (const im of data.images) assert.equal(html.split(im.thumb).length - 1, 1);
  assert.ok(html.length < thumbBytes + 60_000, `overhead ${html.length - thumbBytes} bytes`);
});

test('a report of images scored against a good bank names the image score it decides on, and its histogram holds scores above 1', async () => {
  const data = await makeData();
  data.config = { ...data.config, bankReference: 'good' };
  data.images[0].rscin = 1.36; // raw scores of good banks run up to 2
  data.threshold = { ...data.threshold, value: 1.2 };
  const html = renderReportHtml(data);
  const svg = /<svg data-testid="histogram"[\s\S]*?<\/svg>/.exec(html)?.[0] ?? '';
  assert.match(svg, /aria-label="Histogram of image scores with the decision threshold"/);
  assert.match(svg, /class="axis-label">image score</);
  const ticks = [...svg.matchAll(/text-anchor="middle">([\d.]+)<\/text>/g)].map((m) => Number(m[1]));
  assert.ok(Math.max(...ticks) >= 1.36, `the axis reaches the largest score: ${ticks}`);
  assert.match(html, /Images whose image score is above the threshold/);
  assert.match(html, /Score = image score against the known-good bank/);
  assert.doesNotMatch(svg, /RsCIN/);
  // An unlabeled run still says RsCIN score, on [0, 1].
  const plain = renderReportHtml(await makeData());
  assert.match(plain, /class="axis-label">RsCIN score</);
});

test('renderReportHtml shows the confusion counts it is given (computed by decisionQuality, not by the renderer)', async () => {
  const data = await makeData();
  const dq = data.metrics!.decisionQuality!;
  // The fixture's own counts, as decisionQuality computed them from scores, labels and threshold.
  const labelled = data.images.filter((im) => im.label !== undefined);
  const count = (label: 0 | 1, decision: string) => labelled.filter((im) => im.label === label && im.decision === decision).length;
  assert.deepEqual(dq.confusion, { tp: count(1, 'anomalous'), fp: count(0, 'anomalous'), fn: count(1, 'normal'), tn: count(0, 'normal') });
  const table = (html: string) => /<table class="confusion" data-testid="confusion">[\s\S]*?<\/table>/.exec(html)?.[0] ?? '';
  const cells = (html: string) => [...table(html).matchAll(/<td class="(?:ok|bad)">(\d+)/g)].map((m) => Number(m[1]));
  assert.deepEqual(cells(renderReportHtml(data)), [dq.confusion.tp, dq.confusion.fn, dq.confusion.fp, dq.confusion.tn]);
  // Other counts in the data are shown as they are.
  const other = { ...data, metrics: { ...data.metrics!, decisionQuality: { ...dq, confusion: { tp: 7, fp: 8, fn: 9, tn: 10 } } } };
  assert.deepEqual(cells(renderReportHtml(other)), [7, 9, 8, 10]);
  const noDq = { ...data, metrics: { ...data.metrics!, decisionQuality: undefined } };
  assert.equal(table(renderReportHtml(noDq)), '', 'no decision quality, no confusion table');
});

test('renderReportHtml: empty run, no labels, no metrics, odd numbers', () => {
  const html = renderReportHtml({
    title: 'empty',
    generatedAt: 'not a date',
    tool: 'musc-ts',
    config: {},
    threshold: { value: Number.NaN, method: 'otsu', assumption: 'n/a' },
    images: [],
    failures: [],
  });
  assert.ok(html.includes('data-testid="failures"'));
  assert.ok(html.includes('data-testid="histogram"'));
  assert.ok(!html.includes('data-testid="threshold-line"'), 'no line for a NaN threshold');
  assert.ok(!html.includes('data-testid="metrics-table"'));
  const markup = html.replace(/<script\b[\s\S]*?<\/script>/gi, '');
  assert.doesNotMatch(markup, /NaN|undefined|Infinity/);
});

test('report in Chromium: grid, sorting, filter, heatmaps, detail, hostile names, no network', { timeout: 60_000 }, async () => {
  if (!existsSync(CHROMIUM)) {
    assert.fail(`Chromium not found at ${CHROMIUM}: the report's browser test needs it. Install it with \`apt-get install chromium\` (CI does), or point MUSC_CHROMIUM at a Chromium binary.`);
  }
  const { chromium } = await import('playwright-core');
  const data = await makeData();
  const html = renderReportHtml(data);
  const file = path.join(tmp, 'report.html');
  await writeFile(file, html);

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const dialogs: string[] = [];
    const requests: string[] = [];
    const errors: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    page.on('request', (r) => requests.push(r.url()));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });

    const cards = page.getByTestId('card');
    const read = async (attr: 'data-name' | 'data-score', onlyVisible = false): Promise<string[]> =>
      (await page.evaluate(
        `Array.from(document.querySelectorAll('[data-testid=card]')).filter(c => ${onlyVisible ? '!c.hidden' : 'true'}).map(c => c.getAttribute(${JSON.stringify(attr)}))`,
      )) as string[];
    const scores = async (): Promise<number[]> => (await read('data-score')).map(Number);

    // Every image has a card; default order is RsCIN score descending.
    assert.equal(await cards.count(), 12);
    const byScoreDesc = [...data.images].sort((a, b) => b.rscin - a.rscin);
    assert.deepEqual(await scores(), byScoreDesc.map((im) => im.rscin));
    assert.deepEqual(await read('data-name'), byScoreDesc.map((im) => im.name));

    await page.getByTestId('sort-select').selectOption('score-asc');
    assert.deepEqual(await scores(), [...byScoreDesc].reverse().map((im) => im.rscin));

    await page.getByTestId('sort-select').selectOption('name');
    const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });
    assert.deepEqual(await read('data-name'), data.images.map((im) => im.name).sort((a, b) => collator.compare(a, b)));

    // Filter: only matching cards stay visible.
    const anomalous = data.images.filter((im) => im.decision === 'anomalous').map((im) => im.name).sort();
    await page.getByTestId('filter-select').selectOption('anomalous');
    assert.deepEqual((await read('data-name', true)).sort(), anomalous);
    assert.equal(await page.locator('[data-testid=card]:visible').count(), anomalous.length);
    await page.getByTestId('filter-select').selectOption('normal');
    assert.equal(await page.locator('[data-testid=card]:visible').count(), 12 - anomalous.length);
    assert.ok((await read('data-name', true)).every((n) => !anomalous.includes(n)));
    await page.getByTestId('filter-select').selectOption('all');
    assert.equal(await page.locator('[data-testid=card]:visible').count(), 12);
    await page.getByTestId('sort-select').selectOption('score-desc');

    // Heatmap toggle: all cards switch to the overlay, and back; one card can toggle alone.
    const cardSrcs = async (): Promise<string[]> =>
      (await page.evaluate(`Array.from(document.querySelectorAll('[data-testid=card] img')).map(i => i.getAttribute('src'))`)) as string[];
    assert.deepEqual(await cardSrcs(), byScoreDesc.map((im) => im.thumb));
    await page.getByTestId('heatmap-toggle').check();
    assert.deepEqual(await cardSrcs(), byScoreDesc.map((im) => im.heat));
    await page.getByTestId('heatmap-toggle').uncheck();
    assert.deepEqual(await cardSrcs(), byScoreDesc.map((im) => im.thumb));
    await cards.nth(1).getByTestId('card-heat-toggle').click();
    const one = await cardSrcs();
    assert.equal(one[1], byScoreDesc[1].heat);
    assert.equal(one[0], byScoreDesc[0].thumb);
    assert.equal(await page.getByTestId('detail').isVisible(), false, 'the per-card toggle does not open the detail');
    await cards.nth(1).getByTestId('card-heat-toggle').click();

    // Detail view: right image, region box drawn, Escape closes.
    const detail = page.getByTestId('detail');
    assert.equal(await detail.isVisible(), false);
    await cards.first().click();
    assert.equal(await detail.isVisible(), true);
    assert.equal(await page.getByTestId('detail-name').textContent(), byScoreDesc[0].name);
    assert.equal(await page.locator('#detail-heat').getAttribute('src'), byScoreDesc[0].heat);
    assert.equal(await page.locator('#detail .box:visible').count(), 2, 'region drawn on image and overlay');
    const box = (await page.evaluate(
      `(() => { const f = document.querySelector('#detail .frame').getBoundingClientRect(); const b = document.querySelector('#detail .box').getBoundingClientRect(); return [(b.left - f.left) / f.width, (b.top - f.top) / f.height, b.width / f.width]; })()`,
    )) as number[];
    const r = byScoreDesc[0].region!;
    assert.ok(Math.abs(box[0] - r.x / 900) < 0.01 && Math.abs(box[1] - r.y / 900) < 0.01 && Math.abs(box[2] - r.width / 900) < 0.01, `box at ${box}`);
    await page.keyboard.press('Escape');
    assert.equal(await detail.isVisible(), false);
    await cards.nth(2).click();
    assert.equal(await page.getByTestId('detail-name').textContent(), byScoreDesc[2].name);
    await page.getByTestId('detail-close').click();
    assert.equal(await detail.isVisible(), false);

    // Hostile names: literal text on the card and in the detail view, nothing executed.
    for (const bad of [XSS_IMG, XSS_SCRIPT]) {
      const card = page.locator('[data-testid=card]', { has: page.getByTestId('card-name').getByText(bad, { exact: true }) });
      assert.equal(await card.count(), 1, `card for ${bad}`);
      assert.equal(await card.getByTestId('card-name').textContent(), bad);
      assert.equal(await card.getAttribute('data-name'), bad);
      await card.click();
      assert.equal(await page.getByTestId('detail-name').textContent(), bad);
      assert.ok(((await page.locator('#detail-facts').textContent()) ?? '').includes(`/data/bottle/test/${bad}`));
      await page.keyboard.press('Escape');
    }
    assert.equal(await page.evaluate('typeof window.pwned'), 'undefined');
    assert.equal(await page.evaluate(`document.querySelectorAll('img[src=x], script[src]').length`), 0);
    assert.equal(await page.locator('script').count(), 2);
    assert.ok(((await page.getByTestId('failures').textContent()) ?? '').includes('/data/bottle/test/<b>broken</b>.png'));
    assert.equal(await page.getByTestId('failures').locator('b').count(), 0);

    // Charts and metrics.
    assert.equal(await page.getByTestId('histogram').locator('[data-testid=threshold-line]').count(), 1);
    assert.ok(((await page.getByTestId('metrics-table').textContent()) ?? '').includes('95.2'));
    assert.equal(await page.getByTestId('roc-curve').locator('polyline').count(), 1);
    assert.equal(await page.getByTestId('pr-curve').locator('polyline').count(), 1);

    const shotPath = process.env.MUSC_SCREENSHOT ? path.join(repoRoot(), 'docs', 'report-screenshot-test.png') : path.join(tmp, 'report.png');
    await mkdir(path.dirname(shotPath), { recursive: true });
    await page.screenshot({ path: shotPath, fullPage: true });

    assert.deepEqual(dialogs, [], 'no alert/confirm/prompt');
    const external = requests.filter((u) => !u.startsWith('data:') && !u.startsWith('file:'));
    assert.deepEqual(external, [], 'no network requests');
    assert.deepEqual(errors, [], 'no console errors');
  } finally {
    await browser.close();
  }
});
