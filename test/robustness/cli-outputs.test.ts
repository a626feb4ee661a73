/**
 * Robustness table: output folders and result files that must not mislead (issue #14,
 * rows 4, 5, 11, 12), and user errors that must be one line with exit code 2 (rows 6, 9).
 * One row per case; see harness.ts. Synthetic plates only (no ../shared needed).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { readBank } from '../../src/bank/format.js';
import { strongestRegion, type Region } from '../../src/outputs/region.js';
import { cliCases, runMuscOk, writePlates, type CliCase } from './harness.js';

interface Row {
  path: string;
  decision: string;
  error?: string;
  overlay: string | null;
}

const rowsOf = async (out: string): Promise<Row[]> => (JSON.parse(await readFile(path.join(out, 'scores.json'), 'utf8')) as { images: Row[] }).images;
const listOf = async (dir: string): Promise<string[]> => (existsSync(dir) ? (await readdir(dir)).sort() : []);

/** scores.csv, scores.json, report.html, overlays/ and maps/ all describe the batch in folder `batch` and nothing else. */
async function describesOnly(dir: string, out: string, batch: string, other: string): Promise<void> {
  const o = path.join(dir, out);
  const rows = await rowsOf(o);
  const inBatch = (p: string) => p.startsWith(path.join(dir, batch) + path.sep);
  assert.ok(rows.length > 0 && rows.every((r) => inBatch(r.path)), `scores.json lists only ${batch}: ${rows.map((r) => r.path).join(', ')}`);
  const csv = await readFile(path.join(o, 'scores.csv'), 'utf8');
  assert.equal(csv.trim().split('\n').length, rows.length + 1, 'scores.csv has the rows of scores.json');
  assert.ok(!csv.includes(path.join(dir, other) + path.sep), `scores.csv has no ${other} rows`);
  const html = await readFile(path.join(o, 'report.html'), 'utf8');
  assert.ok(html.includes(path.join(dir, batch) + path.sep), `report.html shows ${batch}`);
  assert.ok(!html.includes(path.join(dir, other) + path.sep), `report.html shows nothing of ${other}`);
  const scored = rows.filter((r) => r.decision !== 'error');
  assert.equal((await listOf(path.join(o, 'overlays'))).length, scored.length, 'one overlay per scored image, none left over');
  assert.equal((await listOf(path.join(o, 'maps'))).length, scored.length, 'one map per scored image, none left over');
}

/** Batch A (`a` plates) scored into `o`, and batch B (`b` plates) waiting to be scored into `o` too. */
const runAThenPlates = (a: number, b: number) => async (dir: string) => {
  await writePlates(dir, 'A', a, 3);
  await writePlates(dir, 'B', b, 9);
  await runMuscOk(['run', 'A', '--out', 'o'], dir);
};

/** Plates in `B`, and a folder `docs` of the user's own files. */
async function platesAndForeignFolder(dir: string): Promise<void> {
  await writePlates(dir, 'B', 5);
  await mkdir(path.join(dir, 'docs'));
  await writeFile(path.join(dir, 'docs', 'thesis.txt'), 'precious');
}

