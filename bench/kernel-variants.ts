/**
 * Design measurement for the similarity kernel: per MSM block shape, the time of the
 * GEMM alone against GEMM + the two max-reductions, for the ways int8 products can be
 * reduced (int32 ReduceMax, Cast to float then ReduceMax, com.microsoft
 * MatMulIntegerToFloat then ReduceMax). Median of 40 runs after warm-up, one process.
 *
 *   node dist/bench/kernel-variants.js
 */
import * as ort from 'onnxruntime-node';
import { createSession } from '../src/backbone/onnx-backbone.js';
import { attr, encodeModel, FLOAT, INT32, INT64, INT8, UINT8 } from '../src/backbone/onnx-proto.js';

type Variant = 'fp32' | 'int8-int32' | 'int8-cast' | 'int8-mmitf';
const vi = (name: string, t: number, dims: (string | number)[]) => ({ name, type: { tensorType: { elemType: t, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } } });

function model(v: Variant, reduce: boolean): Uint8Array {
  const bt = { opType: 'Transpose', input: ['B'], output: ['Bt'], attribute: [attr.ints('perm', [1, 0])] };
  const product =
    v === 'fp32'
      ? [{ opType: 'Gemm', input: ['A', 'B'], output: ['S'], attribute: [attr.int('transB', 1)] }]
      : v === 'int8-mmitf'
        ? [bt, { opType: 'MatMulIntegerToFloat', domain: 'com.microsoft', input: ['A', 'Bt', 'one', 'one', 'zp'], output: ['S'] }]
        : v === 'int8-cast'
          ? [bt, { opType: 'MatMulInteger', input: ['A', 'Bt', 'zp'], output: ['Si'] }, { opType: 'Cast', input: ['Si'], output: ['S'], attribute: [attr.int('to', FLOAT)] }]
          : [bt, { opType: 'MatMulInteger', input: ['A', 'Bt', 'zp'], output: ['S'] }];
  const out = v === 'int8-int32' ? INT32 : FLOAT;
  const nodes = reduce
    ? [
        ...product,
        { opType: 'Reshape', input: ['S', 'row_shape'], output: ['Sr'] },
        { opType: 'ReduceMax', input: ['Sr'], output: ['row_max'], attribute: [attr.ints('axes', [2]), attr.int('keepdims', 0)] },
        { opType: 'Reshape', input: ['S', 'col_shape'], output: ['Sc'] },
        { opType: 'ReduceMax', input: ['Sc'], output: ['col_max'], attribute: [attr.ints('axes', [1]), attr.int('keepdims', 0)] },
      ]
    : [...product, { opType: 'Slice', input: ['S', 'st', 'en'], output: ['Y'] }];
  const inputs =
    v === 'fp32'
      ? [vi('A', FLOAT, ['m', 'c']), vi('B', FLOAT, ['n', 'c'])]
      : [vi('A', UINT8, ['m', 'c']), vi('B', INT8, ['n', 'c']), vi('zp', UINT8, []), ...(v === 'int8-mmitf' ? [vi('one', FLOAT, [])] : [])];
  const extra = reduce ? [vi('row_shape', INT64, [3]), vi('col_shape', INT64, [3])] : [vi('st', INT64, [2]), vi('en', INT64, [2])];
  const outputs = reduce ? [vi('row_max', out, ['a', 'b']), vi('col_max', out, ['c', 'd'])] : [vi('Y', out, [1, 1])];
  return encodeModel({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }, { domain: 'com.microsoft', version: 1 }], graph: { name: 'x', node: nodes, input: [...inputs, ...extra], output: outputs } });
}

const i64 = (a: number[]) => new ort.Tensor('int64', BigInt64Array.from(a.map(BigInt)), [a.length]);
const rows: Record<string, unknown>[] = [];
for (const [P, C, I] of [
  [784, 516, 2],
  [196, 1028, 8],
]) {
  const m = I * P;
  for (const v of ['fp32', 'int8-int32', 'int8-cast', 'int8-mmitf'] as const) {
    const A = v === 'fp32' ? new ort.Tensor('float32', Float32Array.from({ length: m * C }, () => Math.random() - 0.5), [m, C]) : new ort.Tensor('uint8', Uint8Array.from({ length: m * C }, () => Math.random() * 255), [m, C]);
    const B = v === 'fp32' ? new ort.Tensor('float32', Float32Array.from({ length: m * C }, () => Math.random() - 0.5), [m, C]) : new ort.Tensor('int8', Int8Array.from({ length: m * C }, () => Math.random() * 250 - 125), [m, C]);
    const base: Record<string, ort.Tensor> = v === 'fp32' ? { A, B } : { A, B, zp: new ort.Tensor('uint8', Uint8Array.from([128]), []), ...(v === 'int8-mmitf' ? { one: new ort.Tensor('float32', Float32Array.from([1]), []) } : {}) };
    const res: Record<string, number> = {};
    for (const reduce of [false, true]) {
      const s = await createSession(model(v, reduce));
      const feeds = reduce ? { ...base, row_shape: i64([m, I, P]), col_shape: i64([I, P, m]) } : { ...base, st: i64([0, 0]), en: i64([1, 1]) };
      for (let w = 0; w < 5; w++) await s.run(feeds);
      const times: number[] = [];
      for (let r = 0; r < 40; r++) {
        const t = performance.now();
        await s.run(feeds);
        times.push(performance.now() - t);
      }
      times.sort((a, b) => a - b);
      res[reduce ? 'full' : 'gemm'] = times[20];
      await s.release();
    }
    const row = { P, C, block: m, variant: v, gemm_ms: res.gemm, full_ms: res.full, ratio: res.full / res.gemm };
    rows.push(row);
    process.stderr.write(`P=${P} C=${C} ${v.padEnd(11)} gemm ${res.gemm.toFixed(2)} ms, gemm+reductions ${res.full.toFixed(2)} ms, ratio ${(res.full / res.gemm).toFixed(2)}\n`);
  }
}
process.stdout.write(`${JSON.stringify(rows)}\n`);
