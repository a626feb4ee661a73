/**
 * Small surface defects for the synthetic small-defect benchmark: footprints (where a
 * defect is), sized to a target area, placed where a category allows, and painted onto
 * float image planes. Every pixel a defect changes is in its mask and every masked pixel
 * changes by at least one grey level, so the written mask is exactly the drawn defect.
 * Pure functions over typed arrays; the caller owns randomness (a seeded generator).
 */

/**
 * The defect types of the small-defect benchmark: thin lines (scratch, crack), a cluster
 * of small pits (pitting), a discoloured patch (stain) and a smooth depression (dent).
 */
export type SmallDefectKind = 'scratch' | 'crack' | 'pitting' | 'stain' | 'dent';

export const SMALL_DEFECT_KINDS: readonly SmallDefectKind[] = ['scratch', 'pitting', 'stain', 'crack', 'dent'];

/**
 * Where a defect lies: coverage in a box of the image. `alpha` is 0 outside the defect
 * and in (0, 1] inside (antialiased edges); `u` is the position along a line defect
 * (0..1) or the normalised radius of a blob (0 at the centre, 1 at the rim); for blobs,
 * (`gx`, `gy`) is the unit direction from the blob's centre (for the wall shading).
 */
export interface Footprint {
  x0: number;
  y0: number;
  readonly w: number;
  readonly h: number;
  readonly alpha: Float32Array;
  readonly u: Float32Array;
  readonly gx: Float32Array;
  readonly gy: Float32Array;
}

function emptyFootprint(x0: number, y0: number, w: number, h: number): Footprint {
  const n = w * h;
  return { x0, y0, w, h, alpha: new Float32Array(n), u: new Float32Array(n), gx: new Float32Array(n), gy: new Float32Array(n) };
}

/** Coverage below this is left untouched (a faint antialiasing fringe is not part of the defect). */
const MIN_COVERAGE = 0.25;
/** Smallest change of a covered pixel, grey levels: > 1 survives any rounding to 8 bits. */
const MIN_CHANGE = 1.25;

/** Pixels a footprint covers (its mask area). */
export function footprintArea(f: Footprint): number {
  let n = 0;
  for (let i = 0; i < f.alpha.length; i++) if (f.alpha[i] > 0) n++;
  return n;
}

interface LinePoint {
  x: number;
  y: number;
  halfWidth: number;
}

/** Rasterises a polyline with per-point half widths, segment by segment (cost ~ length x width, not box area). */
function rasterizeLine(points: readonly LinePoint[]): Footprint {
  let minX = Infinity;
  let minY = Infinity;
  let maxX = -Infinity;
  let maxY = -Infinity;
  for (const p of points) {
    minX = Math.min(minX, p.x - p.halfWidth);
    minY = Math.min(minY, p.y - p.halfWidth);
    maxX = Math.max(maxX, p.x + p.halfWidth);
    maxY = Math.max(maxY, p.y + p.halfWidth);
  }
  const x0 = Math.floor(minX) - 2;
  const y0 = Math.floor(minY) - 2;
  const w = Math.ceil(maxX) + 3 - x0;
  const h = Math.ceil(maxY) + 3 - y0;
  const f = emptyFootprint(x0, y0, w, h);
  const { alpha, u } = f;
  const last = points.length - 1;
  for (let s = 0; s < last; s++) {
    const a = points[s];
    const b = points[s + 1];
    const ex = b.x - a.x;
    const ey = b.y - a.y;
    const len2 = ex * ex + ey * ey || 1e-9;
    const reach = Math.max(a.halfWidth, b.halfWidth) + 1;
    const bx0 = Math.max(0, Math.floor(Math.min(a.x, b.x) - reach) - x0);
    const bx1 = Math.min(w - 1, Math.ceil(Math.max(a.x, b.x) + reach) - x0);
    const by0 = Math.max(0, Math.floor(Math.min(a.y, b.y) - reach) - y0);
    const by1 = Math.min(h - 1, Math.ceil(Math.max(a.y, b.y) + reach) - y0);
    for (let py = by0; py <= by1; py++)
      for (let px = bx0; px <= bx1; px++) {
        const qx = px + x0 + 0.5 - a.x;
        const qy = py + y0 + 0.5 - a.y;
        const t = Math.max(0, Math.min(1, (qx * ex + qy * ey) / len2));
        const ox = qx - t * ex;
        const oy = qy - t * ey;
        const d = Math.sqrt(ox * ox + oy * oy);
        const hw = a.halfWidth + t * (b.halfWidth - a.halfWidth);
        const cov = Math.min(1, hw + 0.5 - d);
        const k = py * w + px;
        if (cov >= MIN_COVERAGE && cov > alpha[k]) {
          alpha[k] = cov;
          u[k] = (s + t) / last;
        }
      }
  }
  return f;
}

