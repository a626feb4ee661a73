#!/usr/bin/python3
"""Generate test/fixtures/metrics.json: reference values for src/metrics/.

Run with Debian's interpreter, which has numpy, scikit-learn, scikit-image and scipy:

    /usr/bin/python3 scripts/gen-metric-fixtures.py

The TypeScript metrics are hand-written (no JS library provides them), so this
script pins them to the Python implementations MuSc reports with:

* image/pixel AUROC, AP, F1-max: sklearn roc_auc_score, average_precision_score,
  precision_recall_curve (F1 = 2PR/(P+R), non-finite values dropped, max);
* PRO: a transcription of MuSc's / cflow-ad's cal_pro_score (numpy arange
  thresholds, skimage label + regionprops, sklearn auc on min-max rescaled FPRs);
* AUPRO (MVTec): a transcription of the official MVTec AD evaluation code
  (compute_pro + trapezoid, integration limit 0.3, divided by 0.3), plus the
  same with FPRs kept in float64 (the official code stores them in float32);
* connected-component counts/labels from skimage.measure.label(connectivity=2).

Everything is seeded, so re-running it rewrites the same file. Scores are stored
as integers k meaning k / 10**4 (short JSON, and k / 1e4 is the same correctly
rounded double in Python and JS). Pixel maps are float32 in the TS pipeline, so
the references here are computed on float64 arrays holding the float32-rounded
values: exactly what the TS code sees.
"""
import bisect
import json
import math
import os
import sys

import numpy as np
import scipy
import scipy.ndimage
import skimage
import sklearn
from skimage import measure
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

SCALE = 10**4
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "metrics.json")


def quantize(x):
    """Round to 4 decimals and return the integer codes."""
    return np.rint(np.asarray(x, dtype=np.float64) * SCALE).astype(np.int64)


def decode(codes, float32):
    v = np.asarray(codes, dtype=np.float64) / SCALE
    if float32:
        v = v.astype(np.float32).astype(np.float64)
    return v


# ---------------------------------------------------------------- ranking metrics

def ranking_reference(labels, scores):
    labels = np.asarray(labels)
    auroc = float(roc_auc_score(labels, scores))
    ap = float(average_precision_score(labels, scores))
    p, r, _ = precision_recall_curve(labels, scores)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = (2 * p * r) / (p + r)
    f1max = float(np.max(f1[np.isfinite(f1)]))
    return {"auroc": auroc, "ap": ap, "f1max": f1max}


def image_cases(rng):
    cases = []

    def add(name, codes, labels, note):
        codes = np.asarray(codes, dtype=np.int64)
        labels = np.asarray(labels, dtype=np.int64)
        scores = decode(codes, float32=False)
        c = {"name": name, "note": note, "scores": codes.tolist(), "labels": labels.tolist()}
        if labels.min() == labels.max():
            c["expected"] = None  # undefined: MuSc sets all three to 0
        else:
            c["expected"] = ranking_reference(labels, scores)
        cases.append(c)

    add("doc-example", quantize([0.1, 0.4, 0.35, 0.8]), [0, 0, 1, 1], "sklearn docstring example")
    n = 60
    lab = (rng.random(n) < 0.4).astype(int)
    add("random-60", quantize(rng.normal(size=n) + 0.8 * lab), lab, "gaussian scores, shifted positives")
    n = 200
    lab = (rng.random(n) < 0.3).astype(int)
    add("ties-200", quantize(np.round(rng.random(n) * 0.7 + 0.3 * lab, 1)), lab,
        "scores rounded to one decimal: heavy ties")
    lab = np.array([0] * 12 + [1] * 8)
    add("perfect", quantize(np.concatenate([rng.random(12) * 0.4, 0.6 + rng.random(8) * 0.4])), lab,
        "perfect separation")
    add("reversed", quantize(np.concatenate([0.6 + rng.random(12) * 0.4, rng.random(8) * 0.4])), lab,
        "reversed separation")
    add("all-tied", quantize(np.full(10, 0.5)), [0, 1, 0, 0, 1, 0, 0, 1, 0, 0], "all scores equal")
    add("small-ties", quantize([0.2, 0.2, 0.7]), [1, 0, 1], "n = 3 with a tie across classes")
    n = 2000
    lab = (rng.random(n) < 0.05).astype(int)
    add("imbalanced-2000", quantize(np.round(rng.normal(size=n) + 1.5 * lab, 2) - 3.0), lab,
        "5% positives, negative scores, two-decimal ties")
    add("all-positive", quantize(rng.random(5)), [1, 1, 1, 1, 1], "one class only")
    add("all-negative", quantize(rng.random(5)), [0, 0, 0, 0, 0], "one class only")
    return cases


