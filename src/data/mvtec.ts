/**
 * Dataset readers for the MVTec AD layout (also used by Magnetic Tile and other
 * re-packaged sets), BTAD and VisA (spec §8).
 *
 * Order follows the reference: defect-type folders sorted, files sorted, both in
 * Unicode code-point order as Python's `sorted` gives. Unlike the reference, which
 * pairs the i-th sorted mask with the i-th sorted image, masks are paired by file
 * name, so a missing or extra mask is reported instead of silently shifting every
 * later pair.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { DatasetError, errorText } from '../errors.js';
import { IMAGE_EXTENSIONS, isImageFileName } from '../image/io.js';
import { RSCIN_K_DEFAULT, RSCIN_K_VISA } from '../pipeline/rscin.js';
import type { Dataset, DatasetItem, MaskRule } from './dataset.js';

/** Options shared by the folder readers. */
export interface ReadOptions {
  /** Override the dataset's mask rule (default `auto` for MVTec layout and BTAD). */
  maskRule?: MaskRule;
}

/**
 * Compares strings by Unicode code point, as Python's `sorted` does. JS's default
 * sort compares UTF-16 code units, which differs for characters above U+FFFF
 * versus U+E000..U+FFFF.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

/** Moves surrogates (U+D800..U+DFFF) above U+E000..U+FFFF so code-unit order becomes code-point order. */
function codePointRank(unit: number): number {
  if (unit < 0xd800) return unit;
  return unit <= 0xdfff ? unit + 0x2000 : unit - 0x800;
}

function stemOf(name: string): string {
  return name.slice(0, name.length - path.extname(name).length);
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** Names of the visible sub-folders of `dir`, code-point sorted. Symlinked folders count. */
async function listSubdirs(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const out: string[] = [];
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    if (e.isDirectory() || (e.isSymbolicLink() && (await isDirectory(path.join(dir, e.name))))) out.push(e.name);
  }
  return out.sort(compareCodePoints);
}

/** Names of the image files of `dir`, code-point sorted; [] if `dir` does not exist. */
async function listImages(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return [];
    throw new DatasetError(`cannot list folder ${JSON.stringify(dir)}: ${errorText(err)}`, { cause: err });
  }
  const out: string[] = [];
  for (const e of entries) {
    if (!isImageFileName(e.name)) continue;
    if (e.isFile() || (e.isSymbolicLink() && !(await isDirectory(path.join(dir, e.name))))) out.push(e.name);
  }
  return out.sort(compareCodePoints);
}

function listSome(paths: string[], max = 5): string {
  const shown = paths.slice(0, max).map((p) => JSON.stringify(p)).join(', ');
  return paths.length > max ? `${shown} and ${paths.length - max} more` : shown;
}

interface LayoutSpec {
  /** Lower-cased defect-type folder names that hold normal images. */
  normalTypes: ReadonlySet<string>;
  /** Candidate mask file names for an image stem, in order of preference. */
  maskNames: (stem: string) => string[];
  /** Human description of the layout, for error messages. */
  layout: string;
}