interface Harmonic {
  readonly k: number;
  readonly amp: number;
  readonly phase: number;
}

/** One closed blob: centre, radius, elongation along `angle`, and rim harmonics. */
interface Blob {
  readonly x: number;
  readonly y: number;
  readonly r: number;
  readonly aspect: number;
  readonly angle: number;
  readonly harmonics: readonly Harmonic[];
}

/**
 * Rasterises a union of blobs, each with an irregular rim (radius(phi) = r * (1 + sum of
 * low harmonics)) on a rotated ellipse; where blobs overlap the stronger coverage wins.
 */
function rasterizeBlobs(blobs: readonly Blob[]): Footprint {
  const reach = (b: Blob) => b.r * b.aspect * (1 + b.harmonics.reduce((s, hm) => s + Math.abs(hm.amp), 0)) + 2;
  const x0 = Math.floor(Math.min(...blobs.map((b) => b.x - reach(b))));
  const y0 = Math.floor(Math.min(...blobs.map((b) => b.y - reach(b))));
  const w = Math.ceil(Math.max(...blobs.map((b) => b.x + reach(b)))) + 1 - x0;
  const h = Math.ceil(Math.max(...blobs.map((b) => b.y + reach(b)))) + 1 - y0;
  const f = emptyFootprint(x0, y0, w, h);
  for (const b of blobs) {
    const c = Math.cos(b.angle);
    const s = Math.sin(b.angle);
    const m = reach(b);
    for (let py = Math.max(0, Math.floor(b.y - m) - y0); py <= Math.min(h - 1, Math.ceil(b.y + m) - y0); py++)
      for (let px = Math.max(0, Math.floor(b.x - m) - x0); px <= Math.min(w - 1, Math.ceil(b.x + m) - x0); px++) {
        const dx = px + x0 + 0.5 - b.x;
        const dy = py + y0 + 0.5 - b.y;
        // Ellipse frame: stretch along the major axis.
        const ea = (dx * c + dy * s) / b.aspect;
        const eb = -dx * s + dy * c;
        const d = Math.sqrt(ea * ea + eb * eb);
        const phi = Math.atan2(eb, ea);
        let rim = 1;
        for (const hm of b.harmonics) rim += hm.amp * Math.sin(hm.k * phi + hm.phase);
        const rr = b.r * rim;
        const cov = Math.min(1, rr + 0.5 - d);
        const k = py * w + px;
        if (cov >= MIN_COVERAGE && cov > f.alpha[k]) {
          const dn = Math.sqrt(dx * dx + dy * dy) || 1;
          f.alpha[k] = cov;
          f.u[k] = Math.min(1, d / rr);
          f.gx[k] = dx / dn;
          f.gy[k] = dy / dn;
        }
      }
  }
  return f;
}

/** Shape parameters drawn once, so a footprint can be redrawn at several scales with the same look. */
export interface DefectShape {
  readonly kind: SmallDefectKind;
  /** Exponent of area in scale: 1 for lines (scale = length), 2 for blobs (scale = radius). */
  readonly areaExponent: 1 | 2;
  /** A first guess of the scale for a given area. */
  guess(area: number): number;
  draw(scale: number): Footprint;
}

/**
 * Where defects point. `axis` null: any direction (a turned face). A number (radians):
 * lines run and blobs stretch within ±`spread` of it, as quench cracks, chatter marks and
 * edge dents run across a bar.
 */
export interface DefectOrientation {
  readonly axis: number | null;
  readonly spread: number;
}

