/**
 * The two parts of the small-defect benchmark, rendered defect-free as float planes:
 * a turned flange (1200 × 900 RGB) and a turned shaft (1600 × 500 grey), each with the
 * pose, lighting and texture variation of a real inspection line, plus where defects may
 * go. Procedural (seeded value noise, analytic shading); pure functions of a random stream.
 */

/** Image geometry of the flange and the shaft. */
export const PART_GEOMETRY = {
  flange: { width: 1200, height: 900, channels: 3 },
  shaft: { width: 1600, height: 500, channels: 1 },
} as const;

/**
 * Smooth value noise in about [-1, 1] on the whole image, with separate cell sizes along x
 * and y (anisotropic streaks). `shiftY[x]` moves column x down, so streaks can follow a
 * tilted part. Row-by-row with per-column weights: a few ms per megapixel.
 */
function noiseField(rand: () => number, width: number, height: number, cellX: number, cellY: number, shiftY?: Float32Array): Float32Array {
  const PAD = 8;
  const gw = Math.ceil(width / cellX) + 3;
  const gh = Math.ceil((height + 2 * PAD) / cellY) + 3;
  const grid = new Float32Array(gw * gh);
  for (let i = 0; i < grid.length; i++) grid[i] = rand() * 2 - 1;
  const ix = new Int32Array(width);
  const tx = new Float32Array(width);
  for (let x = 0; x < width; x++) {
    const f = x / cellX;
    ix[x] = Math.floor(f);
    const t = f - ix[x];
    tx[x] = t * t * (3 - 2 * t);
  }
  const out = new Float32Array(width * height);
  for (let y = 0; y < height; y++) {
    const rowFy = (y + PAD) / cellY;
    for (let x = 0; x < width; x++) {
      const fy = shiftY ? rowFy + shiftY[x] / cellY : rowFy;
      const iy = fy | 0;
      let ty = fy - iy;
      ty = ty * ty * (3 - 2 * ty);
      const k = iy * gw + ix[x];
      const t = tx[x];
      const top = grid[k] + t * (grid[k + 1] - grid[k]);
      const bottom = grid[k + gw] + t * (grid[k + gw + 1] - grid[k + gw]);
      out[y * width + x] = top + ty * (bottom - top);
    }
  }
  return out;
}