# ---------------------------------------------------------------- MuSc / cflow-ad PRO

def musc_pro(masks, amaps, max_step=200, expect_fpr=0.3):
    """Transcription of cal_pro_score (MuSc utils/metrics.py, from cflow-ad).

    Returns the score plus the per-threshold curve so the TS side can be
    checked point by point. Undefined cases (no kept threshold, one kept
    threshold, constant FPR) return None where the original raises or gives nan.
    """
    binary = np.zeros_like(amaps, dtype=bool)
    lo, hi = amaps.min(), amaps.max()
    delta = (hi - lo) / max_step
    ths = np.arange(lo, hi, delta)
    # Regions do not depend on the threshold: label once (the original re-labels
    # inside the loop, same result).
    regions = [measure.regionprops(measure.label(m)) for m in masks]
    inverse = 1 - masks
    pros, fprs = [], []
    for th in ths:
        binary[amaps <= th], binary[amaps > th] = 0, 1
        per_region = []
        for b, regs in zip(binary, regions):
            for reg in regs:
                tp = b[reg.coords[:, 0], reg.coords[:, 1]].sum()
                per_region.append(tp / reg.area)
        fp = np.logical_and(inverse, binary).sum()
        fprs.append(fp / inverse.sum())
        with np.errstate(invalid="ignore"):
            pros.append(np.array(per_region).mean() if per_region else float("nan"))
    pros, fprs = np.array(pros), np.array(fprs)
    keep = fprs < expect_fpr
    kf = fprs[keep]
    score = None
    if kf.size >= 2 and kf.max() > kf.min():
        x = (kf - kf.min()) / (kf.max() - kf.min())
        score = float(auc(x, pros[keep]))
    return score, ths, fprs, pros


# ---------------------------------------------------------------- official MVTec AD AUPRO

def mvtec_compute_pro(anomaly_maps, ground_truth_maps, float32_fpr=True):
    """Transcription of compute_pro from the MVTec AD evaluation code.

    float32_fpr=True keeps the official cast of the cumulative FP count to
    float32; False keeps it in float64 (what the TS code does by default).
    """
    structure = np.ones((3, 3), dtype=int)
    num_ok, num_regions = 0, 0
    shape = (len(anomaly_maps),) + anomaly_maps[0].shape
    fp_changes = np.zeros(shape, dtype=np.uint32)
    pro_changes = np.zeros(shape, dtype=np.float64)
    for i, gt in enumerate(ground_truth_maps):
        labeled, n_comp = scipy.ndimage.label(gt, structure)
        num_regions += n_comp
        ok = labeled == 0
        num_ok += np.sum(ok)
        fpc = np.zeros_like(gt, dtype=np.uint32)
        fpc[ok] = 1
        prc = np.zeros_like(gt, dtype=np.float64)
        for k in range(n_comp):
            reg = labeled == (k + 1)
            prc[reg] = 1.0 / np.sum(reg)
        fp_changes[i] = fpc
        pro_changes[i] = prc
    scores = np.array(anomaly_maps).ravel()
    order = np.argsort(scores).astype(np.uint32)[::-1]
    scores = scores[order]
    fpc = np.cumsum(fp_changes.ravel()[order])
    if float32_fpr:
        fpc = fpc.astype(np.float32)
        np.divide(fpc, num_ok, out=fpc)
        fprs = fpc
    else:
        fprs = fpc.astype(np.float64) / num_ok
    pros = np.cumsum(pro_changes.ravel()[order]) / num_regions
    keep = np.append(np.diff(scores) != 0, np.True_)
    fprs, pros = fprs[keep], pros[keep]
    np.clip(fprs, a_min=None, a_max=1.0, out=fprs)
    np.clip(pros, a_min=None, a_max=1.0, out=pros)
    zero, one = np.array([0.0]), np.array([1.0])
    return np.concatenate((zero, fprs, one)), np.concatenate((zero, pros, one))


