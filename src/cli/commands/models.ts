/** `musc models inspect`: what an ONNX model offers as feature layers. */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { listTensorCandidates } from '../../backbone/graph-surgery.js';
import { defaultVitLayers, detectVitFamily } from '../../backbone/vit.js';
import { analyzeVit } from '../../backbone/vit-graph.js';
import { ModelError, errorText } from '../../errors.js';

/** What musc-ts reads from a ViT export (silent for non-ViT models). */
function printVitSummary(bytes: Uint8Array, file: string): void {
  let info: ReturnType<typeof analyzeVit>;
  try {
    info = analyzeVit(bytes, file);
  } catch (err) {
    process.stderr.write(`not usable as a ViT backbone: ${errorText(err).split('\n')[0]}\n`);
    return;
  }
  const family = detectVitFamily(info);
  const pos = info.positionEmbedding;
  const lines = [
    `ViT: family ${family ?? 'unknown (pass --backbone-type)'}, patch ${info.patchSize}, width ${info.width}, ${info.blockOutputs.length} blocks`,
    `  positional embedding: ${pos ? `${pos.name} [${pos.dims.join(', ')}], native ${info.nativeSize} px (${pos.grid}x${pos.grid})${pos.interpolatedInGraph ? ', interpolated in the graph' : ', re-baked for other sizes'}` : 'not found (other sizes must be exported as such)'}`,
    `  final norm after the last block: ${info.finalNorm ? `LayerNorm, eps ${info.finalNorm.epsilon}` : 'none found'}; QuickGELU activations: ${info.quickGeluCount}`,
    `  default layers: ${defaultVitLayers(info.blockOutputs.length).join(',')}; block outputs: ${info.blockOutputs.map((b, k) => `${k}=${b}`).join(' ')}`,
  ];
  process.stderr.write(`${lines.join('\n')}\n`);
}

const INTERESTING = new Set(['Add', 'Relu', 'LayerNormalization', 'Conv', 'Gelu', 'Concat', 'MatMul', 'Gemm', 'Identity', 'GlobalAveragePool', 'Flatten']);

export function addModelsCommand(program: Command): void {
  const models = program.command('models').description('inspect ONNX backbones');
  models
    .command('inspect')
    .description('list the tensors of an ONNX model that can be used as feature layers')
    .argument('<model.onnx>')
    .option('--filter <text>', 'only tensors whose name, node name or op contains this text')
    .option('--all', 'list every tensor, not only Add/Relu/LayerNormalization/Conv outputs')
    .action(async (file: string, o: { filter?: string; all?: boolean }) => {
      const bytes = new Uint8Array(
        await readFile(file).catch((err: unknown) => {
          throw new ModelError(`cannot read model ${JSON.stringify(file)}: ${errorText(err)}`, { cause: err });
        }),
      );
      printVitSummary(bytes, file);
      const rows = listTensorCandidates(bytes, file).filter(
        (c) => (o.all || INTERESTING.has(c.opType)) && (!o.filter || `${c.name} ${c.nodeName} ${c.opType}`.includes(o.filter)),
      );
      for (const c of rows) {
        process.stdout.write(`${String(c.index).padStart(5)}  ${c.opType.padEnd(18)} ${c.name}${c.shape ? `  [${c.shape.map((d) => d ?? '?').join(', ')}]` : ''}\n`);
      }
      process.stderr.write(`${rows.length} tensors; use these names (or block:K rules) with OnnxFeatureExtractor.create(model, names)\n`);
    });
}
