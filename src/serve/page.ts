/**
 * The page `musc serve` shows at `/`: drop or pick an image, it is POSTed to /score and
 * the verdict and heatmap appear. One self-contained document (inline style and script,
 * no external resources) served with a strict Content-Security-Policy that allows exactly
 * that inline style and script by hash, images from the server, and fetches to it. The
 * style and script are real files, `browser/page.css` and `browser/page.js`.
 */
import { createHash } from 'node:crypto';
import { turbo } from '../outputs/heatmap.js';
import { pageAsset } from '../util/page-assets.js';

const legendStops = Array.from({ length: 9 }, (_, i) => {
  const [r, g, b] = turbo(i / 8);
  return `rgb(${r},${g},${b}) ${(i * 12.5).toFixed(1)}%`;
}).join(', ');

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
      <div><dt>Image score</dt><dd id="imageScore"></dd></div>
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
  // The heatmap colour scale as `--turbo` (from the colormap the heatmaps use), then the stylesheet.
  const style = `:root { --turbo: linear-gradient(90deg, ${legendStops}); }\n${pageAsset('src/serve/browser/page.css')}`;
  const script = pageAsset('src/serve/browser/page.js');
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>musc serve</title>
<link rel="icon" href="data:,">
<style>${style}</style>
</head>
<body>
${BODY}
<script>${script}</script>
</body>
</html>
`;
  const csp = [
    "default-src 'none'",
    `script-src ${hash(script)}`,
    `style-src ${hash(style)}`,
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return { html, csp };
}