/** Reads `<dir>/test/<type>/<img>` with masks under `<dir>/ground_truth/<type>/`. */
async function readTestFolders(dir: string, spec: LayoutSpec): Promise<{ root: string; items: DatasetItem[] }> {
  const root = path.resolve(dir);
  if (!(await isDirectory(root))) throw new DatasetError(`dataset folder ${JSON.stringify(root)} does not exist or is not a folder`);
  const testDir = path.join(root, 'test');
  if (!(await isDirectory(testDir))) {
    throw new DatasetError(`no "test" folder in ${JSON.stringify(root)}: expected the ${spec.layout} layout`);
  }
  const gtDir = path.join(root, 'ground_truth');
  const types = await listSubdirs(testDir);
  const items: DatasetItem[] = [];
  const missing: string[] = [];
  const orphans: string[] = [];
  const ambiguous: string[] = [];
  for (const type of types) {
    const images = await listImages(path.join(testDir, type));
    if (spec.normalTypes.has(type.toLowerCase())) {
      // Masks of normal images (if any were shipped) are ignored, as the reference does: normal means all-zero.
      for (const name of images) items.push({ imagePath: path.join(testDir, type, name), maskPath: null, label: 0, defectType: type });
      continue;
    }
    const maskDir = path.join(gtDir, type);
    const masks = new Set(await listImages(maskDir));
    const claimed = new Set<string>();
    for (const name of images) {
      const imagePath = path.join(testDir, type, name);
      const candidates = spec.maskNames(stemOf(name));
      const found = candidates.filter((c) => masks.has(c) && !claimed.has(c));
      if (found.length === 0) {
        missing.push(`${imagePath} (expected ${candidates.map((c) => path.join(maskDir, c)).join(' or ')})`);
        continue;
      }
      if (found.length > 1) ambiguous.push(`${imagePath} (${found.map((c) => path.join(maskDir, c)).join(' and ')})`);
      claimed.add(found[0]);
      items.push({ imagePath, maskPath: path.join(maskDir, found[0]), label: 1, defectType: type });
    }
    for (const m of masks) if (!claimed.has(m)) orphans.push(path.join(maskDir, m));
  }
  // Masks for a defect type without a test folder have no image either.
  const typeSet = new Set(types);
  if (await isDirectory(gtDir)) {
    for (const type of await listSubdirs(gtDir)) {
      if (typeSet.has(type) || spec.normalTypes.has(type.toLowerCase())) continue;
      for (const m of await listImages(path.join(gtDir, type))) orphans.push(path.join(gtDir, type, m));
    }
  }
  if (missing.length > 0) {
    throw new DatasetError(`${missing.length} anomalous image(s) in ${JSON.stringify(root)} have no ground-truth mask: ${listSome(missing)}`);
  }
  if (ambiguous.length > 0) {
    throw new DatasetError(`${ambiguous.length} image(s) in ${JSON.stringify(root)} match more than one mask file: ${listSome(ambiguous)}`);
  }
  if (orphans.length > 0) {
    throw new DatasetError(`${orphans.length} ground-truth mask(s) in ${JSON.stringify(root)} have no matching test image: ${listSome(orphans)}`);
  }
  if (items.length === 0) {
    throw new DatasetError(
      `no test images in ${JSON.stringify(testDir)}: expected <defect_type>/<image> with extension ${IMAGE_EXTENSIONS.join(', ')}`,
    );
  }
  return { root, items };
}

/**
 * Reads one category in the MVTec AD layout: `<dir>/test/<type>/<img>`, masks at
 * `<dir>/ground_truth/<type>/<stem>_mask.png` (or `<stem>.png`). Types `good` and
 * `ok` are normal. Image extensions: png, jpg, jpeg, bmp, tif, tiff, webp.
 *
 * @param dir category folder, e.g. `.../mvtec_ad/bottle`
 * @param options `maskRule` override (default `auto`: exact-255 for 0/255 masks as the reference, > 127 for soft masks)
 * @throws DatasetError for a missing `test/` folder, no images, an anomalous image without a mask
 *   (naming the image and the expected mask path) or a mask without an image (naming the mask).
 */
export async function readMvtecCategory(dir: string, options: ReadOptions = {}): Promise<Dataset> {
  const { root, items } = await readTestFolders(dir, {
    normalTypes: new Set(['good', 'ok']),
    maskNames: (stem) => [`${stem}_mask.png`, `${stem}.png`],
    layout: 'MVTec AD (<category>/test/<defect_type>/<image>, <category>/ground_truth/<defect_type>/<stem>_mask.png)',
  });
  return { name: path.basename(root), root, items, rscinKList: [...RSCIN_K_DEFAULT], maskRule: options.maskRule ?? 'auto' };
}

/**
 * Reads one BTAD category: `<dir>/test/{ok,ko}/<img>`, masks at
 * `<dir>/ground_truth/ko/<stem>.png` or `<stem>.bmp`; `ok` is normal.
 *
 * @param dir category folder, e.g. `.../btad/01`
 * @param options `maskRule` override (default `auto`)
 * @throws DatasetError as {@link readMvtecCategory}.
 */
export async function readBtadCategory(dir: string, options: ReadOptions = {}): Promise<Dataset> {
  const { root, items } = await readTestFolders(dir, {
    normalTypes: new Set(['ok']),
    maskNames: (stem) => [`${stem}.png`, `${stem}.bmp`],
    layout: 'BTAD (<category>/test/{ok,ko}/<image>, <category>/ground_truth/ko/<stem>.png|.bmp)',
  });
  return { name: path.basename(root), root, items, rscinKList: [...RSCIN_K_DEFAULT], maskRule: options.maskRule ?? 'auto' };
}