/** Standard-normal draws by table lookup (one uniform per draw; sensor noise need not be exact). */
const NORMAL_TABLE = (() => {
  const n = 4096;
  const t = new Float32Array(n);
  // Box-Muller on a fixed low-discrepancy lattice of (u1, u2): a close-enough normal sample set.
  for (let i = 0; i < n; i += 2) {
    const u1 = (i + 1) / (n + 1);
    const u2 = ((i * 0.6180339887) % 1) || 0.5;
    const r = Math.sqrt(-2 * Math.log(u1));
    t[i] = r * Math.cos(2 * Math.PI * u2);
    t[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return t;
})();
const gauss = (rand: () => number) => NORMAL_TABLE[(rand() * NORMAL_TABLE.length) | 0];
const clamp01 = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);
const range = (rand: () => number, lo: number, hi: number) => lo + rand() * (hi - lo);
/** Clamp to [2, 253]: sensor range with headroom, so a defect's change (over one grey level) is never clipped away. */
const sensor = (v: number) => (v < 2 ? 2 : v > 253 ? 253 : v);

/** A defect-free image as float planes plus where defects may go and where the light comes from. */
export interface BaseImage {
  readonly planes: Float32Array;
  readonly lum: Float32Array;
  readonly allowed: Uint8Array;
  readonly light: readonly [number, number];
}

/**
 * A turned steel flange on a dark fixture mat: outer chamfer, bore with a keyway, eight
 * bolt holes; concentric turning marks at ~3 px pitch, ring bands, blotchy material
 * tone, a radial specular streak aligned with the light, shadow on the mat.
 */
export function renderFlange(rand: () => number): BaseImage {
  const { width: W, height: H } = PART_GEOMETRY.flange;
  const R_OUT = 432;
  const R_BORE = 125;
  const CHAMFER_OUT = 9;
  const CHAMFER_BORE = 7;
  const PITCH = 298;
  const R_HOLE = 27;
  const CHAMFER_HOLE = 5;
  const HOLES = 8;
  const KEY_HALF = 14;
  const KEY_DEPTH = 18;
  const MARGIN = 6;
  const planes = new Float32Array(W * H * 3);
  const lum = new Float32Array(W * H);
  const allowed = new Uint8Array(W * H);
  const cx = W / 2 + range(rand, -4, 4);
  const cy = H / 2 + range(rand, -4, 4);
  const rot = range(rand, -0.8, 0.8) * (Math.PI / 180);
  const lightAngle = (-125 + range(rand, -30, 30)) * (Math.PI / 180);
  const lx = Math.cos(lightAngle);
  const ly = Math.sin(lightAngle);
  const gain = range(rand, 0.88, 1.1);
  const gx = range(rand, -0.07, 0.07);
  const gy = range(rand, -0.07, 0.07);
  const specAmp = range(rand, 30, 65);
  const specWidth2 = range(rand, 0.16, 0.3) ** 2;
  const ringPhase = range(rand, 0, 2 * Math.PI);
  const ringPitch = range(rand, 22, 26);
  const tint = range(rand, -0.035, 0.035);
  const partTint = [1 + tint, 1, 1 - tint];
  const matTint = [0.82 + range(rand, -0.03, 0.03), 0.92, 1.06];
  const tone = noiseField(rand, W, H, 90, 90);
  const wobble = noiseField(rand, W, H, 40, 40);
  const mat = noiseField(rand, W, H, 25, 25);
  const matCoarse = noiseField(rand, W, H, 160, 160);
  const cr = Math.cos(rot);
  const sr = Math.sin(rot);
  const holes = Array.from({ length: HOLES }, (_, k) => {
    const a = Math.PI / HOLES + (k * 2 * Math.PI) / HOLES;
    // Part frame -> image frame.
    const u = PITCH * Math.cos(a);
    const v = PITCH * Math.sin(a);
    return [cx + u * cr - v * sr, cy + u * sr + v * cr] as const;
  });
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const p = y * W + x;
      const dx = x + 0.5 - cx;
      const dy = y + 0.5 - cy;
      const r = Math.sqrt(dx * dx + dy * dy) || 1e-6;
      // cos and sin of (direction of this pixel from the centre - direction of the light).
      const toward = (dx * lx + dy * ly) / r;
      const across = (dy * lx - dx * ly) / r;
      const lighting = gain * (1 + (gx * (x - W / 2)) / (W / 2) + (gy * (y - H / 2)) / (H / 2));
      const grain = gauss(rand);
      let part = 0;
      let onPart = 0;
      let face = false;
      if (r < R_OUT + 1) {
        onPart = clamp01(R_OUT - r + 0.5);
        // Part frame for the keyway (along +u).
        const u = dx * cr + dy * sr;
        const v = -dx * sr + dy * cr;
        if (u > 0 && Math.abs(v) < KEY_HALF && r < R_BORE + KEY_DEPTH) onPart = 0;
        else onPart *= clamp01(r - R_BORE + 0.5);
        let dh = Infinity;
        let hx = 0;
        let hy = 0;
        if (Math.abs(r - PITCH) < R_HOLE + CHAMFER_HOLE + MARGIN + 1)
          for (const [px, py] of holes) {
            const ex = x + 0.5 - px;
            const ey = y + 0.5 - py;
            const d = Math.sqrt(ex * ex + ey * ey);
            if (d < dh) {
              dh = d;
              hx = ex;
              hy = ey;
            }
          }
        onPart *= clamp01(dh - R_HOLE + 0.5);
        if (r > R_OUT - CHAMFER_OUT) part = 100 + 80 * toward + 4 * grain;
        else if (r < R_BORE + CHAMFER_BORE || (u > 0 && Math.abs(v) < KEY_HALF + 2 && r < R_BORE + KEY_DEPTH + 2)) part = 100 - 75 * toward + 4 * grain;
        else if (dh < R_HOLE + CHAMFER_HOLE) part = 100 - (70 * (hx * lx + hy * ly)) / dh + 4 * grain;
        else {
          // Turned face: ~3 px turning marks that wobble, wider ring bands, a radial specular streak.
          const marks = 6 * Math.sin(2 * Math.PI * (r / 3.2) + 1.6 * wobble[p]) + 3.5 * Math.sin((2 * Math.PI * r) / ringPitch + ringPhase);
          const spec = specAmp * Math.exp(-(across * across) / specWidth2) * (0.55 + 0.45 * toward);
          part = 146 + 10 * tone[p] + marks + spec + 3 * grain;
          face = onPart === 1 && r > R_BORE + CHAMFER_BORE + MARGIN && r < R_OUT - CHAMFER_OUT - MARGIN && dh > R_HOLE + CHAMFER_HOLE + MARGIN;
          if (face && u > 0 && Math.abs(v) < KEY_HALF + MARGIN + 2 && r < R_BORE + KEY_DEPTH + MARGIN + 2) face = false;
        }
      }
      // Through the bore and the holes one sees the mat deeper down, in the part's shadow;
      // outside, the mat with the part's shadow on the side away from the light.
      const back =
        r < R_OUT
          ? 30 + 6 * mat[p] + 3 * grain
          : 46 + 7 * mat[p] + 9 * matCoarse[p] + 3.5 * grain - 26 * Math.exp(-(r - R_OUT) / 28) * clamp01(0.2 - toward);
      let sum = 0;
      for (let c = 0; c < 3; c++) {
        const value = sensor(lighting * (onPart * part * partTint[c] + (1 - onPart) * back * matTint[c]) + 1.2 * gauss(rand));
        planes[p * 3 + c] = value;
        sum += value;
      }
      lum[p] = sum / 3;
      if (face) allowed[p] = 1;
    }
  return { planes, lum, allowed, light: [lx, ly] };
}

