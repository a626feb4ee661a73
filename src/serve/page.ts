/**
 * The page `musc serve` shows at `/`: drop or pick an image, it is POSTed to /score and
 * the verdict and heatmap appear. One self-contained document (inline style and script,
 * no external resources) served with a strict Content-Security-Policy that allows exactly
 * that inline style and script by hash, images from the server, and fetches to it.
 */
import { createHash } from 'node:crypto';
import { turbo } from '../run/overlay.js';

const legendStops = Array.from({ length: 9 }, (_, i) => {
  const [r, g, b] = turbo(i / 8);
  return `rgb(${r},${g},${b}) ${(i * 12.5).toFixed(1)}%`;
}).join(', ');

const STYLE = `
:root { color-scheme: light dark; --fg: #1d2430; --muted: #5d6877; --bg: #f6f7f9; --card: #fff; --line: #d7dce3; --accent: #2f6fdf; --ok: #1f7a3d; --bad: #b42318; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ee; --muted: #9aa4b2; --bg: #14171c; --card: #1c2027; --line: #313843; --accent: #6ea2ff; --ok: #4cc27a; --bad: #ff6b5e; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 920px; margin: 0 auto; padding: 28px 20px 48px; }
h1 { font-size: 22px; margin: 0 0 2px; }
.sub { color: var(--muted); margin: 0 0 20px; font-size: 13px; }
.drop { display: block; border: 2px dashed var(--line); border-radius: 12px; background: var(--card); padding: 36px 20px; text-align: center; cursor: pointer; transition: border-color .15s, background .15s; }
.drop:hover, .drop:focus-within, .drop.over { border-color: var(--accent); }
.drop.over { background: color-mix(in srgb, var(--accent) 8%, var(--card)); }
.drop strong { display: block; font-size: 17px; margin-bottom: 4px; }
.drop .link { color: var(--accent); text-decoration: underline; }
.drop small { display: block; color: var(--muted); margin-top: 6px; }
.visually-hidden { position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; overflow: hidden; clip: rect(0 0 0 0); border: 0; }
#status { min-height: 1.5em; margin: 14px 2px; color: var(--muted); }
#status.error { color: var(--bad); }
.result { background: var(--card); border: 1px solid var(--line); border-radius: 12px; padding: 18px; }
.head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 10px 18px; margin-bottom: 14px; }
.name { font-weight: 600; word-break: break-all; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 999px; font-weight: 600; font-size: 13px; color: #fff; text-transform: uppercase; letter-spacing: .04em; }
.badge.normal { background: var(--ok); }
.badge.anomalous { background: var(--bad); }
dl { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; margin: 0 0 16px; }
dl div { border: 1px solid var(--line); border-radius: 8px; padding: 8px 10px; }
dt { color: var(--muted); font-size: 12px; }
dd { margin: 0; font-size: 18px; font-variant-numeric: tabular-nums; }
figure { margin: 0; }
figure img { display: block; max-width: 100%; max-height: 80vh; height: auto; margin: 0 auto; border-radius: 8px; background: var(--bg); }
figcaption { display: flex; align-items: center; gap: 8px; margin-top: 8px; color: var(--muted); font-size: 12px; }
.legend { flex: 0 1 220px; height: 10px; border-radius: 5px; background: linear-gradient(90deg, ${legendStops}); }
`;

