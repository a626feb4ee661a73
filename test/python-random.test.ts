/**
 * Pins the CPython random port and MuSc's subset split to values produced by
 * /usr/bin/python3 (scripts/gen-python-random-fixture.py → test/fixtures/python-random.json).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PythonRandom } from '../src/data/python-random.js';
import { splitSubsets } from '../src/data/subsets.js';
import type { DatasetItem } from '../src/data/dataset.js';
import { ConfigError } from '../src/errors.js';
import { repoRoot } from './helpers.js';


interface StreamCase {
  seed: string;
  getrandbits32: number[];
  getrandbits: [number, string][];
  shuffle20: number[];
  randrange: [number[], number][];
  random: string[];
}
interface SubsetCase {
  name: string;
  seed: number;
  paths: string[];
  subsets: Record<string, number[][]>;
}
interface Fixture {
  python: string;
  streams: StreamCase[];
  shuffle1000_seed42: number[];
  subsets: SubsetCase[];
}

const ROOT = repoRoot();
const fixture = JSON.parse(readFileSync(path.join(ROOT, 'test/fixtures/python-random.json'), 'utf8')) as Fixture;

function itemsFromPaths(paths: string[]): DatasetItem[] {
  return paths.map((p) => {
    const type = p.split('/')[1];
    const normal = type === 'good';
    return { imagePath: `/data/${p}`, maskPath: normal ? null : `/data/gt/${p}`, label: normal ? 0 : 1, defectType: type };
  });
}

for (const c of fixture.streams) {
  test(`PythonRandom(${c.seed}) reproduces CPython ${fixture.python}`, () => {
    const r = new PythonRandom(BigInt(c.seed));
    assert.deepEqual(c.getrandbits32.map(() => Number(r.getrandbits(32))), c.getrandbits32);

    r.seed(BigInt(c.seed));
    for (const [k, expected] of c.getrandbits) assert.equal(r.getrandbits(k).toString(), expected, `getrandbits(${k})`);

    r.seed(BigInt(c.seed));
    const x = Array.from({ length: 20 }, (_, i) => i);
    r.shuffle(x);
    assert.deepEqual(x, c.shuffle20);

    r.seed(BigInt(c.seed));
    for (const [args, expected] of c.randrange) {
      const got = args.length === 1 ? r.randrange(args[0]) : r.randrange(args[0], args[1], args[2]);
      assert.equal(got, expected, `randrange(${args.join(', ')})`);
    }

    r.seed(BigInt(c.seed));
    // Python's repr is the shortest round-trip text, so parsing it gives the identical double.
    for (const f of c.random) assert.equal(r.random(), Number(f));
  });
}

test('number and bigint seeds agree; the sign of the seed is ignored as in CPython', () => {
  const a = new PythonRandom(42);
  const b = new PythonRandom(42n);
  const c = new PythonRandom(-42);
  for (let i = 0; i < 5; i++) {
    const v = a.getrandbits(32);
    assert.equal(b.getrandbits(32), v);
    assert.equal(c.getrandbits(32), v);
  }
  assert.throws(() => new PythonRandom(1.5), RangeError);
  assert.throws(() => new PythonRandom(0).randrange(0), RangeError);
  assert.throws(() => new PythonRandom(0).randrange(5, 5), RangeError);
  assert.throws(() => new PythonRandom(0).randrange(0, 10, 0), RangeError);
  assert.equal(new PythonRandom(0).getrandbits(0), 0n);
});

test('shuffle of 1000 elements (crosses the 624-word state refill) matches CPython', () => {
  const r = new PythonRandom(42);
  const x = Array.from({ length: 1000 }, (_, i) => i);
  r.shuffle(x);
  assert.deepEqual(x, fixture.shuffle1000_seed42);
});

for (const c of fixture.subsets) {
  test(`splitSubsets matches the reference transcription: ${c.name}`, () => {
    const items = itemsFromPaths(c.paths);
    for (const [d, expected] of Object.entries(c.subsets)) {
      const got = splitSubsets(items, Number(d), c.seed);
      assert.deepEqual(got, expected, `divide_num ${d}`);
      // Disjoint and covering: a round-robin over one fixed shuffle.
      const all = got.flat().sort((a, b) => a - b);
      assert.deepEqual(all, items.map((_, i) => i));
    }
  });
}

test('splitSubsets: divide_num 1 is all indices in order; invalid or too large divide_num is a ConfigError', () => {
  const items = itemsFromPaths(['test/good/a.png', 'test/crack/b.png', 'test/good/c.png']);
  assert.deepEqual(splitSubsets(items, 1), [[0, 1, 2]]);
  assert.throws(() => splitSubsets(items, 0), ConfigError);
  assert.throws(() => splitSubsets(items, 2.5), ConfigError);
  // Largest group has 2 images, so a third subset would be empty.
  assert.throws(() => splitSubsets(items, 3), /subset 2 empty/);
});