/**
 * Parses comma-separated text (RFC 4180: `"` quoting with `""` escapes, LF or CRLF
 * line ends, optional UTF-8 BOM). Hand-written because no CSV parser is among the
 * dependencies and VisA's split file is plain (no quoted commas in its paths).
 * Blank lines are skipped.
 * @throws DatasetError on an unterminated quoted field.
 */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const endRow = (): void => {
    row.push(field);
    field = '';
    if (!(row.length === 1 && row[0] === '')) rows.push(row);
    row = [];
  };
  for (; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c !== '"') field += c;
      else if (text[i + 1] === '"') {
        field += '"';
        i++;
      } else quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n') endRow();
    else if (c === '\r') {
      if (text[i + 1] === '\n') i++;
      endRow();
    } else field += c;
  }
  if (quoted) throw new DatasetError('CSV text ends inside a quoted field');
  if (field !== '' || row.length > 0) endRow();
  return rows;
}

/**
 * Reads one VisA class from `<root>/split_csv/1cls.csv` (columns
 * `object,split,label,image,mask`): the rows with `split == test` and
 * `object == className`, in CSV order, as the reference's `meta.json` keeps them.
 * `label == anomaly` is anomalous; paths are relative to `root`.
 *
 * @param root VisA root (holding `split_csv/` and the class folders)
 * @param className e.g. `candle`
 * @param options `maskRule` override (default `visa`: > 0 after the resize, as the reference)
 * @throws DatasetError for a missing/malformed CSV, an unknown class, an anomalous row without
 *   a mask, or image/mask files that do not exist.
 */
export async function readVisaCategory(root: string, className: string, options: ReadOptions = {}): Promise<Dataset> {
  const absRoot = path.resolve(root);
  const csvPath = path.join(absRoot, 'split_csv', '1cls.csv');
  let text: string;
  try {
    text = await readFile(csvPath, 'utf8');
  } catch (err) {
    throw new DatasetError(`cannot read VisA split file ${JSON.stringify(csvPath)}: ${errorText(err)}`, { cause: err });
  }
  let rows: string[][];
  try {
    rows = parseCsv(text);
  } catch (err) {
    throw new DatasetError(`malformed VisA split file ${JSON.stringify(csvPath)}: ${errorText(err)}`, { cause: err });
  }
  const header = (rows[0] ?? []).map((h) => h.trim().toLowerCase());
  const col = (name: string): number => {
    const k = header.indexOf(name);
    if (k < 0) throw new DatasetError(`VisA split file ${JSON.stringify(csvPath)} has no "${name}" column (header: ${JSON.stringify(rows[0] ?? [])})`);
    return k;
  };
  const [cObject, cSplit, cLabel, cImage, cMask] = ['object', 'split', 'label', 'image', 'mask'].map(col);
  const items: DatasetItem[] = [];
  const objects = new Set<string>();
  for (let r = 1; r < rows.length; r++) {
    const row = rows[r];
    const object = (row[cObject] ?? '').trim();
    objects.add(object);
    if (object !== className || (row[cSplit] ?? '').trim() !== 'test') continue;
    const where = `${csvPath} line ${r + 1}`;
    const labelText = (row[cLabel] ?? '').trim().toLowerCase();
    if (labelText !== 'anomaly' && labelText !== 'normal') throw new DatasetError(`${where}: unknown label ${JSON.stringify(row[cLabel] ?? '')} (expected normal or anomaly)`);
    const image = (row[cImage] ?? '').trim();
    if (image === '') throw new DatasetError(`${where}: empty image path`);
    const imagePath = path.join(absRoot, image);
    const label: 0 | 1 = labelText === 'anomaly' ? 1 : 0;
    let maskPath: string | null = null;
    if (label === 1) {
      const mask = (row[cMask] ?? '').trim();
      if (mask === '') throw new DatasetError(`${where}: anomalous image ${JSON.stringify(imagePath)} has no mask path`);
      maskPath = path.join(absRoot, mask);
    }
    items.push({ imagePath, maskPath, label, defectType: path.basename(path.dirname(imagePath)) });
  }
  if (items.length === 0) {
    const known = [...objects].filter((o) => o !== '').sort(compareCodePoints);
    throw new DatasetError(`no test rows for class ${JSON.stringify(className)} in ${JSON.stringify(csvPath)} (classes: ${known.join(', ')})`);
  }
  // The CSV names files we never listed, so check they exist before a long run starts.
  const files = items.flatMap((it) => (it.maskPath === null ? [it.imagePath] : [it.imagePath, it.maskPath]));
  const exists = await Promise.all(files.map(async (f) => stat(f).then((s) => s.isFile(), () => false)));
  const absent = files.filter((_, k) => !exists[k]);
  if (absent.length > 0) throw new DatasetError(`${absent.length} file(s) listed in ${JSON.stringify(csvPath)} do not exist: ${listSome(absent)}`);
  return { name: className, root: absRoot, items, rscinKList: [...RSCIN_K_VISA], maskRule: options.maskRule ?? 'visa' };
}
