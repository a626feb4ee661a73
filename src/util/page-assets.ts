/**
 * The browser pages' script and style files (`src/report/browser/`, `src/serve/browser/`),
 * read at run time and inlined into the HTML they belong to. They are published as written
 * (package.json `files`; `tsconfig.browser.json` type-checks the scripts), so the same path
 * from the package root works in a checkout and in an installed package.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The folder holding package.json, above this module (in `dist/src/util` or `src/util`). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('musc-ts: package.json not found above src/util/page-assets');
    dir = up;
  }
  return dir;
}

const texts = new Map<string, string>();

/**
 * Text of a page asset, by its path from the package root (e.g. `src/report/browser/report.css`),
 * read once. It must not contain `</script` or `</style`, which would end its inline element early.
 * @throws Error when the file is missing (an incomplete installation) or cannot be inlined.
 */
export function pageAsset(path: string): string {
  const known = texts.get(path);
  if (known !== undefined) return known;
  const file = join(packageRoot(), path);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`musc-ts is installed incompletely: cannot read ${file}`, { cause: err });
  }
  if (/<\/(script|style)/i.test(text)) throw new Error(`${file} contains a closing </script> or </style> tag and cannot be inlined`);
  texts.set(path, text);
  return text;
}
