/**
 * The browser pages' scripts are real, type-checked files: `tsconfig.browser.json` (run by
 * `npm run build`) checks them against the DOM and the data they read, a type error in them
 * is reported, and the report and the serve page inline exactly those files.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';
import { renderReportHtml } from '../src/report/html.js';
import { renderPage } from '../src/serve/page.js';
import { repoRoot } from './helpers.js';

const ROOT = repoRoot();
const PAGES = {
  report: { script: 'src/report/browser/report.js', style: 'src/report/browser/report.css' },
  serve: { script: 'src/serve/browser/page.js', style: 'src/serve/browser/page.css' },
};

/** Type errors of the browser program, with `patch` appended to one file's text. */
function browserDiagnostics(patch?: { file: string; append: string }): string[] {
  const configFile = path.join(ROOT, 'tsconfig.browser.json');
  const parsed = ts.getParsedCommandLineOfConfigFile(configFile, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => assert.fail(String(d.messageText)) });
  assert.ok(parsed, 'tsconfig.browser.json parses');
  const host = ts.createCompilerHost(parsed.options);
  const target = patch ? path.join(ROOT, patch.file) : null;
  const readFile = host.readFile.bind(host);
  host.readFile = (f) => {
    const text = readFile(f);
    return target && path.resolve(f) === target && text !== undefined ? text + patch!.append : text;
  };
  const program = ts.createProgram(parsed.fileNames, parsed.options, host);
  for (const page of Object.values(PAGES)) {
    assert.ok(
      program.getRootFileNames().some((f) => path.resolve(f) === path.join(ROOT, page.script)),
      `${page.script} is checked by tsconfig.browser.json`,
    );
  }
  return ts.getPreEmitDiagnostics(program).map((d) => `${d.file ? path.relative(ROOT, d.file.fileName) : ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
}

test('the page scripts type-check against the DOM and their data, and a type error in them is caught', { timeout: 120_000 }, () => {
  assert.deepEqual(browserDiagnostics(), []);
  // Typical slips: a number where the DOM wants a string, a field the data contract does not have.
  const slips = [
    { file: PAGES.report.script, append: "\ndocument.body.textContent = 5;\n" },
    { file: PAGES.report.script, append: "\n/** @param {import('../report-data.js').ReportImage} img */\nexport const anomalyScore = (img) => img.anomalyScore;\n" },
    { file: PAGES.serve.script, append: "\n/** @param {import('../api.js').ScoreResponse} r */\nexport const s = (r) => r.score.toFixed('4');\n" },
  ];
  for (const slip of slips) {
    const errors = browserDiagnostics(slip);
    assert.ok(errors.length > 0 && errors.every((e) => e.startsWith(slip.file)), `${slip.append.trim()} -> ${errors.join('; ') || 'no error'}`);
  }
});

test('the report and the serve page inline exactly the checked script and style files', () => {
  const read = (f: string) => readFileSync(path.join(ROOT, f), 'utf8');
  const report = renderReportHtml({ title: 't', generatedAt: '2025-01-01T00:00:00Z', tool: 'musc-ts', config: {}, threshold: { value: 0.5, method: 'm', assumption: 'a' }, images: [], failures: [] });
  assert.ok(report.includes(`<script>${read(PAGES.report.script)}</script>`));
  assert.ok(report.includes(`<style>${read(PAGES.report.style)}</style>`));
  const serve = renderPage();
  assert.ok(serve.html.includes(`<script>${read(PAGES.serve.script)}</script>`));
  assert.ok(serve.html.includes(`${read(PAGES.serve.style)}</style>`));
  assert.match(serve.html, /<style>:root \{ --turbo: linear-gradient\(90deg, rgb\(/, 'the colour scale comes from the heatmap colormap');
});