const SCRIPT = `
'use strict';
const $ = (id) => document.getElementById(id);
const input = $('file'), drop = $('drop'), statusEl = $('status'), result = $('result'), heatmap = $('heatmap');
const fmt = (x) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(4) : '\\u2013');
let current = 0;

function setStatus(text, isError) {
  statusEl.textContent = text;
  statusEl.classList.toggle('error', !!isError);
}

fetch('health').then((r) => r.json()).then((h) => {
  const b = h.bank;
  $('bank').textContent = 'Bank: ' + b.images + ' ' + b.reference + ' images \\u00b7 ' + b.backbone + ' \\u00b7 ' + b.imageSize + ' px \\u00b7 threshold ' + fmt(b.threshold);
}).catch(() => { $('bank').textContent = 'Bank information unavailable'; });

async function score(file) {
  if (!file) return;
  const token = ++current;
  setStatus('Scoring ' + file.name + ' \\u2026');
  const form = new FormData();
  form.append('image', file, file.name);
  const t0 = performance.now();
  let res, body;
  try {
    res = await fetch('score', { method: 'POST', body: form });
    body = await res.json();
  } catch (err) {
    if (token === current) setStatus('Request failed: ' + err.message, true);
    return;
  }
  if (token !== current) return;
  if (!res.ok) {
    result.hidden = true;
    setStatus((body && body.error ? body.error : 'HTTP ' + res.status) + (body && body.code ? ' (' + body.code + ')' : ''), true);
    return;
  }
  const ms = performance.now() - t0;
  $('name').textContent = body.name;
  const badge = $('decision');
  badge.textContent = body.decision;
  badge.className = 'badge ' + (body.decision === 'anomalous' ? 'anomalous' : 'normal');
  $('score').textContent = fmt(body.score);
  $('threshold').textContent = fmt(body.threshold);
  $('imageScore').textContent = fmt(body.imageScore);
  $('size').textContent = body.width + ' \\u00d7 ' + body.height;
  $('time').textContent = Math.round(ms) + ' ms';
  heatmap.alt = 'Anomaly heatmap of ' + body.name;
  heatmap.src = body.heatmapUrl.replace(/^\\//, '');
  result.hidden = false;
  setStatus('Scored ' + body.name + ', loading the heatmap \\u2026');
}

heatmap.addEventListener('load', () => setStatus('Done. Drop another image to score it.'));
heatmap.addEventListener('error', () => { if (heatmap.getAttribute('src')) setStatus('The heatmap could not be loaded.', true); });
input.addEventListener('change', () => { score(input.files[0]); input.value = ''; });
for (const ev of ['dragenter', 'dragover']) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add('over'); });
for (const ev of ['dragleave', 'dragend']) drop.addEventListener(ev, () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const f = e.dataTransfer && e.dataTransfer.files[0];
  if (f) score(f);
});
`;

const BODY = `<main>
  <h1>MuSc anomaly scoring</h1>
  <p class="sub" id="bank" data-testid="bank">Loading bank information &hellip;</p>
  <label class="drop" id="drop" data-testid="drop">
    <input class="visually-hidden" type="file" id="file" name="image" accept="image/*" data-testid="file">
    <strong>Drop an image here</strong>
    or <span class="link">choose a file</span>
    <small>PNG, JPEG, TIFF, WebP, BMP or GIF; scored against the bank, one image at a time</small>
  </label>
  <p id="status" role="status" aria-live="polite" data-testid="status"></p>
  <section class="result" id="result" data-testid="result" hidden>
    <div class="head">
      <span class="name" id="name" data-testid="name"></span>
      <span class="badge" id="decision" data-testid="decision"></span>
    </div>
    <dl>
      <div><dt>Score</dt><dd id="score" data-testid="score"></dd></div>
      <div><dt>Threshold</dt><dd id="threshold"></dd></div>
      <div><dt>Map maximum</dt><dd id="imageScore"></dd></div>
      <div><dt>Original size</dt><dd id="size"></dd></div>
      <div><dt>Round trip</dt><dd id="time"></dd></div>
    </dl>
    <figure>
      <img id="heatmap" data-testid="heatmap" alt="">
      <figcaption>normal <span class="legend" aria-hidden="true"></span> anomalous (same scale for every image)</figcaption>
    </figure>
  </section>
</main>`;

const hash = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

/** The page and the Content-Security-Policy that must be served with it. */
export function renderPage(): { html: string; csp: string } {
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>musc serve</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
${BODY}
<script>${SCRIPT}</script>
</body>
</html>
`;
  const csp = [
    "default-src 'none'",
    `script-src ${hash(SCRIPT)}`,
    `style-src ${hash(STYLE)}`,
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return { html, csp };
}
