/**
 * The self-contained HTML report: one file a quality engineer can open from a
 * share or attach to a ticket. It must work offline and must never fetch
 * anything, so CSS, script, charts (inline SVG) and images (data URIs) are all
 * inside, and a strict Content-Security-Policy makes the browser enforce that.
 *
 * File names and paths come from the user's disk and are untrusted. Static parts
 * are rendered here with {@link escapeHtml}; the image grid is built in the
 * browser from a JSON block using `textContent` only, which keeps every
 * thumbnail in the file exactly once. The page's style and script are real files,
 * `browser/report.css` and `browser/report.js` (type-checked by `tsconfig.browser.json`).
 */
import { pageAsset } from '../util/page-assets.js';
import type { ReportConfigValue, ReportData, ReportImage, ReportMetrics } from './report-data.js';

/** The page's stylesheet and script, inlined as written. */
const REPORT_CSS = 'src/report/browser/report.css';
const REPORT_SCRIPT = 'src/report/browser/report.js';

/** The page's Content-Security-Policy: nothing may be loaded except data: images. */
export const REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'";

/** Escapes text for HTML element content and double- or single-quoted attribute values. */
export function escapeHtml(text: string): string {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * JSON for a `<script type="application/json">` block. `<`, `>` and `&` become
 * `\u003c`-style escapes so no string can close the script element or open a
 * comment, and U+2028/U+2029 are escaped for old JS parsers; `JSON.parse` of the
 * element's text gives back the original value.
 */
export function serializeJsonForScript(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const capitalised = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
const fmt3 = (v: number): string => (finite(v) ? v.toFixed(3) : '—');
const pct = (v: number | undefined): string => (v !== undefined && finite(v) ? (v * 100).toFixed(1) : '—');
/** SVG coordinates: short, locale-independent. */
const n2 = (v: number): string => (Math.round(v * 100) / 100).toString();

function formatConfigValue(v: ReportConfigValue): string {
  if (Array.isArray(v)) return v.join(', ');
  return String(v);
}

function formatTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

// ---------------------------------------------------------------------------
// Charts (inline SVG, rendered here so they work without script)

const COLORS = {
  normal: '#2da44e',
  anomalous: '#cf222e',
  unlabelled: '#8c959f',
  accent: '#0969da',
  axis: '#d0d7de',
  text: '#57606a',
  ink: '#1f2328',
};

const DECIDED = { normal: '#8fd19e', anomalous: '#ff9492', unlabelled: '#8c959f' };

/**
 * What the threshold applies to: the RsCIN score, except for images scored against a bank of
 * known-good images, which are decided on their raw image score (0..2, not 0..1).
 */
function decisionScoreName(data: ReportData): string {
  return data.config.bankReference === 'good' ? 'image score' : 'RsCIN score';
}

function histogramSvg(images: readonly ReportImage[], threshold: number, scoreName: string): string {
  const BINS = 30;
  const W = 640;
  const H = 230;
  const m = { l: 36, r: 14, t: 26, b: 36 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  // RsCIN lives in [0, 1]; widen only for what lies outside (a fixed threshold, a good bank's raw
  // scores up to 2), so no score is clipped into the last bin and the threshold line stays visible.
  const values = [...images.map((i) => i.rscin), threshold].filter(finite);
  const lo = Math.min(0, ...values);
  const hi = Math.max(1, ...values);
  const span = hi - lo || 1;
  const hasLabels = images.some((i) => i.label === 0 || i.label === 1);
  const bins = Array.from({ length: BINS }, () => ({ normal: 0, anomalous: 0, unlabelled: 0 }));
  for (const img of images) {
    if (!finite(img.rscin)) continue;
    const b = Math.min(BINS - 1, Math.max(0, Math.floor(((img.rscin - lo) / span) * BINS)));
    // Without any labels, the stack shows the decisions instead (lighter colours, own legend).
    if (hasLabels ? img.label === 1 : img.decision === 'anomalous') bins[b].anomalous++;
    else if (hasLabels ? img.label === 0 : img.decision === 'normal') bins[b].normal++;
    else bins[b].unlabelled++;
  }
  const maxCount = Math.max(1, ...bins.map((b) => b.normal + b.anomalous + b.unlabelled));
  const step = Math.max(1, Math.ceil(maxCount / 4));
  const yMax = Math.ceil(maxCount / step) * step;
  const x = (v: number): number => m.l + ((v - lo) / span) * pw;
  const y = (c: number): number => m.t + ph - (c / yMax) * ph;
  const bw = pw / BINS;
  const parts: string[] = [];
  for (let c = 0; c <= yMax; c += step) {
    parts.push(
      `<line x1="${m.l}" x2="${W - m.r}" y1="${n2(y(c))}" y2="${n2(y(c))}" stroke="${COLORS.axis}" stroke-width="${c === 0 ? 1 : 0.6}"${c === 0 ? '' : ' stroke-dasharray="2 3"'}/>`,
      `<text x="${m.l - 6}" y="${n2(y(c) + 3.5)}" text-anchor="end">${c}</text>`,
    );
  }
  bins.forEach((b, i) => {
    const total = b.normal + b.anomalous + b.unlabelled;
    if (total === 0) return;
    const x0 = m.l + i * bw + 1;
    const from = lo + (i / BINS) * span;
    const to = lo + ((i + 1) / BINS) * span;
    const detail = ` (${hasLabels ? 'labelled ' : 'decided '}${b.normal} normal, ${b.anomalous} anomalous${b.unlabelled ? `, ${b.unlabelled} unlabelled` : ''})`;
    let acc = 0;
    const rects: string[] = [];
    for (const [key, count] of [['normal', b.normal], ['anomalous', b.anomalous], ['unlabelled', b.unlabelled]] as const) {
      if (!count) continue;
      const y1 = y(acc + count);
      const fill = hasLabels ? COLORS[key] : DECIDED[key];
      rects.push(`<rect x="${n2(x0)}" y="${n2(y1)}" width="${n2(bw - 2)}" height="${n2(y(acc) - y1)}" fill="${fill}" rx="1"/>`);
      acc += count;
    }
    parts.push(`<g><title>${fmt3(from)}–${fmt3(to)}: ${total} image${total === 1 ? '' : 's'}${detail}</title>${rects.join('')}</g>`);
  });
  const ticks = span === 1 && lo === 0 ? [0, 0.2, 0.4, 0.6, 0.8, 1] : [lo, lo + span / 2, hi];
  for (const t of ticks) {
    parts.push(
      `<line x1="${n2(x(t))}" x2="${n2(x(t))}" y1="${m.t + ph}" y2="${m.t + ph + 4}" stroke="${COLORS.text}"/>`,
      `<text x="${n2(x(t))}" y="${m.t + ph + 16}" text-anchor="middle">${n2(t)}</text>`,
    );
  }
  parts.push(`<text x="${m.l + pw / 2}" y="${H - 4}" text-anchor="middle" class="axis-label">${escapeHtml(scoreName)}</text>`);
  if (finite(threshold)) {
    const tx = x(threshold);
    const anchor = tx > m.l + pw * 0.8 ? 'end' : 'start';
    const lx = anchor === 'end' ? tx - 5 : tx + 5;
    parts.push(
      `<line data-testid="threshold-line" x1="${n2(tx)}" x2="${n2(tx)}" y1="${m.t - 8}" y2="${m.t + ph}" stroke="${COLORS.ink}" stroke-width="1.5" stroke-dasharray="5 3"/>`,
      `<text x="${n2(lx)}" y="${m.t - 1}" text-anchor="${anchor}" class="thr-label">threshold ${fmt3(threshold)}</text>`,
    );
  }
  return `<svg data-testid="histogram" class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="Histogram of ${escapeHtml(scoreName)}s with the decision threshold">${parts.join('')}</svg>`;
}

interface CurveSpec {
  testid: string;
  title: string;
  xs: readonly number[];
  ys: readonly number[];
  xLabel: string;
  yLabel: string;
  /** Reference line: the chance diagonal (ROC) or a horizontal baseline (PR). */
  reference: 'diagonal' | number | null;
}

function curveSvg(spec: CurveSpec): string {
  const W = 320;
  const H = 290;
  const m = { l: 40, r: 12, t: 12, b: 38 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const clamp = (v: number): number => Math.min(1, Math.max(0, v));
  const x = (v: number): number => m.l + clamp(v) * pw;
  const y = (v: number): number => m.t + ph - clamp(v) * ph;
  const parts: string[] = [`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="#fff" stroke="${COLORS.axis}"/>`];
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    if (t > 0 && t < 1) {
      parts.push(
        `<line x1="${n2(x(t))}" x2="${n2(x(t))}" y1="${m.t}" y2="${m.t + ph}" stroke="${COLORS.axis}" stroke-width="0.6" stroke-dasharray="2 3"/>`,
        `<line x1="${m.l}" x2="${m.l + pw}" y1="${n2(y(t))}" y2="${n2(y(t))}" stroke="${COLORS.axis}" stroke-width="0.6" stroke-dasharray="2 3"/>`,
      );
    }
    parts.push(
      `<text x="${n2(x(t))}" y="${m.t + ph + 15}" text-anchor="middle">${t}</text>`,
      `<text x="${m.l - 6}" y="${n2(y(t) + 3.5)}" text-anchor="end">${t}</text>`,
    );
  }
  if (spec.reference === 'diagonal') {
    parts.push(`<line x1="${x(0)}" y1="${y(0)}" x2="${x(1)}" y2="${y(1)}" stroke="${COLORS.unlabelled}" stroke-dasharray="4 3"/>`);
  } else if (typeof spec.reference === 'number' && finite(spec.reference)) {
    const by = n2(y(spec.reference));
    parts.push(`<line x1="${x(0)}" y1="${by}" x2="${x(1)}" y2="${by}" stroke="${COLORS.unlabelled}" stroke-dasharray="4 3"/>`);
  }
  const pts: string[] = [];
  const len = Math.min(spec.xs.length, spec.ys.length);
  for (let i = 0; i < len; i++) {
    if (finite(spec.xs[i]) && finite(spec.ys[i])) pts.push(`${n2(x(spec.xs[i]))},${n2(y(spec.ys[i]))}`);
  }
  if (pts.length > 0) {
    parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${COLORS.accent}" stroke-width="2" stroke-linejoin="round"/>`);
  }
  parts.push(
    `<text x="${m.l + pw / 2}" y="${H - 6}" text-anchor="middle" class="axis-label">${escapeHtml(spec.xLabel)}</text>`,
    `<text transform="translate(11 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle" class="axis-label">${escapeHtml(spec.yLabel)}</text>`,
  );
  return `<figure class="curve"><figcaption>${escapeHtml(spec.title)}</figcaption><svg data-testid="${spec.testid}" class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeHtml(spec.title)}">${parts.join('')}</svg></figure>`;
}

// ---------------------------------------------------------------------------
// Sections

function summarySection(data: ReportData): string {
  const anomalous = data.images.filter((i) => i.decision === 'anomalous').length;
  const normal = data.images.length - anomalous;
  const tile = (label: string, value: number, cls: string): string =>
    `<div class="stat ${cls}"><div class="stat-value">${value}</div><div class="stat-label">${label}</div></div>`;
  const t = data.threshold;
  return `<section class="summary" aria-label="Summary">
<div class="stats">${tile('Images scored', data.images.length, '')}${tile('Anomalous', anomalous, 'stat-anom')}${tile('Normal', normal, 'stat-norm')}${tile('Failed', data.failures.length, data.failures.length ? 'stat-fail' : '')}</div>
<div class="panel threshold">
<div class="thr-head"><span class="thr-kicker">Decision threshold</span><span class="thr-value">${fmt3(t.value)}</span><span class="chip">${escapeHtml(t.method)}</span></div>
<p class="thr-rule">Images whose ${escapeHtml(decisionScoreName(data))} is above the threshold are marked <b class="t-anom">anomalous</b>, the rest <b class="t-norm">normal</b>.</p>
<p class="thr-assumption"><span>Assumption</span>${escapeHtml(t.assumption)}</p>
</div>
</section>`;
}

function configPanel(config: ReportData['config']): string {
  const rows = Object.entries(config)
    .map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(formatConfigValue(v))}</dd>`)
    .join('');
  return `<div class="panel"><h2>Configuration</h2>${rows ? `<dl class="kv">${rows}</dl>` : '<p class="muted">No configuration recorded.</p>'}</div>`;
}

function histogramPanel(data: ReportData): string {
  const hasLabels = data.images.some((i) => i.label === 0 || i.label === 1);
  const legend = hasLabels
    ? `<span><i style="background:${COLORS.normal}"></i>labelled normal</span><span><i style="background:${COLORS.anomalous}"></i>labelled anomalous</span>${
        data.images.some((i) => i.label === undefined) ? `<span><i style="background:${COLORS.unlabelled}"></i>unlabelled</span>` : ''
      }`
    : `<span><i style="background:${DECIDED.normal}"></i>decided normal</span><span><i style="background:${DECIDED.anomalous}"></i>decided anomalous</span><span class="muted">(no labels)</span>`;
  return `<div class="panel"><h2>Score distribution</h2><p class="muted sub">${escapeHtml(capitalised(decisionScoreName(data)))}s in 30 bins; the dashed line is the decision threshold.</p>${histogramSvg(data.images, data.threshold.value, decisionScoreName(data))}<div class="legend">${legend}<span><i class="dash"></i>threshold</span></div></div>`;
}

/** Share of labelled anomalous images (the PR curve's chance level), from the confusion counts. */
function prevalence(dq: ReportMetrics['decisionQuality']): number | null {
  if (!dq) return null;
  const { tp, fp, fn, tn } = dq.confusion;
  const n = tp + fp + fn + tn;
  return n > 0 ? (tp + fn) / n : null;
}

function metricsSection(metrics: ReportMetrics, data: ReportData): string {
  const im = metrics.image;
  const px = metrics.pixel;
  const table = `<table class="metrics" data-testid="metrics-table">
<thead><tr><th scope="col">Level</th><th scope="col">AUROC</th><th scope="col">AP</th><th scope="col">F1-max</th><th scope="col">PRO</th><th scope="col">AUPRO@0.3</th></tr></thead>
<tbody><tr><th scope="row">Image</th><td>${pct(im.auroc)}</td><td>${pct(im.ap)}</td><td>${pct(im.f1max)}</td><td class="na">—</td><td class="na">—</td></tr>
${px ? `<tr><th scope="row">Pixel</th><td>${pct(px.auroc)}</td><td>${pct(px.ap)}</td><td>${pct(px.f1max)}</td><td>${pct(px.pro)}</td><td>${pct(px.aupro_mvtec)}</td></tr>` : ''}</tbody>
</table><p class="muted note">All values in %. PRO is MuSc's (cflow-ad) number; AUPRO@0.3 is the official MVTec one.${px ? '' : ' No masks, so no pixel-level metrics.'}</p>`;

  let quality = '';
  const dq = metrics.decisionQuality;
  if (dq) {
    quality = `<h3>Decision quality</h3><table class="metrics dq" data-testid="decision-quality">
<thead><tr><th scope="col">Threshold</th><th scope="col">Value</th><th scope="col">Accuracy</th><th scope="col">F1</th></tr></thead>
<tbody><tr><th scope="row">Automatic (${escapeHtml(data.threshold.method)})</th><td>${fmt3(data.threshold.value)}</td><td>${pct(dq.accuracy)}</td><td>${pct(dq.f1)}</td></tr>
<tr><th scope="row">Best possible (oracle)</th><td>${fmt3(dq.bestThreshold)}</td><td>${pct(dq.bestAccuracy)}</td><td>${pct(dq.bestF1)}</td></tr></tbody></table>
<p class="muted note">The oracle row picks thresholds with the ground-truth labels: an upper bound, not something the automatic rule can know.</p>`;
    const { tp, fp, fn, tn } = dq.confusion;
    quality += `<h3>Confusion (automatic threshold)</h3><table class="confusion" data-testid="confusion"><thead><tr><th></th><th scope="col">Decided anomalous</th><th scope="col">Decided normal</th></tr></thead>
<tbody><tr><th scope="row">Labelled anomalous</th><td class="ok">${tp}</td><td class="bad">${fn}<small> missed</small></td></tr>
<tr><th scope="row">Labelled normal</th><td class="bad">${fp}<small> false alarms</small></td><td class="ok">${tn}</td></tr></tbody></table>`;
  }
  const roc = curveSvg({
    testid: 'roc-curve',
    title: `ROC curve · AUROC ${pct(im.auroc)}%`,
    xs: metrics.roc.fpr,
    ys: metrics.roc.tpr,
    xLabel: 'False positive rate',
    yLabel: 'True positive rate',
    reference: 'diagonal',
  });
  const pr = curveSvg({
    testid: 'pr-curve',
    title: `Precision–recall curve · AP ${pct(im.ap)}%`,
    xs: metrics.pr.recall,
    ys: metrics.pr.precision,
    xLabel: 'Recall',
    yLabel: 'Precision',
    reference: prevalence(dq),
  });
  return `<section class="panel" aria-labelledby="h-metrics"><h2 id="h-metrics">Evaluation against labels</h2>
<div class="metrics-grid"><div class="metrics-text">${table}${quality}</div><div class="curves">${roc}${pr}</div></div></section>`;
}

function failuresSection(failures: ReportData['failures']): string {
  const body =
    failures.length === 0
      ? '<p class="muted">None: every file was scored.</p>'
      : `<table class="failures"><thead><tr><th scope="col">File</th><th scope="col">Error</th></tr></thead><tbody>${failures
          .map((f) => `<tr><td class="mono">${escapeHtml(f.file)}</td><td>${escapeHtml(f.error)}</td></tr>`)
          .join('')}</tbody></table>`;
  return `<section class="panel" data-testid="failures" aria-labelledby="h-failures"><h2 id="h-failures">Skipped files <span class="count">${failures.length}</span></h2>${body}</section>`;
}

function gridSection(count: number, scoreName: string): string {
  return `<section class="panel" aria-labelledby="h-images"><div class="grid-head"><h2 id="h-images">Images</h2>
<div class="toolbar" role="group" aria-label="Grid controls">
<label>Sort <select id="sort" data-testid="sort-select"><option value="score-desc" selected>Score: high → low</option><option value="score-asc">Score: low → high</option><option value="name">Name</option></select></label>
<label>Show <select id="filter" data-testid="filter-select"><option value="all" selected>All</option><option value="anomalous">Anomalous</option><option value="normal">Normal</option></select></label>
<label class="switch"><input type="checkbox" id="heat" data-testid="heatmap-toggle">Show heatmaps</label>
<span id="shown" class="muted" aria-live="polite">${count} images</span></div></div>
<p class="muted sub">${
    scoreName === 'RsCIN score'
      ? "Score = RsCIN score (what the threshold applies to); raw = the image score before RsCIN (the map's max, or its excess over the typical map: see imageScore under Configuration)."
      : "Score = image score against the known-good bank (what the threshold applies to: the map's max, or its excess over the bank's typical map)."
  } Click a card for details.</p>
<div id="grid" class="grid"></div><p id="empty" class="muted empty" hidden>No images match this filter.</p>
<noscript><p class="muted">The image grid needs JavaScript.</p></noscript></section>`;
}

const DETAIL = `<div id="detail" class="modal" data-testid="detail" role="dialog" aria-modal="true" aria-labelledby="detail-name" hidden>
<div class="modal-panel">
<div class="modal-head"><div class="modal-title"><span id="detail-badge" class="badge"></span><h2 id="detail-name" data-testid="detail-name"></h2></div>
<div class="modal-actions"><button type="button" id="detail-prev" class="btn" aria-label="Previous image" title="Previous (←)">‹</button><button type="button" id="detail-next" class="btn" aria-label="Next image" title="Next (→)">›</button><button type="button" id="detail-close" class="btn" data-testid="detail-close" aria-label="Close" title="Close (Esc)">✕</button></div></div>
<div class="modal-body"><figure><div class="frame"><img id="detail-img" alt=""><div class="box" hidden></div></div><figcaption>Image</figcaption></figure>
<figure><div class="frame"><img id="detail-heat" alt=""><div class="box" hidden></div></div><figcaption>Anomaly heatmap overlay</figcaption></figure></div>
<dl id="detail-facts" class="kv facts"></dl>
</div></div>`;

/**
 * Renders the report as one self-contained HTML document (no network access:
 * inline CSS/JS/SVG, images as data URIs, enforced by a CSP meta tag).
 *
 * Untrusted strings (file names, paths, errors, title, config) are HTML-escaped
 * where rendered here and set with `textContent` in the page; the embedded JSON
 * is escaped with {@link serializeJsonForScript} so it cannot end its script block.
 */
export function renderReportHtml(data: ReportData): string {
  const title = escapeHtml(data.title);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${REPORT_CSP}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="${escapeHtml(data.tool)}">
<title>${title} · anomaly report</title>
<link rel="icon" href="data:,">
<style>${pageAsset(REPORT_CSS)}</style>
</head>
<body>
<header class="top"><div class="wrap"><div class="eyebrow">Anomaly detection report · MuSc zero-shot</div><h1>${title}</h1>
<div class="meta">Generated ${escapeHtml(formatTime(data.generatedAt))} by ${escapeHtml(data.tool)}</div></div></header>
<main class="wrap">
${summarySection(data)}
<div class="row">${histogramPanel(data)}${configPanel(data.config)}</div>
${data.metrics ? metricsSection(data.metrics, data) : ''}
${gridSection(data.images.length, decisionScoreName(data))}
${failuresSection(data.failures)}
</main>
${DETAIL}
<script type="application/json" id="musc-data">${serializeJsonForScript(data)}</script>
<script>${pageAsset(REPORT_SCRIPT)}</script>
</body>
</html>
`;
}
