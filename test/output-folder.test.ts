/**
 * Output folders: ownership checks before any work, staging and swap, the marker that
 * keeps outputs from becoming inputs. No model needed.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { MuscError } from '../src/errors.js';
import { collectImages } from '../src/inputs/collect.js';
import { MANIFEST_NAME, readManifest } from '../src/outputs/manifest.js';
import { checkOutputFolder, OutputStaging } from '../src/outputs/output-folder.js';

let tmp = '';
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'musc-outfolder-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function stage(dir: string, files: Record<string, string>, overwrite = false): Promise<void> {
  const staging = await OutputStaging.open(await checkOutputFolder(dir, { overwrite }));
  for (const [rel, text] of Object.entries(files)) await writeFile(await staging.path(rel), text);
  await staging.commit('run', ['scores.csv', 'report.html']);
}

test('a new folder is checked without being created; a file in the way or a foreign non-empty folder is refused', async () => {
  const fresh = path.join(tmp, 'a', 'b', 'out');
  const plan = await checkOutputFolder(fresh);
  assert.equal(plan.exists, false);
  assert.ok(!existsSync(path.join(tmp, 'a')), 'checking creates nothing');
  await writeFile(path.join(tmp, 'file'), 'x');
  await assert.rejects(checkOutputFolder(path.join(tmp, 'file', 'out')), (e: MuscError) => e.code === 'OUTPUT' && /cannot write to output folder/.test(e.message));
  await assert.rejects(checkOutputFolder(path.join(tmp, 'file')), (e: MuscError) => e.code === 'OUTPUT');
  const foreign = path.join(tmp, 'foreign');
  await mkdir(foreign);
  await writeFile(path.join(foreign, 'thesis.docx'), 'precious');
  await assert.rejects(checkOutputFolder(foreign), (e: MuscError) => e.code === 'OUTPUT_NOT_EMPTY' && /--overwrite/.test(e.message) && /thesis\.docx/.test(e.message));
  assert.equal((await checkOutputFolder(foreign, { overwrite: true })).previous, null);
  const empty = path.join(tmp, 'empty');
  await mkdir(empty);
  assert.equal((await checkOutputFolder(empty)).exists, true);
});

test('a second run replaces exactly the files of the first: no stale overlays, user files kept', async () => {
  const dir = path.join(tmp, 'reuse');
  await stage(dir, { 'scores.csv': 'A', 'report.html': 'A', 'overlays/a1.png': 'A', 'overlays/a2.png': 'A', 'maps/a1.npy': 'A' });
  assert.deepEqual((await readManifest(dir))?.files.slice().sort(), ['maps/a1.npy', 'overlays/a1.png', 'overlays/a2.png', 'report.html', 'scores.csv']);
  await writeFile(path.join(dir, 'notes.txt'), 'mine');
  await stage(dir, { 'scores.csv': 'B', 'report.html': 'B', 'overlays/b1.png': 'B' });
  assert.deepEqual((await readdir(path.join(dir, 'overlays'))).sort(), ['b1.png']);
  assert.ok(!existsSync(path.join(dir, 'maps')), 'a folder emptied of old files goes');
  assert.equal(await readFile(path.join(dir, 'scores.csv'), 'utf8'), 'B');
  assert.equal(await readFile(path.join(dir, 'report.html'), 'utf8'), 'B');
  assert.equal(await readFile(path.join(dir, 'notes.txt'), 'utf8'), 'mine');
  const m = await readManifest(dir);
  assert.equal(m?.state, 'complete');
  assert.deepEqual(m?.files, ['overlays/b1.png', 'scores.csv', 'report.html'], 'the report moves in last');
  assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith('.musc-staging')), []);
});

test('a marker listing files outside its folder (shared or unzipped results) never makes a run delete them', async () => {
  const root = path.join(tmp, 'crafted');
  const dir = path.join(root, 'out');
  await stage(dir, { 'scores.csv': 'A', 'report.html': 'A' });
  await writeFile(path.join(root, 'victim.txt'), 'precious');
  await mkdir(path.join(dir, 'sub'));
  const marker = JSON.parse(await readFile(path.join(dir, MANIFEST_NAME), 'utf8')) as { files: string[] };
  marker.files.push('../victim.txt', path.join(root, 'victim.txt'), 'sub/../../victim.txt', './scores.csv', '..\\victim.txt');
  await writeFile(path.join(dir, MANIFEST_NAME), JSON.stringify(marker));
  assert.deepEqual((await readManifest(dir))?.files, ['scores.csv', 'report.html'], 'only plain relative paths are kept');
  await stage(dir, { 'scores.csv': 'B', 'report.html': 'B' });
  assert.equal(await readFile(path.join(root, 'victim.txt'), 'utf8'), 'precious');
  assert.equal(await readFile(path.join(dir, 'scores.csv'), 'utf8'), 'B');
});

test('an aborted run leaves the folder as it was, and removes a folder it created', async () => {
  const dir = path.join(tmp, 'keep');
  await stage(dir, { 'scores.csv': 'A', 'report.html': 'A' });
  const s = await OutputStaging.open(await checkOutputFolder(dir));
  await writeFile(await s.path('scores.csv'), 'B');
  await s.abort();
  assert.equal(await readFile(path.join(dir, 'scores.csv'), 'utf8'), 'A');
  assert.deepEqual((await readdir(dir)).sort(), [MANIFEST_NAME, 'report.html', 'scores.csv']);
  const created = path.join(tmp, 'new-parent', 'out');
  const s2 = await OutputStaging.open(await checkOutputFolder(created));
  await writeFile(await s2.path('overlays/x.png'), 'x');
  await s2.abort();
  assert.ok(!existsSync(path.join(tmp, 'new-parent')), 'folders the run created are removed');
});

test('staging folders of runs that died are removed, those of live runs kept', async () => {
  const dir = path.join(tmp, 'stale');
  await stage(dir, { 'scores.csv': 'A', 'report.html': 'A' });
  const dead = path.join(dir, '.musc-staging-99999999-abcd');
  const live = path.join(dir, `.musc-staging-${process.ppid}-abcd`);
  // Left by an earlier life of this process's id (a container restarted: node is pid 1 again).
  const reused = path.join(dir, `.musc-staging-${process.pid}-beef`);
  await mkdir(dead);
  await mkdir(live);
  await mkdir(reused);
  assert.equal((await checkOutputFolder(dir)).exists, true, 'staging folders do not make a folder foreign');
  // A run of this process still staging: a second run into the folder must not remove its files.
  const open = await OutputStaging.open(await checkOutputFolder(dir));
  await writeFile(await open.path('scores.csv'), 'C');
  await stage(dir, { 'scores.csv': 'B', 'report.html': 'B' });
  assert.ok(!existsSync(dead));
  assert.ok(!existsSync(reused), 'a staging folder of this pid that this process did not make is stale');
  assert.ok(existsSync(live));
  await open.commit('run', ['scores.csv']);
  assert.equal(await readFile(path.join(dir, 'scores.csv'), 'utf8'), 'C', 'the first run still committed its files');
});

test('input collection skips what musc wrote: files listed by markers, overlays/ and maps/ of output folders; keeps dangling image links', async () => {
  const root = path.join(tmp, 'inputs');
  await mkdir(path.join(root, 'sub'), { recursive: true });
  for (const n of ['a.png', 'sub/b.png']) await writeFile(path.join(root, n), 'x');
  // An output folder inside the input folder, and one about to be written (no marker yet).
  await stage(path.join(root, 'results'), { 'scores.csv': '', 'report.html': '', 'overlays/a.png': 'x', 'maps/a.npy': 'x' });
  await mkdir(path.join(root, 'next-out', 'overlays'), { recursive: true });
  await writeFile(path.join(root, 'next-out', 'overlays', 'c.png'), 'x');
  await symlink(path.join(root, 'missing.png'), path.join(root, 'dangling.png'));
  const got = await collectImages([root], { outputs: [path.join(root, 'next-out')] });
  assert.deepEqual(got.files.map((f) => path.relative(root, f)).sort(), ['a.png', 'dangling.png', path.join('sub', 'b.png')]);
  assert.deepEqual(got.skippedOutputs.map((d) => path.relative(root, d)).sort(), ['next-out', 'results']);
  const globbed = await collectImages([`${root}/**/*.png`]);
  assert.ok(!globbed.files.some((f) => f.includes(`${path.sep}results${path.sep}`)), 'globs skip outputs too');
  await assert.rejects(collectImages([path.join(root, 'results', 'overlays')]), /no images found.*skipped the outputs musc wrote in/);
});

test('--out equal to the input folder: the images stay inputs, the outputs written beside them do not', async () => {
  const photos = path.join(tmp, 'photos');
  await mkdir(photos);
  for (const n of ['1.png', '2.png']) await writeFile(path.join(photos, n), 'x');
  assert.equal((await collectImages([photos], { outputs: [photos] })).files.length, 2);
  // A folder of the user's images is not musc's: writing into it takes --overwrite.
  await stage(photos, { 'scores.csv': '', 'report.html': '', 'overlays/1.png': 'x', 'overlays/2.png': 'x', 'extra.png': 'a png musc wrote' }, true);
  const again = await collectImages([photos]);
  assert.deepEqual(again.files.map((f) => path.basename(f)).sort(), ['1.png', '2.png']);
  assert.deepEqual(again.skippedOutputs, [photos]);
});
