// @ts-check
/**
 * The report page's behaviour: builds the image grid from the embedded `musc-data` JSON,
 * sorting, filtering, heatmap toggles and the detail view. src/report/html.ts inlines this
 * file as is; `tsconfig.browser.json` type-checks it against the DOM and the report's data
 * contract (run by `npm run build` and `npm test`).
 *
 * Untrusted strings (file names, paths, defect types) only ever reach the DOM through
 * textContent, attributes or img.src, never as markup.
 */
(function () {
  'use strict';

  /** @typedef {import('../report-data.js').ReportData} ReportData */
  /** @typedef {import('../report-data.js').ReportImage} ReportImage */
  /**
   * One card of the grid.
   * @typedef {object} Card
   * @property {ReportImage} img
   * @property {HTMLDivElement} card
   * @property {HTMLImageElement} im
   * @property {HTMLButtonElement} toggle
   * @property {HTMLButtonElement} open
   * @property {boolean} heat
   */

  /**
   * The element with this id, checked to be of the expected kind.
   * @template {HTMLElement} T
   * @param {string} id
   * @param {{ new (): T; prototype: T }} kind
   * @returns {T}
   */
  function $(id, kind) {
    const e = document.getElementById(id);
    if (!(e instanceof kind)) throw new Error(`report page: #${id} is missing`);
    return e;
  }

  /**
   * @param {unknown} v
   * @returns {v is number}
   */
  function num(v) {
    return typeof v === 'number' && isFinite(v);
  }

  /** @param {unknown} v */
  function fmt(v) {
    return num(v) ? v.toFixed(3) : '\u2014';
  }

  /**
   * @template {keyof HTMLElementTagNameMap} K
   * @param {K} tag
   * @param {string | null} [cls]
   * @param {unknown} [text]
   * @returns {HTMLElementTagNameMap[K]}
   */
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  /** @param {ReportImage} img */
  function gtText(img) {
    if (img.label === 1) return 'GT: ' + (img.defectType && img.defectType !== 'good' ? img.defectType : 'anomalous');
    if (img.label === 0) return 'GT: normal';
    if (img.defectType) return 'type: ' + img.defectType;
    return '';
  }

  /** @param {ReportImage} img */
  function mismatch(img) {
    return (img.label === 1 && img.decision !== 'anomalous') || (img.label === 0 && img.decision === 'anomalous');
  }

  /** @type {Partial<ReportData>} */
  const data = JSON.parse($('musc-data', HTMLScriptElement).textContent || '{}');
  // Images scored against known-good images are decided on their image score, not an RsCIN score.
  const goodBank = Boolean(data.config && data.config.bankReference === 'good');
  const images = Array.isArray(data.images) ? data.images : [];
  const thr = data.threshold && typeof data.threshold.value === 'number' ? data.threshold.value : NaN;
  const grid = $('grid', HTMLDivElement);
  const sortSel = $('sort', HTMLSelectElement);
  const filterSel = $('filter', HTMLSelectElement);
  const heatToggle = $('heat', HTMLInputElement);
  const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });
  /** @type {Card[]} */
  const cards = [];
  /** @type {Card[]} */
  let visible = [];

  /**
   * @param {Card} rec
   * @param {boolean} on
   */
  function setHeat(rec, on) {
    rec.heat = on;
    rec.im.src = on ? rec.img.heat : rec.img.thumb;
    rec.toggle.textContent = on ? 'Image' : 'Heatmap';
    rec.toggle.setAttribute('aria-pressed', on ? 'true' : 'false');
  }

  images.forEach((img) => {
    const anom = img.decision === 'anomalous';
    const card = el('div', 'card ' + (anom ? 'is-anom' : 'is-norm'));
    card.setAttribute('data-testid', 'card');
    card.setAttribute('data-name', String(img.name));
    card.setAttribute('data-score', num(img.rscin) ? String(img.rscin) : '');
    card.setAttribute('data-raw-score', num(img.score) ? String(img.score) : '');
    card.setAttribute('data-decision', String(img.decision));
    const open = el('button', 'card-open');
    open.type = 'button';
    open.setAttribute('aria-label', 'Details for ' + img.name);
    const frame = el('div', 'thumb');
    const im = el('img');
    im.alt = String(img.name);
    im.src = img.thumb;
    frame.appendChild(im);
    const name = el('div', 'card-name', img.name);
    name.title = String(img.name);
    name.setAttribute('data-testid', 'card-name');
    const score = el('div', 'card-score');
    score.appendChild(el('b', null, fmt(img.rscin)));
    score.appendChild(el('small', null, 'raw ' + fmt(img.score)));
    const bar = el('div', 'bar');
    const fill = el('span', 'fill');
    fill.style.width = (num(img.rscin) ? Math.max(0, Math.min(1, img.rscin)) * 100 : 0) + '%';
    bar.appendChild(fill);
    if (num(thr) && thr >= 0 && thr <= 1) {
      const tick = el('span', 'tick');
      tick.style.left = thr * 100 + '%';
      tick.title = 'threshold ' + fmt(thr);
      bar.appendChild(tick);
    }
    open.appendChild(frame);
    open.appendChild(name);
    open.appendChild(score);
    open.appendChild(bar);
    const foot = el('div', 'card-foot');
    foot.appendChild(el('span', 'badge ' + (anom ? 'anomalous' : 'normal'), anom ? 'anomalous' : 'normal'));
    const gt = gtText(img);
    if (gt) {
      const chip = el('span', 'gt' + (mismatch(img) ? ' miss' : ''), gt);
      chip.title = mismatch(img) ? (img.label === 1 ? 'Missed: labelled anomalous' : 'False alarm: labelled normal') : 'Ground truth';
      foot.appendChild(chip);
    }
    const toggle = el('button', 'mini', 'Heatmap');
    toggle.type = 'button';
    toggle.setAttribute('data-testid', 'card-heat-toggle');
    toggle.setAttribute('aria-pressed', 'false');
    card.appendChild(open);
    card.appendChild(foot);
    card.appendChild(toggle);
    /** @type {Card} */
    const rec = { img, card, im, toggle, open, heat: false };
    toggle.addEventListener('click', (ev) => {
      ev.stopPropagation();
      setHeat(rec, !rec.heat);
    });
    card.addEventListener('click', () => openDetail(rec));
    cards.push(rec);
  });

  /**
   * @param {Card} a
   * @param {Card} b
   */
  function byName(a, b) {
    return collator.compare(String(a.img.name), String(b.img.name)) || a.img.id - b.img.id;
  }

  /**
   * @param {number} dir 1 ascending, -1 descending
   * @returns {(a: Card, b: Card) => number}
   */
  function byScore(dir) {
    return (a, b) => {
      const x = a.img.rscin;
      const y = b.img.rscin;
      if (!num(x) || !num(y)) return (num(x) ? 0 : 1) - (num(y) ? 0 : 1) || byName(a, b);
      return (x - y) * dir || byName(a, b);
    };
  }

  function apply() {
    const mode = sortSel.value;
    const f = filterSel.value;
    const sorted = cards.slice().sort(mode === 'name' ? byName : byScore(mode === 'score-asc' ? 1 : -1));
    visible = [];
    sorted.forEach((rec) => {
      const show = f === 'all' || rec.img.decision === f;
      rec.card.hidden = !show;
      if (show) visible.push(rec);
      grid.appendChild(rec.card);
    });
    $('shown', HTMLSpanElement).textContent = visible.length === cards.length ? cards.length + ' images' : visible.length + ' of ' + cards.length + ' images';
    $('empty', HTMLParagraphElement).hidden = visible.length > 0;
  }
  sortSel.addEventListener('change', apply);
  filterSel.addEventListener('change', apply);
  heatToggle.addEventListener('change', () => {
    cards.forEach((rec) => setHeat(rec, heatToggle.checked));
  });

  const detail = $('detail', HTMLDivElement);
  /** @type {Card | null} */
  let current = null;

  /**
   * Draws the strongest region on a thumbnail frame, in % of the original size.
   * @param {HTMLElement} box
   * @param {ReportImage} img
   */
  function placeBox(box, img) {
    const r = img.region;
    const w = img.originalWidth;
    const h = img.originalHeight;
    if (!r || !num(w) || !num(h) || w <= 0 || h <= 0) {
      box.hidden = true;
      return;
    }
    box.style.left = (r.x / w) * 100 + '%';
    box.style.top = (r.y / h) * 100 + '%';
    box.style.width = (r.width / w) * 100 + '%';
    box.style.height = (r.height / h) * 100 + '%';
    box.hidden = false;
  }

  /**
   * @param {HTMLElement} dl
   * @param {string} k
   * @param {unknown} v
   */
  function fact(dl, k, v) {
    dl.appendChild(el('dt', null, k));
    dl.appendChild(el('dd', null, v));
  }

  /** @param {Card} rec */
  function openDetail(rec) {
    current = rec;
    const img = rec.img;
    const anom = img.decision === 'anomalous';
    $('detail-name', HTMLHeadingElement).textContent = img.name;
    const badge = $('detail-badge', HTMLSpanElement);
    badge.className = 'badge ' + (anom ? 'anomalous' : 'normal');
    badge.textContent = anom ? 'anomalous' : 'normal';
    const still = $('detail-img', HTMLImageElement);
    still.src = img.thumb;
    still.alt = 'Image ' + img.name;
    const heat = $('detail-heat', HTMLImageElement);
    heat.src = img.heat;
    heat.alt = 'Heatmap overlay of ' + img.name;
    detail.querySelectorAll('.box').forEach((box) => {
      if (box instanceof HTMLElement) placeBox(box, img);
    });
    const dl = $('detail-facts', HTMLElement);
    dl.textContent = '';
    fact(dl, 'Decision', anom ? 'anomalous' : 'normal');
    if (goodBank) {
      fact(dl, 'Image score', fmt(img.score) + (num(thr) ? '  (threshold ' + fmt(thr) + ')' : ''));
    } else {
      fact(dl, 'RsCIN score', fmt(img.rscin) + (num(thr) ? '  (threshold ' + fmt(thr) + ')' : ''));
      fact(dl, 'Image score', fmt(img.score) + '  (before RsCIN: see imageScore under Configuration)');
    }
    if (img.label === 0 || img.label === 1) {
      fact(dl, 'Ground truth', (img.label === 1 ? 'anomalous' : 'normal') + (mismatch(img) ? (img.label === 1 ? ' \u2014 missed' : ' \u2014 false alarm') : ''));
    }
    if (img.defectType) fact(dl, 'Defect type', img.defectType);
    fact(dl, 'Original size', num(img.originalWidth) && num(img.originalHeight) ? img.originalWidth + ' \u00d7 ' + img.originalHeight + ' px' : '\u2014');
    const r = img.region;
    fact(dl, 'Strongest region', r ? 'x ' + Math.round(r.x) + ', y ' + Math.round(r.y) + ', ' + Math.round(r.width) + ' \u00d7 ' + Math.round(r.height) + ' px' : 'none');
    fact(dl, 'Path', img.path);
    const idx = visible.indexOf(rec);
    $('detail-prev', HTMLButtonElement).disabled = idx <= 0;
    $('detail-next', HTMLButtonElement).disabled = idx < 0 || idx >= visible.length - 1;
    if (detail.hidden) {
      detail.hidden = false;
      document.body.classList.add('modal-open');
      $('detail-close', HTMLButtonElement).focus();
    }
  }

  function closeDetail() {
    if (detail.hidden) return;
    detail.hidden = true;
    document.body.classList.remove('modal-open');
    if (current) current.open.focus();
    current = null;
  }

  /** @param {number} d */
  function step(d) {
    const idx = current ? visible.indexOf(current) : -1;
    if (idx >= 0 && visible[idx + d]) openDetail(visible[idx + d]);
  }

  $('detail-close', HTMLButtonElement).addEventListener('click', closeDetail);
  $('detail-prev', HTMLButtonElement).addEventListener('click', () => step(-1));
  $('detail-next', HTMLButtonElement).addEventListener('click', () => step(1));
  detail.addEventListener('click', (ev) => {
    if (ev.target === detail) closeDetail();
  });
  document.addEventListener('keydown', (ev) => {
    if (detail.hidden) return;
    if (ev.key === 'Escape') {
      ev.preventDefault();
      closeDetail();
    } else if (ev.key === 'ArrowLeft') step(-1);
    else if (ev.key === 'ArrowRight') step(1);
  });
  apply();
})();
