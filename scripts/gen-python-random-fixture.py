#!/usr/bin/python3
"""Generate test/fixtures/python-random.json: reference values for src/data/python-random.ts
and src/data/subsets.ts.

    /usr/bin/python3 scripts/gen-python-random-fixture.py

The TypeScript port of CPython's random.Random is hand-written (no JS library
reproduces Python's MT19937 stream), so this pins it to the real interpreter:

* per seed (0, 42, 2**40 + 7, a 3-word seed, a negative seed): getrandbits(32) x 12,
  getrandbits of other widths (1, 7, 31, 33, 53, 64, 100), shuffle(range(20)),
  randrange with one, two and three arguments (including a > 32-bit bound),
  random(); each sequence starts from a fresh seed;
* shuffle(range(1000)) with seed 42 (crosses the 624-word state refill);
* MuSc's subset split (spec section 1.3), transcribed from the reference's
  sub_datasets(): fresh groups per subset, random.seed(seed) per subset, groups by
  parent folder in first-appearance order, shuffled, positions t, t+d, ...
  Cases: the magnetic_tile and mvtec_ad/bottle test lists read from ../shared/data in
  the reference's order (defect folders sorted, files sorted), and a synthetic list
  whose groups are interleaved (first-appearance order differs from sorted order).

Everything is deterministic; re-running rewrites the same file.
"""
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA = os.path.normpath(os.path.join(REPO, '..', 'shared', 'data'))
OUT = os.path.join(REPO, 'test', 'fixtures', 'python-random.json')
IMAGE_EXT = {'.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp'}


def stream_case(seed):
    r = random.Random(seed)
    bits32 = [r.getrandbits(32) for _ in range(12)]
    r.seed(seed)
    widths = [1, 7, 31, 33, 53, 64, 100]
    bits_other = [[k, str(r.getrandbits(k))] for k in widths]
    r.seed(seed)
    x = list(range(20))
    r.shuffle(x)
    r.seed(seed)
    calls = [[10], [1], [16], [1, 1000], [0, 2**33], [3, 100, 7], [100, 3, -7], [-50, 50], [2**52 + 5]]
    rr = [[c, r.randrange(*c)] for c in calls]
    r.seed(seed)
    floats = [repr(r.random()) for _ in range(5)]
    return {
        'seed': str(seed),
        'getrandbits32': bits32,
        'getrandbits': bits_other,
        'shuffle20': x,
        'randrange': rr,
        'random': floats,
    }


def sub_datasets(parents, divide_num, divide_iter, seed=42):
    """The reference's MVTecDataset.sub_datasets on a list of parent-folder names."""
    random.seed(seed)
    id_dict = {}
    for i, t in enumerate(parents):
        id_dict.setdefault(t, []).append(i)
    sub_id_list = []
    for k in id_dict.keys():
        type_id_list = id_dict[k]
        random.shuffle(type_id_list)
        devide_list = [type_id_list[i:i + divide_num] for i in range(0, len(type_id_list), divide_num)]
        sub_id_list.extend(devide_list[i][divide_iter] for i in range(len(devide_list)) if len(devide_list[i]) > divide_iter)
    return sub_id_list


def mvtec_test_list(category_dir):
    """Relative paths test/<type>/<file> in the reference's order (sorted types, sorted files)."""
    test = os.path.join(category_dir, 'test')
    out = []
    for t in sorted(os.listdir(test)):
        if t.startswith('.') or not os.path.isdir(os.path.join(test, t)):
            continue
        for f in sorted(os.listdir(os.path.join(test, t))):
            if not f.startswith('.') and os.path.splitext(f)[1].lower() in IMAGE_EXT:
                out.append('test/%s/%s' % (t, f))
    return out


def subset_case(name, paths, divide_nums, seed=42):
    parents = [p.split('/')[-2] for p in paths]
    return {
        'name': name,
        'seed': seed,
        'paths': paths,
        'subsets': {str(d): [sub_datasets(parents, d, t, seed) for t in range(d)] for d in divide_nums},
    }


def main():
    fixture = {
        'python': sys.version.split()[0],
        'streams': [stream_case(s) for s in [0, 42, 2**40 + 7, 2**70 + 12345, -42]],
        'shuffle1000_seed42': None,
        'subsets': [],
    }
    r = random.Random(42)
    x = list(range(1000))
    r.shuffle(x)
    fixture['shuffle1000_seed42'] = x

    synthetic = []
    for i, t in enumerate(['zeta', 'alpha', 'zeta', 'mid', 'alpha', 'zeta', 'mid', 'alpha', 'zeta', 'zeta', 'alpha']):
        synthetic.append('test/%s/%03d.png' % (t, i))
    fixture['subsets'].append(subset_case('synthetic', synthetic, [2, 3]))
    fixture['subsets'].append(subset_case('synthetic-seed0', synthetic, [3], seed=0))
    for name, rel, ds in [('magnetic_tile', 'magnetic_tile', [2, 3, 4]), ('bottle', 'mvtec_ad/bottle', [3])]:
        d = os.path.join(DATA, rel)
        if not os.path.isdir(d):
            sys.exit('missing %s (the shared evaluation data)' % d)
        fixture['subsets'].append(subset_case(name, mvtec_test_list(d), ds))

    with open(OUT, 'w') as f:
        json.dump(fixture, f, separators=(',', ':'))
        f.write('\n')
    print('wrote', OUT)


if __name__ == '__main__':
    main()
