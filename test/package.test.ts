/**
 * The published package as a user gets it: `npm pack`, the tarball installed into an
 * empty project the way the README's library section says (onnxruntime-node's optional
 * CUDA download skipped), and the README's library example run there verbatim. Also:
 * the `musc-ts/stages` sub-path resolves, internals do not, and the `musc` bin starts.
 * Needs the npm registry for the dependencies, or a warm npm cache (`npm ci` fills it).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { writeSyntheticBatch } from '../src/demo/synthetic.js';
import { repoRoot } from './helpers.js';
import { writePlates } from './robustness/harness.js';

const run = promisify(execFile);
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** The environment of a user's shell: without the npm_* variables of the `npm test` running us. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  return { ...env, ...extra };
}

/** The first ```js block of the README's "## Library" section. */
async function readmeLibraryExample(): Promise<string> {
  const readme = await readFile(path.join(repoRoot(), 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Library'));
  const m = /```js\n([\s\S]*?)```/.exec(section);
  assert.ok(m, 'README has a ```js example in its Library section');
  return m[1];
}

test('npm pack, install into an empty project, run the README library example there', { timeout: 900_000 }, async () => {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'musc-pack-'));
  try {
    // dist/ is already built (npm test compiles first): skip `prepare`.
    const packed = await run(npm, ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { cwd: repoRoot(), env: userEnv(), maxBuffer: 16 << 20 });
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    const files = info.files.map((f) => f.path);
    for (const f of ['bin/musc.js', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/stages.js', 'dist/src/stages.d.ts', 'dist/src/cli/main.js', 'package.json', 'README.md']) {
      assert.ok(files.includes(f), `the tarball holds ${f}`);
    }
    for (const f of ['src/report/browser/report.js', 'src/report/browser/report.css', 'src/serve/browser/page.js', 'src/serve/browser/page.css']) {
      assert.ok(files.includes(f), `the tarball holds the page asset ${f} (inlined at run time)`);
    }
    const unexpected = files.filter((f) => /^(src|test|bench|scripts)\/|^dist\/(test|bench|scripts)\//.test(f) && !/^src\/[a-z]+\/browser\//.test(f));
    assert.deepEqual(unexpected, [], 'no TypeScript sources, tests or benchmarks in the tarball');

    const project = path.join(tmp, 'project');
    await mkdir(project);
    await writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    // As the README says for machines without access to onnxruntime-node's download host.
    await run(npm, ['install', path.join(tmp, info.filename), '--no-audit', '--no-fund', '--prefer-offline'], {
      cwd: project,
      env: userEnv({ ONNXRUNTIME_NODE_INSTALL: 'skip' }),
      maxBuffer: 16 << 20,
    });

    // The folders the example names: unlabeled photos, new images, a labelled category.
    await writePlates(project, 'photos', 8, 11);
    await writePlates(project, 'new', 2, 12);
    await writeSyntheticBatch(path.join(project, 'mvtec_ad', 'bottle'), { count: 10, seed: 13, defectRate: 0.3 });
    await writeFile(path.join(project, 'example.mjs'), await readmeLibraryExample());
    const out = await run(process.execPath, ['example.mjs'], { cwd: project, env: userEnv(), maxBuffer: 16 << 20 });
    const lines = out.stdout.trim().split('\n');
    assert.equal(lines.filter((l) => /^(normal|anomalous) +\d\.\d{3} .*photos/.test(l)).length, 8, out.stdout);
    assert.match(out.stdout, /^threshold \d\.\d{3} \(Otsu split\), maps 224x224$/m);
    assert.match(out.stdout, /^image AUROC \d\.\d{3} pixel AUPRO \d\.\d{3}$/m);
    assert.equal(lines.filter((l) => /^(normal|anomalous) +\d\.\d{3} .*new/.test(l)).length, 2, out.stdout);
    for (const f of ['results/scores.csv', 'results/scores.json', 'results/report.html', 'scored/report.html', 'scored/scores.json', 'line-A.mbank']) {
      assert.ok(existsSync(path.join(project, f)), `the example wrote ${f}`);
    }

    // The stages sub-path is public; internals are not reachable.
    const probe = `
      const stages = await import('musc-ts/stages');
      const main = await import('musc-ts');
      const internal = await import('musc-ts/dist/src/outputs/tables.js').then(() => 'reachable', (e) => e.code);
      console.log(JSON.stringify({ stages: typeof stages.lnamd + typeof stages.mutualScores + typeof stages.rscin, facade: Object.keys(main.Musc).sort(), internal }));`;
    const p = await run(process.execPath, ['--input-type=module', '-e', probe], { cwd: project, env: userEnv() });
    assert.deepEqual(JSON.parse(p.stdout), { stages: 'functionfunctionfunction', facade: ['buildBank', 'evaluate', 'open', 'run', 'score'], internal: 'ERR_PACKAGE_PATH_NOT_EXPORTED' });
    const help = await run(path.join(project, 'node_modules', '.bin', 'musc'), ['--help'], { cwd: project, env: userEnv() });
    assert.match(help.stdout, /Usage: musc/);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});
