/**
 * A Node test reporter that fails the run when any test is skipped or marked todo: a test that
 * cannot run because something is missing must fail, not pass quietly (see scripts/test.mjs).
 * Prints nothing when no test was skipped. Tests left out on request (--test-name-pattern,
 * --test-only) are not counted.
 */
const REQUESTED = new Set(['test name does not match pattern', "'only' option not set"]);
export default async function* noSkips(source) {
  const skipped = [];
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const { name, file, skip, todo } = event.data;
    if (REQUESTED.has(skip)) continue;
    if (skip !== undefined || todo !== undefined) skipped.push(`${name}${file ? ` (${file})` : ''}: ${skip ?? todo}`);
  }
  if (skipped.length > 0) {
    process.exitCode = 1;
    yield `\n${skipped.length} test(s) skipped or todo, which this project does not allow:\n${skipped.map((s) => `  - ${s}\n`).join('')}`;
  }
}