/** Draws the random shape parameters of one defect of a kind. */
export function drawShape(kind: SmallDefectKind, rand: () => number, orientation: DefectOrientation = { axis: null, spread: 0 }): DefectShape {
  const range = (lo: number, hi: number) => lo + rand() * (hi - lo);
  const direction = (turn: number) => (orientation.axis === null ? range(0, turn) : orientation.axis + range(-orientation.spread, orientation.spread));
  const harmonics = (n: number, amp: number): Harmonic[] =>
    Array.from({ length: n }, (_, i) => ({ k: i + 2, amp: (amp * range(0.3, 1)) / (i + 1), phase: range(0, 2 * Math.PI) }));
  const blob = (aspectLo: number, aspectHi: number, rim: Harmonic[]): DefectShape => {
    const aspect = range(aspectLo, aspectHi);
    const angle = direction(Math.PI);
    return {
      kind,
      areaExponent: 2,
      guess: (area) => Math.sqrt(area / (Math.PI * aspect)),
      draw: (r) => rasterizeBlobs([{ x: 0, y: 0, r, aspect, angle, harmonics: rim }]),
    };
  };
  switch (kind) {
    case 'scratch': {
      // A gently curved stroke, tapered at both ends, of roughly constant width.
      const angle = direction(Math.PI);
      const bend = range(-0.12, 0.12);
      const halfWidth = range(1.5, 3.0);
      return {
        kind,
        areaExponent: 1,
        guess: (area) => area / (2 * halfWidth * 0.85),
        draw: (length) => {
          const n = Math.max(2, Math.ceil(length / 3));
          const pts: LinePoint[] = [];
          for (let i = 0; i <= n; i++) {
            const t = i / n;
            const along = (t - 0.5) * length;
            const across = bend * length * 4 * t * (1 - t);
            const taper = 0.35 + 0.65 * Math.sqrt(Math.sin(Math.PI * t));
            pts.push({ x: along * Math.cos(angle) - across * Math.sin(angle), y: along * Math.sin(angle) + across * Math.cos(angle), halfWidth: halfWidth * taper });
          }
          return rasterizeLine(pts);
        },
      };
    }
    case 'crack': {
      // A jagged random walk with one side branch; the walk is drawn once per unit length.
      const heading0 = direction(Math.PI) + (rand() < 0.5 ? Math.PI : 0);
      const halfWidth = range(1.2, 2.2);
      const turns = Float32Array.from({ length: 512 }, () => range(-0.55, 0.55));
      const widths = Float32Array.from({ length: 512 }, () => range(0.6, 1.25));
      const branchAt = range(0.3, 0.7);
      const branchTurn = (rand() < 0.5 ? -1 : 1) * range(0.5, 1.1);
      const walk = (x: number, y: number, heading: number, length: number, offset: number): LinePoint[] => {
        const step = Math.max(3, length / 120);
        const n = Math.max(2, Math.ceil(length / step));
        const pts: LinePoint[] = [{ x, y, halfWidth: halfWidth * widths[offset % 512] }];
        let hd = heading;
        for (let i = 1; i <= n; i++) {
          hd = heading + 0.6 * (hd - heading) + turns[(offset + i) % 512];
          x += step * Math.cos(hd);
          y += step * Math.sin(hd);
          const taper = i > n - 3 ? (n - i + 1) / 4 : 1;
          pts.push({ x, y, halfWidth: Math.max(0.6, halfWidth * widths[(offset + i) % 512] * taper) });
        }
        return pts;
      };
      return {
        kind,
        areaExponent: 1,
        guess: (area) => area / (2 * halfWidth * 1.1 * 1.3),
        draw: (length) => {
          const main = walk(-0.5 * length * Math.cos(heading0), -0.5 * length * Math.sin(heading0), heading0, length, 0);
          const from = main[Math.floor(branchAt * (main.length - 1))];
          const branch = walk(from.x, from.y, heading0 + branchTurn, 0.3 * length, 256);
          const a = rasterizeLine(main);
          const b = rasterizeLine(branch);
          return mergeFootprints(a, b);
        },
      };
    }
    case 'pitting': {
      // 8-24 small craters of unequal size scattered over a patch about 7 pit radii
      // across (corrosion or porosity): each a few pixels wide, so a squash erases them.
      const n = 8 + Math.floor(rand() * 17);
      const spreadAspect = range(1, 2);
      const spreadAngle = direction(Math.PI);
      const pits = Array.from({ length: n }, () => {
        const rho = Math.sqrt(rand());
        const t = range(0, 2 * Math.PI);
        const ex = rho * Math.cos(t) * spreadAspect;
        const ey = rho * Math.sin(t);
        return {
          x: ex * Math.cos(spreadAngle) - ey * Math.sin(spreadAngle),
          y: ex * Math.sin(spreadAngle) + ey * Math.cos(spreadAngle),
          size: range(0.6, 1.4),
          aspect: range(1, 1.4),
          angle: range(0, Math.PI),
          harmonics: harmonics(2, 0.15),
        };
      });
      const meanArea = pits.reduce((s, p) => s + Math.PI * p.size * p.size * p.aspect, 0);
      return {
        kind,
        areaExponent: 2,
        guess: (area) => Math.sqrt(area / meanArea),
        draw: (r) => rasterizeBlobs(pits.map((p) => ({ x: p.x * 7 * r, y: p.y * 7 * r, r: r * p.size, aspect: p.aspect, angle: p.angle, harmonics: p.harmonics }))),
      };
    }
    case 'stain':
      return blob(1.1, 2.2, harmonics(4, 0.28));
    case 'dent':
      return blob(1, 1.6, harmonics(3, 0.08));
  }
}