/** Triangle wave of period 1 in [-1, 1] (a thread or knurl flank profile). */
const triangle = (t: number) => 4 * Math.abs(t - Math.floor(t + 0.5)) - 1;

/**
 * A turned steel shaft lying across the image on a dark roller conveyor, from left to right:
 * end chamfer, a threaded section (9 px pitch), a relief groove, a shoulder up to the ground
 * bearing seat (the inspected surface), a circlip groove, a diamond-knurled grip, end chamfer.
 * Cylindrical shading with a specular band that moves with the light, lengthwise grinding
 * streaks, circumferential lay, blend bands, light falling off towards the ends, the shaft's
 * shadow. Threads and knurls are finer than a 7× squash can keep: it turns them into moiré
 * that differs from image to image with the sub-pixel pose.
 */
export function renderShaft(rand: () => number): BaseImage {
  const { width: W, height: H } = PART_GEOMETRY.shaft;
  // Part coordinates along the shaft (px from its left end) of each section's start.
  const THREAD = 0;
  const RELIEF = 290;
  const SHOULDER = 306;
  const SEAT = 311;
  const GROOVE = 1090;
  const GROOVE_END = 1104;
  const KNURL = 1170;
  const KNURL_END = 1450;
  const END = 1510;
  const R_THREAD = 104;
  const R_RELIEF = 94;
  const R_SEAT = 140;
  const R_GROOVE = 128;
  const CHAMFER_PX = 7;
  const THREAD_PITCH = 9;
  const KNURL_PITCH = 7;
  const MARGIN = 10;
  const ROLLER_PITCH = 230;
  const planes = new Float32Array(W * H);
  const allowed = new Uint8Array(W * H);
  const start = (W - END) / 2 + range(rand, -5, 5);
  const yc0 = H / 2 + range(rand, -4, 4);
  const tilt = Math.tan(range(rand, -0.08, 0.08) * (Math.PI / 180));
  const diffuse = range(rand, 82, 104);
  const bandPos = range(rand, -0.5, -0.15);
  // A light not quite parallel to the shaft slants the band; the surroundings reflected in
  // the band make its brightness uneven along the shaft.
  const bandSlope = range(rand, -0.12, 0.12);
  const bandWidth = range(rand, 0.07, 0.13);
  const bandAmp = range(rand, 45, 85);
  const band2Pos = range(rand, 0.35, 0.6);
  const band2Amp = range(rand, 6, 18);
  const endFall = range(rand, 0.05, 0.22);
  const endShift = range(rand, -0.25, 0.25);
  const gain = range(rand, 0.92, 1.08);
  const lightAngle = (-90 + range(rand, -25, 25)) * (Math.PI / 180);
  const rollerPhase = range(rand, 0, ROLLER_PITCH);
  const reflections = noiseField(rand, W, 1, range(rand, 120, 260), 1000);
  // Streaks follow the shaft: shift each column by its tilt.
  const shift = Float32Array.from({ length: W }, (_, x) => -tilt * (x - W / 2));
  const fine = noiseField(rand, W, H, 110, 1.3, shift);
  const medium = noiseField(rand, W, H, 380, 7, shift);
  const blotch = noiseField(rand, W, H, 70, 30, shift);
  const along = noiseField(rand, W, 1, 260, 1000);
  const belt = noiseField(rand, W, H, 18, 18);
  // Circumferential lay of the grinding wheel: fine, nearly upright lines with a slight helix.
  const layPeriod = range(rand, 3.2, 4.8);
  const layHelix = range(rand, -0.06, 0.06);
  const layPhase = range(rand, 0, 2 * Math.PI);
  const layAmp = range(rand, 2.5, 5);
  const layAlong = noiseField(rand, W, 1, 150, 1000);
  // Blend bands where grinding passes overlap: soft brighter or darker bands across the seat.
  const bands = new Float32Array(W);
  for (let b = Math.floor(rand() * 4); b > 0; b--) {
    const at = range(rand, 0, W);
    const sigma = range(rand, 12, 40);
    const amp = (rand() < 0.5 ? -1 : 1) * range(rand, 3, 8);
    for (let x = 0; x < W; x++) bands[x] += amp * Math.exp(-(((x - at) / sigma) ** 2));
  }
  const lengthLight = Float32Array.from({ length: W }, (_, x) => {
    const e = (x - W / 2) / (W / 2) - endShift;
    return gain * (1 - endFall * e * e + 0.05 * along[x]);
  });
  const roller = Float32Array.from({ length: W }, (_, x) => {
    const xr = (((x - rollerPhase) % ROLLER_PITCH) + ROLLER_PITCH) % ROLLER_PITCH;
    return 22 * Math.exp(-(((xr - ROLLER_PITCH / 2) / 30) ** 2)) - 14 * Math.exp(-((xr / 6) ** 2));
  });
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const p = y * W + x;
      const yb = y + 0.5 - (yc0 + tilt * (x - W / 2));
      const s = x + 0.5 - start;
      // Radius of the section under this column; threads have a serrated outline.
      let radius = 0;
      if (s >= THREAD && s < RELIEF) radius = R_THREAD - 3 * Math.abs(triangle(s / THREAD_PITCH));
      else if (s >= RELIEF && s < SHOULDER) radius = R_RELIEF;
      else if (s >= SHOULDER && s < END) radius = s >= GROOVE && s < GROOVE_END ? R_GROOVE : R_SEAT;
      // End chamfers shave the corners.
      const fromEnd = Math.min(s - THREAD, END - s);
      if (radius > 0 && fromEnd < CHAMFER_PX) radius -= CHAMFER_PX - fromEnd;
      const grain = gauss(rand);
      const onPart = radius > 0 ? clamp01(radius - Math.abs(yb) + 0.5) : 0;
      let part = 0;
      if (onPart > 0) {
        const v = Math.max(-1, Math.min(1, yb / radius));
        const n = Math.sqrt(1 - v * v);
        const b1 = (v - bandPos - (bandSlope * (x - W / 2)) / (W / 2)) / bandWidth;
        const b2 = (v - band2Pos) / 0.1;
        const shade = diffuse * (0.35 + 0.65 * n) + bandAmp * (1 + 0.35 * reflections[x]) * Math.exp(-b1 * b1) + band2Amp * Math.exp(-b2 * b2);
        if (fromEnd < CHAMFER_PX || (s >= SHOULDER && s < SEAT)) {
          part = 150 + 30 * n + 3 * grain; // chamfers and the shoulder face catch the light
        } else if (s < RELIEF) {
          // Thread flanks, lit on one side, with the helix slanting the crests across the diameter.
          const t = triangle(s / THREAD_PITCH + 0.5 * v);
          part = shade * (0.75 + 0.25 * t) + 22 * t * n + 3 * grain;
        } else if (s < SHOULDER || (s >= GROOVE && s < GROOVE_END)) {
          part = 0.45 * shade + 3 * grain; // grooves are in shade
        } else if (s >= KNURL && s < KNURL_END) {
          // Diamond knurl: two crossed helices.
          const k1 = triangle((s + 0.58 * yb) / KNURL_PITCH);
          const k2 = triangle((s - 0.58 * yb) / KNURL_PITCH);
          part = shade * 0.8 + 16 * (k1 + k2) * (0.3 + 0.7 * n) + 3 * grain;
        } else {
          const lay = layAmp * (0.6 + 0.4 * layAlong[x]) * Math.sin((2 * Math.PI * (x + layHelix * yb)) / layPeriod + layPhase);
          part = shade + (8 * fine[p] + 6 * medium[p] + 5 * blotch[p] + lay + bands[x]) * (0.4 + 0.6 * n) + 3 * grain;
          const seat = (s > SEAT + MARGIN && s < GROOVE - MARGIN) || (s > GROOVE_END + MARGIN && s < KNURL - MARGIN);
          if (seat && Math.abs(yb) < 0.86 * radius - MARGIN) allowed[p] = 1;
        }
      }
      let back = 0;
      if (onPart < 1) {
        const r = radius > 0 ? radius : R_SEAT;
        const shadow = yb > 0 ? 24 * Math.exp(-(yb - r) / 22) : 6 * Math.exp((yb + r) / 18);
        back = 38 + roller[x] + 5 * belt[p] + 3 * grain - Math.min(30, radius > 0 ? shadow : 0);
      }
      planes[p] = sensor(lengthLight[x] * (onPart * part + (1 - onPart) * back) + 1.2 * gauss(rand));
    }
  return { planes, lum: planes.slice(), allowed, light: [Math.cos(lightAngle), Math.sin(lightAngle)] };
}
