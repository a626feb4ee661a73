// @ts-check
/**
 * The `musc serve` upload page's behaviour: an image dropped or picked is POSTed to
 * `score`, and the verdict and heatmap appear. src/serve/page.ts inlines this file as is
 * (allowed by its hash in the page's CSP); `tsconfig.browser.json` type-checks it against
 * the DOM and the server's JSON bodies (src/serve/api.ts).
 */
(function () {
  'use strict';

  /** @typedef {import('../api.js').ScoreResponse} ScoreResponse */
  /** @typedef {import('../api.js').ErrorResponse} ErrorResponse */
  /** @typedef {import('../api.js').BankSummary} BankSummary */

  /**
   * The element with this id, checked to be of the expected kind.
   * @template {HTMLElement} T
   * @param {string} id
   * @param {{ new (): T; prototype: T }} kind
   * @returns {T}
   */
  function $(id, kind) {
    const e = document.getElementById(id);
    if (!(e instanceof kind)) throw new Error(`upload page: #${id} is missing`);
    return e;
  }

  /** @param {unknown} x */
  const fmt = (x) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(4) : '\u2013');

  const input = $('file', HTMLInputElement);
  const drop = $('drop', HTMLLabelElement);
  const statusEl = $('status', HTMLParagraphElement);
  const result = $('result', HTMLElement);
  const heatmap = $('heatmap', HTMLImageElement);
  const bankEl = $('bank', HTMLParagraphElement);
  let current = 0;

  /**
   * @param {string} text
   * @param {boolean} [isError]
   */
  function setStatus(text, isError) {
    statusEl.textContent = text;
    statusEl.classList.toggle('error', !!isError);
  }

  fetch('health')
    .then((r) => r.json())
    .then((/** @type {{ bank: BankSummary }} */ h) => {
      const b = h.bank;
      bankEl.textContent = 'Bank: ' + b.images + ' ' + b.reference + ' images \u00b7 ' + b.backbone + ' \u00b7 ' + b.imageSize + ' px \u00b7 threshold ' + fmt(b.threshold);
    })
    .catch(() => {
      bankEl.textContent = 'Bank information unavailable';
    });

  /** @param {File | null | undefined} file */
  async function score(file) {
    if (!file) return;
    const token = ++current;
    setStatus('Scoring ' + file.name + ' \u2026');
    const form = new FormData();
    form.append('image', file, file.name);
    const t0 = performance.now();
    /** @type {Response} */
    let res;
    /** @type {Partial<ScoreResponse & ErrorResponse> | null} */
    let body;
    try {
      res = await fetch('score', { method: 'POST', body: form });
      body = await res.json();
    } catch (err) {
      if (token === current) setStatus('Request failed: ' + (err instanceof Error ? err.message : String(err)), true);
      return;
    }
    if (token !== current) return;
    if (!res.ok || !body) {
      result.hidden = true;
      setStatus((body && body.error ? body.error : 'HTTP ' + res.status) + (body && body.code ? ' (' + body.code + ')' : ''), true);
      return;
    }
    const ok = /** @type {ScoreResponse} */ (body);
    const ms = performance.now() - t0;
    $('name', HTMLSpanElement).textContent = ok.name;
    const badge = $('decision', HTMLSpanElement);
    badge.textContent = ok.decision;
    badge.className = 'badge ' + (ok.decision === 'anomalous' ? 'anomalous' : 'normal');
    $('score', HTMLElement).textContent = fmt(ok.score);
    $('threshold', HTMLElement).textContent = fmt(ok.threshold);
    $('imageScore', HTMLElement).textContent = fmt(ok.imageScore);
    $('size', HTMLElement).textContent = ok.width + ' \u00d7 ' + ok.height;
    $('time', HTMLElement).textContent = Math.round(ms) + ' ms';
    heatmap.alt = 'Anomaly heatmap of ' + ok.name;
    heatmap.src = ok.heatmapUrl.replace(/^\//, '');
    result.hidden = false;
    setStatus('Scored ' + ok.name + ', loading the heatmap \u2026');
  }

  heatmap.addEventListener('load', () => setStatus('Done. Drop another image to score it.'));
  heatmap.addEventListener('error', () => {
    if (heatmap.getAttribute('src')) setStatus('The heatmap could not be loaded.', true);
  });
  input.addEventListener('change', () => {
    score(input.files && input.files[0]);
    input.value = '';
  });
  for (const ev of ['dragenter', 'dragover']) {
    drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.add('over');
    });
  }
  for (const ev of ['dragleave', 'dragend']) drop.addEventListener(ev, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (f) score(f);
  });
})();