/** Union of two footprints (max coverage; the other fields from the stronger one). */
function mergeFootprints(a: Footprint, b: Footprint): Footprint {
  const x0 = Math.min(a.x0, b.x0);
  const y0 = Math.min(a.y0, b.y0);
  const out = emptyFootprint(x0, y0, Math.max(a.x0 + a.w, b.x0 + b.w) - x0, Math.max(a.y0 + a.h, b.y0 + b.h) - y0);
  for (const f of [a, b])
    for (let y = 0; y < f.h; y++)
      for (let x = 0; x < f.w; x++) {
        const i = y * f.w + x;
        const k = (y + f.y0 - y0) * out.w + (x + f.x0 - x0);
        if (f.alpha[i] > out.alpha[k]) {
          out.alpha[k] = f.alpha[i];
          out.u[k] = f.u[i];
          out.gx[k] = f.gx[i];
          out.gy[k] = f.gy[i];
        }
      }
  return out;
}

/**
 * Redraws a shape until its mask area is within 8 % of `target` pixels (area grows
 * as scale^areaExponent, so a few multiplicative steps converge), and never outside
 * [minArea, maxArea].
 * @throws Error when no scale gives an area in [minArea, maxArea] (a generator bug).
 */
export function sizeFootprint(shape: DefectShape, target: number, minArea: number, maxArea: number): Footprint {
  let scale = shape.guess(target);
  let best: Footprint | null = null;
  for (let i = 0; i < 12; i++) {
    const f = shape.draw(scale);
    const area = footprintArea(f);
    if (area >= minArea && area <= maxArea) best = f;
    if (best === f && Math.abs(area - target) <= 0.08 * target) return f;
    scale *= (target / Math.max(area, 1)) ** (1 / shape.areaExponent);
  }
  if (best) return best;
  throw new Error(`cannot size a ${shape.kind} to ${target} px within [${minArea}, ${maxArea}]`);
}

/**
 * Moves a footprint to a random spot where every covered pixel is allowed.
 * @param allowed 1 where a defect may lie (image-sized, row-major)
 * @returns false when no spot was found in `tries` draws
 */
export function placeFootprint(f: Footprint, allowed: Uint8Array, width: number, height: number, rand: () => number, tries = 400): boolean {
  const ox = f.x0;
  const oy = f.y0;
  for (let t = 0; t < tries; t++) {
    const x0 = Math.floor(rand() * (width - f.w));
    const y0 = Math.floor(rand() * (height - f.h));
    if (x0 < 0 || y0 < 0) break;
    let ok = true;
    for (let y = 0; y < f.h && ok; y++)
      for (let x = 0; x < f.w; x++)
        if (f.alpha[y * f.w + x] > 0 && !allowed[(y0 + y) * width + x0 + x]) {
          ok = false;
          break;
        }
    if (ok) {
      f.x0 = x0;
      f.y0 = y0;
      return true;
    }
  }
  f.x0 = ox;
  f.y0 = oy;
  return false;
}

/** How a defect changes the pixels under its footprint. */
export interface DefectLook {
  /** Unit vector towards the light, image coordinates (y down). */
  readonly light: readonly [number, number];
  /** Per-channel factor of the change (a brownish stain changes blue more than red). */
  readonly chroma: readonly number[];
  /** Signed strength in grey levels (negative = darker). */
  readonly contrast: number;
  /** Secondary strength: the wall shading of pits and dents. */
  readonly relief: number;
  /** How much of the surface texture the defect wipes out (0..1). */
  readonly smoothing: number;
  /** Amplitude of the defect's own rough texture, grey levels. */
  readonly roughness: number;
}

