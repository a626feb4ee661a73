/**
 * `musc bank info FILE [--json]`: what a bank holds, without loading a model or scoring,
 * so an operator can check a bank (after a copy, a crash, a failed update). A damaged bank
 * is still described as far as its header allows, and the command exits 2.
 */
import type { Command } from 'commander';
import { MuscError } from '../errors.js';
import { MIN_BANK_IMAGES, bankImageScore, bankStitching, readsVersion, inspectBankFile, type BankInspection, type BankHeader } from '../bank/format.js';
import { isBankLocked } from '../bank/lock.js';
import { kListWords } from '../pipeline/rscin.js';

/** The `--json` object (keys documented in README, "Checking a bank"). */
export interface BankInfoJson {
  readonly file: string;
  readonly version: number;
  /** Number of reference images (null when the header is unreadable). */
  readonly images: number | null;
  readonly imageNames: readonly string[] | null;
  readonly reference: string | null;
  readonly encoding: string | null;
  readonly config: BankHeader['config'] | null;
  readonly backbone: BankHeader['backbone'] | null;
  readonly threshold: BankHeader['threshold'] | null;
  readonly embeddingDim: number | null;
  readonly sets: BankHeader['sets'] | null;
  readonly createdAt: string | null;
  readonly updatedAt: string | null;
  readonly sizeBytes: number;
  readonly checksum: BankInspection['checksum'];
  /** Intact, this format version, and at least `minImages` images: `musc score` can use it. */
  readonly usable: boolean;
  readonly minImages: number | null;
  /** Another process is updating it right now (its lock is held and fresh). */
  readonly locked: boolean;
  readonly problems: readonly string[];
}

/** Describes a bank file (what `musc bank info --json` prints). */
export async function bankInfo(file: string): Promise<BankInfoJson> {
  const ins = await inspectBankFile(file);
  const s = ins.summary;
  const minImages = s ? (MIN_BANK_IMAGES[s.reference] ?? null) : null;
  const problems = [...ins.problems];
  if (s && minImages !== null && s.images.length < minImages) problems.push(`${s.images.length} images: scoring needs at least ${minImages}`);
  return {
    file,
    version: ins.version,
    images: s ? s.images.length : null,
    imageNames: s ? s.images.map((im) => im.name) : null,
    reference: s?.reference ?? null,
    encoding: s?.encoding ?? null,
    config: s?.config ?? null,
    backbone: s?.backbone ?? null,
    threshold: s?.threshold ?? null,
    embeddingDim: s?.embeddingDim ?? null,
    sets: s?.sets ?? null,
    createdAt: s?.createdAt ?? null,
    updatedAt: s?.updatedAt ?? null,
    sizeBytes: ins.sizeBytes,
    checksum: ins.checksum,
    usable: problems.length === 0 && readsVersion(ins.version),
    minImages,
    locked: await isBankLocked(file),
    problems,
  };
}

function describe(j: BankInfoJson): string {
  const b = j.backbone;
  const c = j.config;
  const names = j.imageNames ?? [];
  const rows: [string, string][] = [
    ['bank', j.file],
    ['format', `version ${j.version}`],
    ['images', j.images === null ? 'unknown (header unreadable)' : `${j.images}${names.length ? ` (oldest ${names[0]}, newest ${names[names.length - 1]})` : ''}`],
    ['reference', j.reference === null ? 'unknown' : `${j.reference} (scoring needs at least ${j.minImages} images)`],
    ['encoding', j.encoding ?? 'unknown'],
    ['backbone', !b ? 'unknown' : b.kind === 'vit' ? `${b.id} (ViT ${b.family}, ${b.model}, SHA-256 ${b.modelSha256.slice(0, 12)})` : b.id],
  ];
  if (c) {
    rows.push(
      ['image size', String(c.imageSize)],
      ['layers', c.layers.join(',')],
      ['r list', c.rList.join(',')],
      ['interval', c.interval.join(',')],
      ['k list', kListWords(c.kList)],
      ['embedding', `${j.embeddingDim}-d, ${c.embeddingSimilarity}`],
      ['image score', bankImageScore(c) === 'excess' ? "excess over the bank's typical map" : 'max of the map'],
    );
    const g = c.geometry?.coarse;
    if (g && g.boxes.length > 1) rows.push(['tiles', `${g.rows}x${g.cols}, matched by ${c.tileMatch ?? 'position'}, overlaps ${bankStitching(c) === 'blend' ? 'blended' : 'averaged (built before blending)'}`]);
  }
  if (j.threshold) rows.push(['threshold', `${j.threshold.value.toFixed(4)} (${j.threshold.method})`]);
  if (j.createdAt) rows.push(['created', j.createdAt], ['updated', j.updatedAt ?? '']);
  rows.push(
    ['size', `${(j.sizeBytes / 2 ** 20).toFixed(1)} MiB (${j.sizeBytes} bytes)`],
    ['checksum', j.checksum === 'ok' ? 'ok' : j.checksum.toUpperCase()],
    ['lock', j.locked ? 'held: another process is updating this bank now' : 'free'],
    ['usable', j.usable ? 'yes' : 'NO'],
  );
  return rows.map(([k, v]) => `${`${k}:`.padEnd(13)}${v}\n`).join('');
}

/** Adds `info` to `musc bank`. */
export function addBankInfoCommand(bank: Command): void {
  bank
    .command('info')
    .description('print what a bank holds (images, kind, config, backbone, encoding, size, checksum) without scoring; exit 2 if it is damaged')
    .argument('<file.mbank>')
    .option('--json', 'print one JSON object on stdout')
    .action(async (file: string, o: { json?: boolean }) => {
      const info = await bankInfo(file);
      process.stdout.write(o.json ? `${JSON.stringify(info)}\n` : describe(info));
      if (!info.usable) throw new MuscError('BANK', `${file}: ${info.problems.join('; ') || 'not usable'}`);
    });
}
