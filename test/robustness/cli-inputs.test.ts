/**
 * Robustness table: hostile inputs and flags on the command line. One row per case;
 * see harness.ts. Rows that score images use synthetic plates (no ../shared needed).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cliCases, writePlates } from './harness.js';

cliCases('cli inputs', [
  {
    name: 'an empty input folder is one clear line and exit 2',
    setup: (dir) => mkdir(path.join(dir, 'empty')),
    args: ['run', 'empty', '--out', 'o'],
    expect: { exit: 2, stderr: /^musc: no images found in empty/m },
  },
  {
    name: 'fewer than 5 readable images: exit 2 naming the count',
    setup: async (dir) => {
      await writePlates(dir, 'few', 4);
    },
    args: ['run', 'few', '--out', 'o'],
    expect: { exit: 2, stderr: /at least 5 readable images; found 4/ },
  },
  {
    name: 'a non-image file named .png among images is an error row, the rest is scored',
    setup: async (dir) => {
      const d = await writePlates(dir, 'mix', 6);
      await writeFile(path.join(d, 'zz_not_an_image.png'), 'hello');
    },
    args: ['run', 'mix', '--out', 'o'],
    expect: { exit: 0, stderr: /skipped .*zz_not_an_image\.png/, files: ['o/scores.csv', 'o/scores.json', 'o/report.html'], stdout: /6 images scored/ },
  },
  // Flags that only mean something beside another one are refused alone, not silently ignored.
  ...(
    [
      [['--tile-overlap', '0.5'], /--tile-overlap applies to tiles: add --tiles RxC or --tile-size PX/],
      [['--tile-match', 'any'], /--tile-match applies to tiles/],
      [['--refine-size', '448'], /--refine-size applies to --refine q/],
      [['--tile-size', '128', '--image-size', '256'], /--image-size does not apply to --tile-size/],
    ] as const
  ).map(([flags, message]) => ({
    name: `\`${flags.join(' ')}\` alone is refused (exit 2) naming the flag it needs, before anything is read`,
    setup: (dir: string) => writePlates(dir, 'p', 5).then(() => undefined),
    args: ['run', 'p', '--out', 'o', ...flags],
    expect: { exit: 2, stderr: message, absent: ['o'] },
  })),
]);
