/**
 * The self-contained HTML report: one file a quality engineer can open from a
 * share or attach to a ticket. It must work offline and must never fetch
 * anything, so CSS, script, charts (inline SVG) and images (data URIs) are all
 * inside, and a strict Content-Security-Policy makes the browser enforce that.
 *
 * File names and paths come from the user's disk and are untrusted. Static parts
 * are rendered here with {@link escapeHtml}; the image grid is built in the
 * browser from a JSON block using `textContent` only, which keeps every
 * thumbnail in the file exactly once.
 */
import type { ReportConfigValue, ReportData, ReportImage, ReportMetrics } from './report-data.js';

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

function histogramSvg(images: readonly ReportImage[], threshold: number): string {
  const BINS = 30;
  const W = 640;
  const H = 230;
  const m = { l: 36, r: 14, t: 26, b: 36 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  // RsCIN lives in [0, 1]; widen only if a fixed threshold lies outside, so its line stays visible.
  const lo = finite(threshold) ? Math.min(0, threshold) : 0;
  const hi = finite(threshold) ? Math.max(1, threshold) : 1;
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
  parts.push(`<text x="${m.l + pw / 2}" y="${H - 4}" text-anchor="middle" class="axis-label">RsCIN score</text>`);
  if (finite(threshold)) {
    const tx = x(threshold);
    const anchor = tx > m.l + pw * 0.8 ? 'end' : 'start';
    const lx = anchor === 'end' ? tx - 5 : tx + 5;
    parts.push(
      `<line data-testid="threshold-line" x1="${n2(tx)}" x2="${n2(tx)}" y1="${m.t - 8}" y2="${m.t + ph}" stroke="${COLORS.ink}" stroke-width="1.5" stroke-dasharray="5 3"/>`,
      `<text x="${n2(lx)}" y="${m.t - 1}" text-anchor="${anchor}" class="thr-label">threshold ${fmt3(threshold)}</text>`,
    );
  }
  return `<svg data-testid="histogram" class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="Histogram of RsCIN scores with the decision threshold">${parts.join('')}</svg>`;
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
<p class="thr-rule">Images whose RsCIN score is above the threshold are marked <b class="t-anom">anomalous</b>, the rest <b class="t-norm">normal</b>.</p>
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
  return `<div class="panel"><h2>Score distribution</h2><p class="muted sub">RsCIN scores in 30 bins; the dashed line is the decision threshold.</p>${histogramSvg(data.images, data.threshold.value)}<div class="legend">${legend}<span><i class="dash"></i>threshold</span></div></div>`;
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
  }
  const labelled = data.images.filter((i) => i.label === 0 || i.label === 1);
  if (labelled.length > 0) {
    let tp = 0;
    let fp = 0;
    let fn = 0;
    let tn = 0;
    for (const i of labelled) {
      const pred = i.decision === 'anomalous';
      if (i.label === 1) pred ? tp++ : fn++;
      else pred ? fp++ : tn++;
    }
    quality += `<h3>Confusion (automatic threshold)</h3><table class="confusion"><thead><tr><th></th><th scope="col">Decided anomalous</th><th scope="col">Decided normal</th></tr></thead>
<tbody><tr><th scope="row">Labelled anomalous</th><td class="ok">${tp}</td><td class="bad">${fn}<small> missed</small></td></tr>
<tr><th scope="row">Labelled normal</th><td class="bad">${fp}<small> false alarms</small></td><td class="ok">${tn}</td></tr></tbody></table>`;
  }
  const positives = labelled.filter((i) => i.label === 1).length;
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
    reference: labelled.length > 0 ? positives / labelled.length : null,
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

function gridSection(count: number): string {
  return `<section class="panel" aria-labelledby="h-images"><div class="grid-head"><h2 id="h-images">Images</h2>
<div class="toolbar" role="group" aria-label="Grid controls">
<label>Sort <select id="sort" data-testid="sort-select"><option value="score-desc" selected>Score: high → low</option><option value="score-asc">Score: low → high</option><option value="name">Name</option></select></label>
<label>Show <select id="filter" data-testid="filter-select"><option value="all" selected>All</option><option value="anomalous">Anomalous</option><option value="normal">Normal</option></select></label>
<label class="switch"><input type="checkbox" id="heat" data-testid="heatmap-toggle">Show heatmaps</label>
<span id="shown" class="muted" aria-live="polite">${count} images</span></div></div>
<p class="muted sub">Score = RsCIN score (what the threshold applies to); raw = max of the anomaly map. Click a card for details.</p>
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

// ---------------------------------------------------------------------------
// Style and behaviour

const CSS = `
:root{--bg:#f6f7f9;--panel:#fff;--line:#e1e4e8;--ink:#1f2328;--muted:#59636e;--anom:#cf222e;--anom-bg:#ffebe9;--norm:#1a7f37;--norm-bg:#dafbe1;--accent:#0969da;--warn:#9a6700;--warn-bg:#fff8c5;color-scheme:light}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI","Noto Sans",Helvetica,Arial,sans-serif;font-variant-numeric:tabular-nums}
body.modal-open{overflow:hidden}
.wrap{max-width:1240px;margin:0 auto;padding:0 20px}
header.top{background:#fff;border-bottom:1px solid var(--line);padding:18px 0 16px;margin-bottom:18px}
.eyebrow{font-size:12px;letter-spacing:.06em;text-transform:uppercase;color:var(--muted);font-weight:600}
h1{font-size:22px;margin:2px 0 4px;overflow-wrap:anywhere}
h2{font-size:16px;margin:0 0 10px}
h3{font-size:14px;margin:18px 0 8px}
.meta,.muted{color:var(--muted)}
.sub{margin:-6px 0 10px;font-size:13px}
.note{font-size:12px;margin:6px 0 0}
main{display:grid;gap:16px;padding-bottom:28px}
.panel{background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:16px 18px;min-width:0}
.summary{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1.25fr);gap:16px}
.stats{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:12px}
.stat{background:#fff;border:1px solid var(--line);border-radius:10px;padding:10px 16px;border-left:4px solid #8c959f;display:flex;align-items:baseline;gap:10px}
.stat-anom{border-left-color:var(--anom)}.stat-norm{border-left-color:var(--norm)}.stat-fail{border-left-color:#bf8700}
.stat-value{font-size:28px;font-weight:650;line-height:1.1}
.stat-label{color:var(--muted);font-size:13px}
.threshold p{margin:8px 0 0}
.thr-head{display:flex;align-items:baseline;gap:10px;flex-wrap:wrap}
.thr-kicker{font-size:12px;letter-spacing:.06em;text-transform:uppercase;color:var(--muted);font-weight:600}
.thr-value{font-size:24px;font-weight:650}
.thr-assumption{background:#f6f8fa;border-left:3px solid var(--accent);padding:6px 10px;border-radius:0 6px 6px 0;overflow-wrap:anywhere}
.thr-assumption span{display:block;font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);font-weight:600}
.t-anom{color:var(--anom)}.t-norm{color:var(--norm)}
.chip{display:inline-block;font-size:12px;padding:1px 8px;border-radius:999px;background:#eaeef2;color:var(--ink);overflow-wrap:anywhere}
.row{display:grid;grid-template-columns:minmax(0,1.6fr) minmax(0,1fr);gap:16px}
.chart{display:block;width:100%;height:auto;font-size:11px;fill:var(--muted)}
.chart .axis-label{font-size:11.5px;fill:var(--ink)}
.chart .thr-label{font-size:11.5px;font-weight:600;fill:var(--ink)}
.legend{display:flex;gap:14px;flex-wrap:wrap;font-size:12px;color:var(--muted);margin-top:6px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.legend i.dash{width:14px;height:0;border-top:2px dashed var(--ink);border-radius:0;vertical-align:3px}
.kv{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:5px 14px;margin:0;font-size:13px}
.kv dt{color:var(--muted)}
.kv dd{margin:0;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;overflow-wrap:anywhere}
.metrics-grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1.15fr);gap:24px;align-items:start}
.curves{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.curve{margin:0}.curve figcaption{font-size:12.5px;font-weight:600;margin-bottom:4px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:right}
th:first-child,td:first-child{text-align:left}
thead th{font-size:12px;color:var(--muted);font-weight:600;background:#f6f8fa}
td.na{color:#afb8c1}
.confusion td.ok{color:var(--norm);font-weight:600}.confusion td.bad{color:var(--anom);font-weight:600}
.confusion small{font-weight:400;color:var(--muted)}
.failures th,.failures td{text-align:left;vertical-align:top}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;overflow-wrap:anywhere}
.count{display:inline-block;min-width:22px;padding:0 7px;border-radius:999px;background:#eaeef2;font-size:12px;text-align:center;vertical-align:2px}
.grid-head{display:flex;justify-content:space-between;align-items:center;gap:12px;flex-wrap:wrap;margin-bottom:10px}
.grid-head h2{margin:0}
.toolbar{display:flex;gap:14px;align-items:center;flex-wrap:wrap;font-size:13px}
.toolbar label{display:inline-flex;gap:6px;align-items:center;color:var(--muted)}
select{font:inherit;color:var(--ink);padding:4px 8px;border:1px solid #d0d7de;border-radius:6px;background:#f6f8fa}
.switch{cursor:pointer;user-select:none}
.switch input{appearance:none;-webkit-appearance:none;position:relative;flex:none;width:34px;height:20px;margin:0;border-radius:999px;background:#d0d7de;cursor:pointer;transition:background .15s}
.switch input::after{content:"";position:absolute;top:2px;left:2px;width:16px;height:16px;border-radius:50%;background:#fff;box-shadow:0 1px 2px rgba(0,0,0,.25);transition:transform .15s}
.switch input:checked{background:var(--accent)}
.switch input:checked::after{transform:translateX(14px)}
.switch input:focus-visible,select:focus-visible,button:focus-visible{outline:2px solid var(--accent);outline-offset:2px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(172px,1fr));gap:12px}
.card{position:relative;display:flex;flex-direction:column;border:1px solid var(--line);border-radius:10px;overflow:hidden;background:#fff;cursor:pointer;transition:box-shadow .15s,border-color .15s}
.card[hidden]{display:none}
.card:hover{border-color:#afb8c1;box-shadow:0 3px 10px rgba(31,35,40,.08)}
.card.is-anom{border-top:3px solid var(--anom)}.card.is-norm{border-top:3px solid var(--norm)}
.card-open{all:unset;display:block;cursor:pointer}
.card-open:focus-visible{outline:2px solid var(--accent);outline-offset:-2px}
.thumb{aspect-ratio:1/1;background:#eef0f3;display:flex;align-items:center;justify-content:center}
.thumb img{width:100%;height:100%;object-fit:contain;display:block}
.card-name{padding:8px 10px 0;font-size:12.5px;font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.card-score{padding:2px 10px 0;display:flex;align-items:baseline;gap:6px}
.card-score b{font-size:16px}
.card-score small{color:var(--muted);font-size:11.5px}
.bar{position:relative;height:4px;margin:6px 10px 0;background:#eaeef2;border-radius:2px}
.bar .fill{position:absolute;left:0;top:0;bottom:0;border-radius:2px}
.is-anom .bar .fill{background:var(--anom)}.is-norm .bar .fill{background:var(--norm)}
.bar .tick{position:absolute;top:-3px;bottom:-3px;width:2px;margin-left:-1px;background:var(--ink)}
.card-foot{display:flex;align-items:center;gap:6px;padding:8px 10px 10px;min-width:0}
.badge{display:inline-block;font-size:11px;font-weight:700;letter-spacing:.04em;text-transform:uppercase;padding:2px 7px;border-radius:999px}
.badge.anomalous{background:var(--anom-bg);color:var(--anom)}.badge.normal{background:var(--norm-bg);color:var(--norm)}
.gt{min-width:0;font-size:11px;color:var(--muted);padding:1px 6px;border:1px solid var(--line);border-radius:999px;max-width:100%;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.gt.miss{color:var(--warn);background:var(--warn-bg);border-color:#eac54f}
.mini{position:absolute;top:8px;right:8px;font:inherit;font-size:11px;padding:2px 7px;border:1px solid rgba(31,35,40,.15);border-radius:6px;background:rgba(255,255,255,.9);color:var(--ink);cursor:pointer;opacity:.85}
.card:hover .mini,.mini:focus-visible,.mini[aria-pressed=true]{opacity:1}
.mini[aria-pressed=true]{background:#ddf4ff;border-color:#54aeff}
.empty{text-align:center;padding:24px 0}
.modal{position:fixed;inset:0;background:rgba(31,35,40,.55);display:flex;align-items:center;justify-content:center;padding:24px;z-index:10}
.modal[hidden]{display:none}
.modal-panel{background:#fff;border-radius:12px;max-width:1100px;width:100%;max-height:100%;overflow:auto;padding:16px 20px 20px;box-shadow:0 12px 40px rgba(0,0,0,.3)}
.modal-head{display:flex;justify-content:space-between;align-items:flex-start;gap:12px;margin-bottom:12px}
.modal-title{display:flex;align-items:center;gap:10px;min-width:0}
.modal-title h2{margin:0;overflow-wrap:anywhere}
.modal-actions{display:flex;gap:6px;flex:none}
.btn{font:inherit;font-size:16px;line-height:1;width:32px;height:32px;border:1px solid #d0d7de;border-radius:6px;background:#f6f8fa;color:var(--ink);cursor:pointer}
.btn:hover{background:#eaeef2}
.modal-body{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.modal-body figure{margin:0;text-align:center}
.modal-body figcaption{font-size:12px;color:var(--muted);margin-top:6px}
.frame{position:relative;display:inline-block;max-width:100%;line-height:0;background:#eef0f3;border-radius:6px;overflow:hidden}
.frame img{display:block;max-width:100%;width:480px;height:auto;max-height:60vh;object-fit:contain}
.box{position:absolute;border:2px solid #ffd33d;box-shadow:0 0 0 1px rgba(0,0,0,.6),inset 0 0 0 1px rgba(0,0,0,.6)}
.box[hidden]{display:none}
.facts{margin-top:14px;grid-template-columns:max-content minmax(0,1fr) max-content minmax(0,1fr)}
@media (max-width:1000px){.summary,.row,.metrics-grid{grid-template-columns:minmax(0,1fr)}}
@media (max-width:640px){.curves,.modal-body{grid-template-columns:1fr}.facts{grid-template-columns:max-content minmax(0,1fr)}}
@media print{.toolbar,.mini,.modal{display:none!important}.panel,.card{break-inside:avoid}}
`;

// Runs in the page. Plain ES2017 without template literals, so it can live in this file as text.
// Untrusted strings only ever reach the DOM through textContent, attributes or img.src.
const SCRIPT = String.raw`(function () {
'use strict';
var data = JSON.parse(document.getElementById('musc-data').textContent || '{}');
var images = Array.isArray(data.images) ? data.images : [];
var thr = data.threshold && typeof data.threshold.value === 'number' ? data.threshold.value : NaN;
function $(id) { return document.getElementById(id); }
function num(v) { return typeof v === 'number' && isFinite(v); }
function fmt(v) { return num(v) ? v.toFixed(3) : '\u2014'; }
function el(tag, cls, text) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function gtText(img) {
  if (img.label === 1) return 'GT: ' + (img.defectType && img.defectType !== 'good' ? img.defectType : 'anomalous');
  if (img.label === 0) return 'GT: normal';
  if (img.defectType) return 'type: ' + img.defectType;
  return '';
}
function mismatch(img) {
  return (img.label === 1 && img.decision !== 'anomalous') || (img.label === 0 && img.decision === 'anomalous');
}
var grid = $('grid'), sortSel = $('sort'), filterSel = $('filter'), heatToggle = $('heat');
var collator = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });
var cards = [];
var visible = [];

function setHeat(rec, on) {
  rec.heat = on;
  rec.im.src = on ? rec.img.heat : rec.img.thumb;
  rec.toggle.textContent = on ? 'Image' : 'Heatmap';
  rec.toggle.setAttribute('aria-pressed', on ? 'true' : 'false');
}

images.forEach(function (img) {
  var anom = img.decision === 'anomalous';
  var card = el('div', 'card ' + (anom ? 'is-anom' : 'is-norm'));
  card.setAttribute('data-testid', 'card');
  card.setAttribute('data-name', String(img.name));
  card.setAttribute('data-score', num(img.rscin) ? String(img.rscin) : '');
  card.setAttribute('data-raw-score', num(img.score) ? String(img.score) : '');
  card.setAttribute('data-decision', String(img.decision));
  var open = el('button', 'card-open');
  open.type = 'button';
  open.setAttribute('aria-label', 'Details for ' + img.name);
  var frame = el('div', 'thumb');
  var im = el('img');
  im.alt = String(img.name);
  im.src = img.thumb;
  frame.appendChild(im);
  var name = el('div', 'card-name', img.name);
  name.title = String(img.name);
  name.setAttribute('data-testid', 'card-name');
  var score = el('div', 'card-score');
  score.appendChild(el('b', null, fmt(img.rscin)));
  score.appendChild(el('small', null, 'raw ' + fmt(img.score)));
  var bar = el('div', 'bar');
  var fill = el('span', 'fill');
  fill.style.width = (num(img.rscin) ? Math.max(0, Math.min(1, img.rscin)) * 100 : 0) + '%';
  bar.appendChild(fill);
  if (num(thr) && thr >= 0 && thr <= 1) {
    var tick = el('span', 'tick');
    tick.style.left = thr * 100 + '%';
    tick.title = 'threshold ' + fmt(thr);
    bar.appendChild(tick);
  }
  open.appendChild(frame);
  open.appendChild(name);
  open.appendChild(score);
  open.appendChild(bar);
  var foot = el('div', 'card-foot');
  foot.appendChild(el('span', 'badge ' + (anom ? 'anomalous' : 'normal'), anom ? 'anomalous' : 'normal'));
  var gt = gtText(img);
  if (gt) {
    var chip = el('span', 'gt' + (mismatch(img) ? ' miss' : ''), gt);
    chip.title = mismatch(img) ? (img.label === 1 ? 'Missed: labelled anomalous' : 'False alarm: labelled normal') : 'Ground truth';
    foot.appendChild(chip);
  }
  var toggle = el('button', 'mini', 'Heatmap');
  toggle.type = 'button';
  toggle.setAttribute('data-testid', 'card-heat-toggle');
  toggle.setAttribute('aria-pressed', 'false');
  card.appendChild(open);
  card.appendChild(foot);
  card.appendChild(toggle);
  var rec = { img: img, card: card, im: im, toggle: toggle, open: open, heat: false };
  toggle.addEventListener('click', function (ev) { ev.stopPropagation(); setHeat(rec, !rec.heat); });
  card.addEventListener('click', function () { openDetail(rec); });
  cards.push(rec);
});

function byName(a, b) { return collator.compare(String(a.img.name), String(b.img.name)) || a.img.id - b.img.id; }
function byScore(dir) {
  return function (a, b) {
    var x = a.img.rscin, y = b.img.rscin;
    if (!num(x) || !num(y)) return (num(x) ? 0 : 1) - (num(y) ? 0 : 1) || byName(a, b);
    return (x - y) * dir || byName(a, b);
  };
}
function apply() {
  var mode = sortSel.value, f = filterSel.value;
  var sorted = cards.slice().sort(mode === 'name' ? byName : byScore(mode === 'score-asc' ? 1 : -1));
  visible = [];
  sorted.forEach(function (rec) {
    var show = f === 'all' || rec.img.decision === f;
    rec.card.hidden = !show;
    if (show) visible.push(rec);
    grid.appendChild(rec.card);
  });
  $('shown').textContent = visible.length === cards.length ? cards.length + ' images' : visible.length + ' of ' + cards.length + ' images';
  $('empty').hidden = visible.length > 0;
}
sortSel.addEventListener('change', apply);
filterSel.addEventListener('change', apply);
heatToggle.addEventListener('change', function () {
  cards.forEach(function (rec) { setHeat(rec, heatToggle.checked); });
});

var detail = $('detail'), current = null;
function placeBox(box, img) {
  var r = img.region, w = img.originalWidth, h = img.originalHeight;
  if (!r || !num(w) || !num(h) || w <= 0 || h <= 0) { box.hidden = true; return; }
  box.style.left = (r.x / w) * 100 + '%';
  box.style.top = (r.y / h) * 100 + '%';
  box.style.width = (r.width / w) * 100 + '%';
  box.style.height = (r.height / h) * 100 + '%';
  box.hidden = false;
}
function fact(dl, k, v) { dl.appendChild(el('dt', null, k)); dl.appendChild(el('dd', null, v)); }
function openDetail(rec) {
  current = rec;
  var img = rec.img, anom = img.decision === 'anomalous';
  $('detail-name').textContent = img.name;
  var badge = $('detail-badge');
  badge.className = 'badge ' + (anom ? 'anomalous' : 'normal');
  badge.textContent = anom ? 'anomalous' : 'normal';
  $('detail-img').src = img.thumb;
  $('detail-img').alt = 'Image ' + img.name;
  $('detail-heat').src = img.heat;
  $('detail-heat').alt = 'Heatmap overlay of ' + img.name;
  var boxes = detail.querySelectorAll('.box');
  for (var i = 0; i < boxes.length; i++) placeBox(boxes[i], img);
  var dl = $('detail-facts');
  dl.textContent = '';
  fact(dl, 'Decision', anom ? 'anomalous' : 'normal');
  fact(dl, 'RsCIN score', fmt(img.rscin) + (num(thr) ? '  (threshold ' + fmt(thr) + ')' : ''));
  fact(dl, 'Image score', fmt(img.score) + '  (max of anomaly map)');
  if (img.label === 0 || img.label === 1) fact(dl, 'Ground truth', (img.label === 1 ? 'anomalous' : 'normal') + (mismatch(img) ? (img.label === 1 ? ' \u2014 missed' : ' \u2014 false alarm') : ''));
  if (img.defectType) fact(dl, 'Defect type', img.defectType);
  fact(dl, 'Original size', num(img.originalWidth) && num(img.originalHeight) ? img.originalWidth + ' \u00d7 ' + img.originalHeight + ' px' : '\u2014');
  var r = img.region;
  fact(dl, 'Strongest region', r ? 'x ' + Math.round(r.x) + ', y ' + Math.round(r.y) + ', ' + Math.round(r.width) + ' \u00d7 ' + Math.round(r.height) + ' px' : 'none');
  fact(dl, 'Path', img.path);
  var idx = visible.indexOf(rec);
  $('detail-prev').disabled = idx <= 0;
  $('detail-next').disabled = idx < 0 || idx >= visible.length - 1;
  if (detail.hidden) {
    detail.hidden = false;
    document.body.classList.add('modal-open');
    $('detail-close').focus();
  }
}
function closeDetail() {
  if (detail.hidden) return;
  detail.hidden = true;
  document.body.classList.remove('modal-open');
  if (current) current.open.focus();
  current = null;
}
function step(d) {
  var idx = visible.indexOf(current);
  if (idx >= 0 && visible[idx + d]) openDetail(visible[idx + d]);
}
$('detail-close').addEventListener('click', closeDetail);
$('detail-prev').addEventListener('click', function () { step(-1); });
$('detail-next').addEventListener('click', function () { step(1); });
detail.addEventListener('click', function (ev) { if (ev.target === detail) closeDetail(); });
document.addEventListener('keydown', function (ev) {
  if (detail.hidden) return;
  if (ev.key === 'Escape') { ev.preventDefault(); closeDetail(); }
  else if (ev.key === 'ArrowLeft') step(-1);
  else if (ev.key === 'ArrowRight') step(1);
});
apply();
})();`;

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
<style>${CSS}</style>
</head>
<body>
<header class="top"><div class="wrap"><div class="eyebrow">Anomaly detection report · MuSc zero-shot</div><h1>${title}</h1>
<div class="meta">Generated ${escapeHtml(formatTime(data.generatedAt))} by ${escapeHtml(data.tool)}</div></div></header>
<main class="wrap">
${summarySection(data)}
<div class="row">${histogramPanel(data)}${configPanel(data.config)}</div>
${data.metrics ? metricsSection(data.metrics, data) : ''}
${gridSection(data.images.length)}
${failuresSection(data.failures)}
</main>
${DETAIL}
<script type="application/json" id="musc-data">${serializeJsonForScript(data)}</script>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