/** Draws how strong and what colour a defect of a kind is; some come out faint on purpose. `strength` scales the contrast of a category. */
export function drawLook(kind: SmallDefectKind, light: readonly [number, number], channels: number, rand: () => number, strength = 1): DefectLook {
  const range = (lo: number, hi: number) => lo + rand() * (hi - lo);
  // Log-uniform strengths: about a third of the defects are faint.
  const logRange = (lo: number, hi: number) => strength * lo * (hi / lo) ** rand();
  const grey = Array.from({ length: channels }, () => 1);
  switch (kind) {
    case 'scratch':
      return { light, chroma: grey, contrast: (rand() < 0.5 ? -1 : 1) * logRange(10, 50), relief: 0, smoothing: range(0.3, 0.8), roughness: 0 };
    case 'crack':
      return { light, chroma: grey, contrast: -logRange(18, 65), relief: 0, smoothing: 0.3, roughness: 0 };
    case 'pitting':
      return { light, chroma: grey, contrast: -logRange(10, 45), relief: logRange(12, 45), smoothing: 0.5, roughness: range(2, 6) };
    case 'stain':
      return {
        light,
        chroma: channels === 3 ? [1, range(1.1, 1.3), range(1.3, 1.8)] : grey,
        contrast: -logRange(14, 40),
        relief: 0,
        smoothing: range(0.4, 0.9),
        roughness: range(1.5, 5),
      };
    case 'dent':
      return { light, chroma: grey, contrast: -logRange(4, 12), relief: logRange(14, 36), smoothing: 0.2, roughness: 0 };
  }
}

/**
 * Paints a placed footprint onto float planes (values 0..255, `channels` interleaved),
 * changing every covered pixel by more than one grey level per channel and nothing else.
 * Base values must lie in [2, 253] under the footprint so the change survives clamping.
 * @param lum luminance of the defect-free image (for texture smoothing), row-major
 */
export function paintDefect(planes: Float32Array, lum: Float32Array, width: number, channels: number, f: Footprint, look: DefectLook, kind: SmallDefectKind, rand: () => number): void {
  // Local mean of the surface (9 x 9 box), so a defect can wipe out the machining texture.
  const R = 4;
  const bw = f.w + 2 * R;
  const bh = f.h + 2 * R;
  const height = lum.length / width;
  const integral = new Float64Array((bw + 1) * (bh + 1));
  for (let y = 0; y < bh; y++) {
    const iy = Math.min(height - 1, Math.max(0, f.y0 - R + y));
    let row = 0;
    for (let x = 0; x < bw; x++) {
      const ix = Math.min(width - 1, Math.max(0, f.x0 - R + x));
      row += lum[iy * width + ix];
      integral[(y + 1) * (bw + 1) + x + 1] = integral[y * (bw + 1) + x + 1] + row;
    }
  }
  const boxMean = (x: number, y: number): number => {
    const a = y * (bw + 1) + x;
    const b = (y + 2 * R + 1) * (bw + 1) + x;
    const s = integral[b + 2 * R + 1] - integral[b] - integral[a + 2 * R + 1] + integral[a];
    return s / ((2 * R + 1) * (2 * R + 1));
  };
  // Intermittent strength along a line (a scratch is not equally deep everywhere).
  const wobble = Float32Array.from({ length: 9 }, () => 0.55 + 0.45 * rand());
  const along = (t: number) => {
    const p = t * 8;
    const i = Math.min(7, Math.floor(p));
    return wobble[i] + (p - i) * (wobble[i + 1] - wobble[i]);
  };
  const [lx, ly] = look.light;
  for (let y = 0; y < f.h; y++)
    for (let x = 0; x < f.w; x++) {
      const a = f.alpha[y * f.w + x];
      if (a === 0) continue;
      const u = f.u[y * f.w + x];
      const p = (f.y0 + y) * width + f.x0 + x;
      const base = lum[p];
      const smooth = look.smoothing * (boxMean(x, y) - base);
      let delta: number;
      if (kind === 'scratch' || kind === 'crack') {
        delta = a * (look.contrast * along(u) + smooth);
      } else {
        // Blob: a bowl whose wall facing the light is lit and whose far wall is in shade.
        const facing = -(f.gx[y * f.w + x] * lx + f.gy[y * f.w + x] * ly);
        // A pit is a sharp-edged crater (steepest wall at the rim); a dent is a smooth
        // depression, h = (1 - u²)², whose slope vanishes at the rim and the centre.
        const v = 1 - u * u;
        const depth = kind === 'stain' ? 0.55 + 0.45 * v : kind === 'dent' ? v * v : Math.sqrt(Math.max(0, v));
        const slope = kind === 'dent' ? 2.6 * u * v : u;
        const rough = look.roughness * (rand() + rand() - 1);
        delta = a * (look.contrast * depth + look.relief * slope * facing + smooth + rough);
      }
      for (let c = 0; c < channels; c++) {
        let d = delta * look.chroma[c];
        // More than one grey level, so the pixel changes after rounding (ties to even included)
        // and the mask is exactly the set of changed pixels.
        if (Math.abs(d) < MIN_CHANGE) d = d >= 0 ? MIN_CHANGE : -MIN_CHANGE;
        planes[p * channels + c] = Math.min(255, Math.max(0, planes[p * channels + c] + d));
      }
    }
}