/** Flag values that must fail at parse time, naming the flag and the accepted range. */
const badFlags: readonly [string[], RegExp][] = [
  [['--threshold', 'abc'], /--threshold <score>' argument 'abc' is invalid\. must be a number in \[0, 1\]/],
  [['--threshold', '5'], /--threshold <score>' argument '5' is invalid\. must be a number in \[0, 1\]/],
  [['--threshold', '-0.1'], /--threshold <score>' argument '-0\.1' is invalid/],
  [['--defect-rate', '0'], /--defect-rate <fraction>' argument '0' is invalid\. must be a number in \(0, 1\)/],
  [['--defect-rate', '1'], /--defect-rate <fraction>' argument '1' is invalid\. must be a number in \(0, 1\)/],
  [['--k-list', '0'], /--k-list <windows>' argument '0' is invalid\. must be comma-separated integers, each ≥ 1/],
  [['--k-list', '1,x'], /--k-list <windows>' argument '1,x' is invalid/],
  [['--r-list', '2'], /--r-list <degrees>' argument '2' is invalid\. must be comma-separated integers, odd and ≥ 1/],
  [['--interval', '0.3,0.1'], /--interval <low,high>' argument '0\.3,0\.1' is invalid\. must be "low,high" with 0 ≤ low < high ≤ 1/],
  [['--image-size', '10'], /--image-size <S\|WxH>' argument '10' is invalid\. must be S or WxH with each side an integer in 32\.\.2048/],
  [['--image-size', '448x9'], /--image-size <S\|WxH>' argument '448x9' is invalid/],
  [['--tile-overlap', '0.9'], /--tile-overlap <fraction>' argument '0\.9' is invalid\. must be a number in \[0, 0\.75\]/],
  [['--refine', '0'], /--refine <q>' argument '0' is invalid\. must be a number in \(0, 1\]/],
  [['--batch-size', '0'], /--batch-size <n>' argument '0' is invalid\. must be an integer of at least 1/],
  [['--threads', '1.5'], /--threads <n>' argument '1\.5' is invalid/],
  [['--std', '0,1,1'], /--std <r,g,b>' argument '0,1,1' is invalid\. expects three comma-separated positive numbers/],
];

const flagCases: CliCase[] = badFlags.map(([flag, stderr]) => ({
  name: `run ${flag.join(' ')}: exit 2 at parse time, naming the flag and the accepted range`,
  // `missing` does not exist either: the flag must be the error, before any input or model work.
  args: ['run', 'missing', '--out', 'o', ...flag],
  expect: { exit: 2, stderr, absent: ['o'] },
}));

cliCases('cli outputs', [
  {
    name: '#4 --out inside the input folder: a re-run does not score its own overlays',
    setup: async (dir) => {
      await writePlates(dir, 'five', 6);
      await runMuscOk(['run', 'five', '--out', 'five/results'], dir);
    },
    args: ['run', 'five', '--out', 'five/results'],
    expect: {
      exit: 0,
      stdout: /^6 images scored/m,
      check: async (dir) => {
        const rows = await rowsOf(path.join(dir, 'five', 'results'));
        assert.equal(rows.length, 6);
        assert.ok(!rows.some((r) => r.path.includes(`${path.sep}results${path.sep}`)), 'no output file among the inputs');
      },
    },
    timeout: 180_000,
  },
  {
    name: '#4 --out equal to the input folder (--overwrite the first time): a re-run scores the same images',
    setup: async (dir) => {
      await writePlates(dir, 'p', 6);
      await runMuscOk(['run', 'p', '--out', 'p', '--overwrite'], dir);
    },
    args: ['run', 'p', '--out', 'p'],
    expect: { exit: 0, stdout: /^6 images scored/m, check: async (dir) => assert.equal((await rowsOf(path.join(dir, 'p'))).length, 6) },
    timeout: 180_000,
  },
  {
    name: '#4 bank build and score skip output folders inside their inputs',
    setup: async (dir) => {
      await writePlates(dir, 'five', 6);
      await runMuscOk(['run', 'five', '--out', 'five/results'], dir);
      await runMuscOk(['bank', 'build', 'five', '--out', 'b.mbank'], dir);
      await runMuscOk(['score', '--bank', 'b.mbank', 'five', '--out', 'five/scored'], dir);
    },
    args: ['score', '--bank', 'b.mbank', 'five', '--out', 'five/scored', '--json'],
    expect: {
      exit: 0,
      check: async (dir, out) => {
        const res = JSON.parse(out.stdout) as { bankImages: number; results: unknown[] };
        assert.equal(res.bankImages, 6, 'the bank holds the 6 plates, not their overlays');
        assert.equal(res.results.length, 6, 'score takes the 6 plates, not the overlays of run or score');
      },
    },
    timeout: 240_000,
  },
  {
    name: '#5 a reused output folder holds only the new run: no stale overlays or maps, report and CSV agree',
    setup: runAThenPlates(7, 5),
    args: ['run', 'B', '--out', 'o'],
    expect: { exit: 0, stdout: /^5 images scored/m, check: (dir) => describesOnly(dir, 'o', 'B', 'A') },
    timeout: 180_000,
  },
  {
    name: '#5 a non-empty folder musc did not write is refused (exit 2, nothing written) unless --overwrite',
    setup: platesAndForeignFolder,
    args: ['run', 'B', '--out', 'docs', '--backbone', 'no-such-model.onnx'],
    expect: {
      exit: 2,
      stderr: /output folder docs is not empty and was not written by musc .*--overwrite/,
      absent: ['docs/scores.csv', 'docs/report.html'],
      check: async (dir) => assert.deepEqual(await listOf(path.join(dir, 'docs')), ['thesis.txt']),
    },
  },
  {
    name: '#5 --overwrite writes into a foreign folder and keeps its other files',
    setup: platesAndForeignFolder,
    args: ['run', 'B', '--out', 'docs', '--overwrite'],
    expect: { exit: 0, files: ['docs/thesis.txt', 'docs/scores.csv', 'docs/report.html', 'docs/.musc-output.json'] },
  },
  {
    name: '#5 Ctrl-C while outputs are written: the folder still describes one run, and the message says which',
    setup: runAThenPlates(6, 12),
    args: ['run', 'B', '--out', 'o'],
    // Once the second run starts writing: its staging folder appears, or (without staging) scores.json is replaced.
    interrupt: {
      when: async (dir) => {
        const o = path.join(dir, 'o');
        if ((await listOf(o)).some((n) => n.startsWith('.musc-staging'))) return true;
        return (await readFile(path.join(o, 'scores.json'), 'utf8').catch(() => '')).includes(path.join(dir, 'B') + path.sep);
      },
    },
    expect: {
      exit: [130, 0],
      check: async (dir, out) => {
        if (/interrupted/.test(out.stderr)) {
          await describesOnly(dir, 'o', 'A', 'B');
          assert.match(out.stderr, /musc: interrupted by the user; o was left as it was/);
        } else {
          await describesOnly(dir, 'o', 'B', 'A'); // the run finished before the signal landed
        }
        assert.deepEqual((await listOf(path.join(dir, 'o'))).filter((n) => n.startsWith('.musc-staging')), [], 'no staging folder left');
      },
    },
    timeout: 180_000,
  },
  {
    name: '#6 models inspect of a missing file: one line, exit 2, no stack trace',
    args: ['models', 'inspect', '/nonexistent.onnx'],
    expect: {
      exit: 2,
      stderr: /^musc: cannot read model "\/nonexistent\.onnx": ENOENT/,
      check: (_dir, out) => {
        assert.equal(out.stderr.trim().split('\n').length, 1, out.stderr);
        assert.doesNotMatch(out.stderr, /unexpected error|\n\s+at /);
      },
    },
  },
  {
    name: '#6 models inspect of a folder or a non-ONNX file: one line, exit 2',
    setup: (dir) => writeFile(path.join(dir, 'text.onnx'), 'not a model'),
    args: ['models', 'inspect', 'text.onnx'],
    expect: { exit: 2, stderr: /^musc: text\.onnx is not a valid ONNX model/m, check: (_dir, out) => assert.doesNotMatch(out.stderr, /\n\s+at /) },
  },
  ...flagCases,
  {
    name: '#9 bank build --threshold above the RsCIN range of an unlabeled bank: exit 2 before the model loads',
    setup: async (dir) => {
      await writePlates(dir, 'B', 5);
    },
    args: ['bank', 'build', 'B', '--out', 'b.mbank', '--threshold', '1.5', '--backbone', 'no-such-model.onnx'],
    expect: { exit: 2, stderr: /--threshold must be a number in \[0, 1\] for the RsCIN score of an unlabeled bank/, absent: ['b.mbank'] },
  },
  {
    name: '#9 score --threshold out of range: exit 2 naming the flag',
    args: ['score', '--bank', 'b.mbank', 'x.png', '--threshold', '3'],
    expect: { exit: 2, stderr: /--threshold <score>' argument '3' is invalid\. must be a number in \[0, 2\]/ },
  },
  {
    name: '#11 a dangling symlink named like an image is an error row ("broken symbolic link"), the rest is scored',
    setup: async (dir) => {
      const d = await writePlates(dir, 'mix', 6);
      await symlink(path.join(d, 'gone.png'), path.join(d, 'zz_dangling.png'));
    },
    args: ['run', 'mix', '--out', 'o'],
    expect: {
      exit: 0,
      stdout: /^6 images scored, .* 1 skipped/m,
      stderr: /skipped .*zz_dangling\.png: .*broken symbolic link/,
      check: async (dir) => {
        const rows = await rowsOf(path.join(dir, 'o'));
        const bad = rows.find((r) => r.path.endsWith('zz_dangling.png'));
        assert.equal(bad?.decision, 'error');
        assert.match(bad?.error ?? '', /broken symbolic link/);
        assert.match(await readFile(path.join(dir, 'o', 'scores.csv'), 'utf8'), /zz_dangling\.png,,,error,.*broken symbolic link/);
      },
    },
  },
  {
    name: '`run` and `score` state their image score and write typical.npy: scores and regions rebuild from the maps (excess by default; the map maximum with --image-score max)',
    timeout: 240_000,
    setup: async (dir) => {
      await writePlates(dir, 'A', 6, 3);
      await runMuscOk(['run', 'A', '--out', 'max', '--image-score', 'max'], dir);
      await runMuscOk(['bank', 'build', 'A', '--out', 'a.mbank'], dir);
      await runMuscOk(['score', '--bank', 'a.mbank', 'A', '--out', 's'], dir);
    },
    args: ['run', 'A', '--out', 'o'],
    expect: {
      exit: 0,
      check: async (dir) => {
        type Doc = { config: { imageScore: string }; resolution: { width: number; height: number }; images: { path: string; imageScore: number; map: string; region: Region }[] };
        const doc = async (o: string) => JSON.parse(await readFile(path.join(dir, o, 'scores.json'), 'utf8')) as Doc;
        const npy = async (file: string) => {
          const b = await readFile(file);
          return new Float32Array(b.buffer.slice(b.byteOffset + 10 + b.readUInt16LE(8), b.byteOffset + b.length));
        };
        const max = await doc('max');
        assert.equal(max.config.imageScore, 'max');
        assert.ok(!existsSync(path.join(dir, 'max', 'typical.npy')), 'no typical map with the max');
        assert.equal(max.images.length, 6, 'every plate is in scores.json');
        for (const im of max.images) assert.equal(im.imageScore, (await npy(path.join(dir, 'max', im.map))).reduce((a, v) => Math.max(a, v), -Infinity));
        for (const o of ['o', 's']) {
          const d = await doc(o);
          assert.equal(d.config.imageScore, 'excess', o);
          assert.equal(d.images.length, 6, `${o}: every plate is in scores.json`);
          const typical = await npy(path.join(dir, o, 'typical.npy'));
          for (const im of d.images) {
            const map = await npy(path.join(dir, o, im.map));
            let best = -Infinity;
            for (let i = 0; i < map.length; i++) best = Math.max(best, map[i] - typical[i]);
            assert.equal(im.imageScore, best, `${o}: image score = max(map - typical)`);
            const { width, height } = await sharp(path.resolve(dir, im.path)).metadata();
            assert.deepEqual(im.region, strongestRegion(map, d.resolution, width!, height!, typical), `${o}: region in map - typical`);
          }
        }
        // The bank's own typical map is what `score` measured against.
        assert.deepEqual(await npy(path.join(dir, 's', 'typical.npy')), (await readBank(path.join(dir, 'a.mbank'))).typical);
        assert.match(await readFile(path.join(dir, 'o', 'report.html'), 'utf8'), /max of the map minus the batch(&#39;|&#x27;|')s typical map/);
      },
    },
  },
  {
    name: '#12 an empty input folder fails before the model loads and leaves no output folder',
    setup: (dir) => mkdir(path.join(dir, 'empty')),
    // A model that does not exist: loading it first would be the error instead.
    args: ['run', 'empty', '--out', 'o', '--backbone', 'no-such-model.onnx'],
    expect: { exit: 2, stderr: /^musc: no images found in empty/m, absent: ['o'] },
  },
  {
    name: '#12 fewer than 5 images fails before the model loads and leaves no output folder',
    setup: async (dir) => {
      await writePlates(dir, 'few', 4);
    },
    args: ['run', 'few', '--out', 'new/o', '--backbone', 'no-such-model.onnx'],
    expect: { exit: 2, stderr: /at least 5 readable images; found 4/, absent: ['new'] },
  },
  {
    name: '#12 too few readable images (found after decoding) leaves no output folder',
    setup: async (dir) => {
      const d = await writePlates(dir, 'bad', 4);
      await writeFile(path.join(d, 'zz_text.png'), 'not an image');
    },
    args: ['run', 'bad', '--out', 'o'],
    expect: { exit: 2, stderr: /at least 5 readable images; found 4 \(1 of 5 files could not be read\)/, absent: ['o'] },
  },
]);