def mvtec_trapezoid(x, y, x_max=None):
    """Transcription of trapezoid from the MVTec AD evaluation code."""
    x, y = np.array(x), np.array(y)
    finite = np.logical_and(np.isfinite(x), np.isfinite(y))
    x, y = x[finite], y[finite]
    correction = 0.0
    if x_max is not None:
        if x_max not in x:
            ins = bisect.bisect(x, x_max)
            assert 0 < ins < len(x)
            y_interp = y[ins - 1] + ((y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1]))
            correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
        mask = x <= x_max
        x, y = x[mask], y[mask]
    return np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction


def mvtec_aupro(maps, masks, float32_fpr=True, limit=0.3):
    fprs, pros = mvtec_compute_pro(list(maps), list(masks), float32_fpr)
    return float(mvtec_trapezoid(fprs, pros, x_max=limit) / limit)


# ---------------------------------------------------------------- pixel cases

def blob(h, w, cy, cx, ry, rx):
    yy, xx = np.mgrid[0:h, 0:w]
    return (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0).astype(np.uint8)


def smooth(m, passes=2):
    out = m.astype(np.float64)
    for _ in range(passes):
        p = np.pad(out, 1, mode="edge")
        out = sum(p[1 + dy:1 + dy + m.shape[0], 1 + dx:1 + dx + m.shape[1]]
                  for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9.0
    return out


def masks_to_strings(masks):
    return ["".join("1" if v else "0" for v in m.ravel()) for m in masks]


def pixel_case(name, note, masks, maps_float, extra_curve=True):
    masks = np.asarray(masks, dtype=np.int32)
    codes = quantize(maps_float)
    maps = decode(codes, float32=True).reshape(masks.shape)
    n, h, w = masks.shape
    labels = masks.ravel()
    case = {"name": name, "note": note, "n": n, "h": h, "w": w,
            "masks": masks_to_strings(masks), "maps": codes.ravel().tolist()}
    case["skimage_region_counts"] = [int(measure.label(m, connectivity=2).max()) for m in masks]
    if labels.max() == 0:
        case["expected"] = None
        return case
    exp = ranking_reference(labels, maps.ravel())
    pro, ths, fprs, pros = musc_pro(masks, maps)
    exp["pro"] = pro
    exp["aupro_mvtec"] = mvtec_aupro(maps, masks, float32_fpr=True)
    exp["aupro_mvtec_f64"] = mvtec_aupro(maps, masks, float32_fpr=False)
    # Other integration limits exercise the interpolation at the limit and the (1, 1) end point.
    exp["aupro_mvtec_f64_limits"] = {str(lim): mvtec_aupro(maps, masks, float32_fpr=False, limit=lim)
                                     for lim in (0.05, 1.0)}
    exp["n_thresholds"] = int(len(ths))
    if extra_curve:
        exp["pro_curve"] = {"fpr": fprs.tolist(), "pro": [None if math.isnan(p) else float(p) for p in pros]}
    case["expected"] = exp
    return case


def pixel_cases(rng):
    cases = []
    # A: 6 images 40x48: two normal, a blob, two diagonally touching squares
    # plus a blob, an "anomalous" image whose mask is empty, several small
    # regions including a single pixel and one clipped by the border.
    h, w = 40, 48
    m = np.zeros((6, h, w), dtype=np.uint8)
    m[2] = blob(h, w, 20, 24, 7, 10)
    m[3, 5:10, 5:10] = 1
    m[3, 10:15, 10:15] = 1  # touches the first square only at a corner
    m[3] |= blob(h, w, 28, 36, 5, 6)
    m[5, 0:4, 0:6] = 1
    m[5, 20, 20] = 1
    m[5] |= blob(h, w, 30, 10, 4, 3)
    m[5, 35:40, 40:48] = 1
    signal = np.stack([smooth(x) for x in m])
    maps = 0.25 * rng.random((6, h, w)) + 0.6 * signal + 0.05 * rng.normal(size=(6, h, w))
    maps[4] += 0.3 * smooth(blob(h, w, 10, 10, 4, 4))  # high scores but no GT
    cases.append(pixel_case("six-images", "6 x 40x48, blob masks, 8-connected diagonal squares, empty anomalous mask",
                            m, maps))

    # B: heavy ties (two-decimal scores).
    h, w = 32, 32
    m = np.zeros((4, h, w), dtype=np.uint8)
    m[1] = blob(h, w, 16, 16, 6, 9)
    m[2, 3:6, 3:30] = 1
    m[2, 6:9, 20:23] = 1
    m[3] = blob(h, w, 5, 5, 3, 3) | blob(h, w, 25, 25, 5, 4)
    maps = np.round(0.5 * rng.random((4, h, w)) + 0.5 * np.stack([smooth(x, 1) for x in m]), 2)
    cases.append(pixel_case("ties", "4 x 32x32, scores with two decimals (many ties)", m, maps))

    # C: large offset: thresholds are a few float32 ulps apart from pixel values.
    h, w = 24, 24
    m = np.zeros((3, h, w), dtype=np.uint8)
    m[0] = blob(h, w, 12, 12, 5, 5)
    m[0, 12, 12] = 0  # a hole does not split the region
    m[2, 0:3, 0:24] = 1
    maps = 1000.0 + 0.01 * rng.random((3, h, w)) + 0.005 * np.stack([smooth(x) for x in m])
    cases.append(pixel_case("offset-1000", "3 x 24x24, scores around 1000 (float32 granularity)", m, maps))

    # D: a case where numpy's arange gives 201 thresholds instead of 200.
    h, w = 20, 20
    m = np.zeros((3, h, w), dtype=np.uint8)
    m[1] = blob(h, w, 10, 8, 4, 5)
    m[2, 2:5, 2:5] = 1
    m[2, 15:18, 12:19] = 1
    base = 0.3 * rng.random((3, h, w)) + 0.5 * np.stack([smooth(x) for x in m])
    for attempt in range(10000):
        maps = base.copy()
        maps[0, 0, 0] = 0.1 + attempt * 0.0001  # move the global minimum
        mp = decode(quantize(maps), float32=True)
        if len(np.arange(mp.min(), mp.max(), (mp.max() - mp.min()) / 200)) == 201:
            break
    else:
        raise RuntimeError("no 201-threshold case found")
    cases.append(pixel_case("arange-201", "numpy arange yields 201 thresholds", m, maps))

    # E: almost perfect maps: few thresholds have FPR < 0.3 only if the maps
    # are near-binary; also negative scores.
    h, w = 16, 20
    m = np.zeros((2, h, w), dtype=np.uint8)
    m[1] = blob(h, w, 8, 10, 4, 6)
    maps = -2.0 + 0.02 * rng.random((2, h, w)) + 1.0 * m
    cases.append(pixel_case("near-perfect", "2 x 16x20, separated negative scores", m, maps))

    # F: FPR exactly 0.3 (54 of 180 normal pixels score high) on a whole range
    # of thresholds: separates "FPR < 0.3" from "<=", and takes the MVTec
    # trapezoid's "limit is a curve point" branch when FPR is float64.
    h, w = 10, 10
    m = np.zeros((2, h, w), dtype=np.uint8)
    m[1, 2:6, 2:7] = 1
    normal_idx = np.flatnonzero(m.ravel() == 0)
    assert normal_idx.size == 180
    maps = (0.2 * rng.random(2 * h * w)).reshape(-1)
    high = rng.choice(normal_idx, size=54, replace=False)
    maps[high] = 0.7 + 0.1 * rng.random(54)
    maps[m.ravel() == 1] = 0.5 + 0.5 * rng.random(20)
    cases.append(pixel_case("fpr-exactly-0.3", "2 x 10x10, FPR = 54/180 = 0.3 for thresholds in (0.2, 0.5)",
                            m, maps.reshape(2, h, w)))

    # G: no anomalous pixel at all: pixel metrics are 0 by the MuSc convention.
    m = np.zeros((2, 8, 8), dtype=np.uint8)
    cases.append(pixel_case("no-anomaly", "no anomalous pixel", m, rng.random((2, 8, 8)), extra_curve=False))
    return cases


def label_cases(rng):
    cases = []
    for i, (h, w, dens) in enumerate([(30, 37, 0.45), (25, 25, 0.6), (17, 40, 0.3)]):
        mask = (rng.random((h, w)) < dens).astype(np.uint8)
        lab = measure.label(mask, connectivity=2)
        nd, nn = scipy.ndimage.label(mask, np.ones((3, 3), dtype=int))
        assert nn == lab.max()
        lab4 = measure.label(mask, connectivity=1)
        cases.append({"name": f"random-{i}", "h": h, "w": w, "mask": masks_to_strings([mask])[0],
                      "count": int(lab.max()), "count4": int(lab4.max()), "labels": lab.ravel().tolist()})
    return cases


def arange_cases(rng):
    """numpy arange(min, max, (max - min) / 200) for awkward ranges."""
    out = []
    pairs = [(0.0, 1.0), (0.1, 0.7), (-3.0, 2.0), (1000.0, 1000.01), (1e-8, 3e-8)]
    while len(pairs) < 40:
        lo = float(np.float32(rng.normal() * 10.0 ** rng.integers(-3, 3)))
        hi = float(np.float32(lo + rng.random() * 10.0 ** rng.integers(-4, 3)))
        if hi > lo:
            pairs.append((lo, hi))
    for lo, hi in pairs:
        th = np.arange(lo, hi, (hi - lo) / 200)
        out.append({"min": lo, "max": hi, "length": int(len(th)),
                    "first": float(th[0]), "k100": float(th[100]), "last": float(th[-1])})
    return out


def main():
    rng = np.random.default_rng(20240425)
    data = {
        "generator": "scripts/gen-metric-fixtures.py",
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__, "sklearn": sklearn.__version__,
                     "skimage": skimage.__version__, "scipy": scipy.__version__},
        "score_scale": SCALE,
        "image": image_cases(rng),
        "pixel": pixel_cases(rng),
        "labels": label_cases(rng),
        "arange": arange_cases(rng),
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    with open(OUT, "w") as f:
        f.write(text + "\n")
    print(f"wrote {os.path.relpath(OUT, ROOT)} ({len(text) / 1024:.1f} KiB)")
    print(f"  versions: {data['versions']}")
    for c in data["image"]:
        e = c["expected"]
        desc = "undefined (one class)" if e is None else f"auroc={e['auroc']:.6f} ap={e['ap']:.6f} f1max={e['f1max']:.6f}"
        print(f"  image {c['name']:<16} n={len(c['scores']):<5} {desc}")
    for c in data["pixel"]:
        e = c["expected"]
        if e is None:
            print(f"  pixel {c['name']:<16} no anomalous pixel")
            continue
        pro = "nan" if e["pro"] is None else f"{e['pro']:.6f}"
        print(f"  pixel {c['name']:<16} {c['n']}x{c['h']}x{c['w']} regions={c['skimage_region_counts']} "
              f"auroc={e['auroc']:.6f} ap={e['ap']:.6f} f1max={e['f1max']:.6f} pro={pro} "
              f"aupro_mvtec={e['aupro_mvtec']:.6f} (f64 {e['aupro_mvtec_f64']:.6f}) thresholds={e['n_thresholds']}")
    for c in data["labels"]:
        print(f"  labels {c['name']}: {c['h']}x{c['w']} count8={c['count']} count4={c['count4']}")
    print(f"  arange: {len(data['arange'])} ranges, lengths {sorted(set(a['length'] for a in data['arange']))}")


if __name__ == "__main__":
    main()
