/**
 * Whether ONNX Runtime's u8×s8 integer GEMM is exact on this CPU. On x86-64
 * without VNNI, MLAS uses `vpmaddubsw`, which adds pairs of u8·s8 products into a
 * saturating int16: with full 8-bit codes (255·127·2 > 32767) the largest dot
 * products, exactly the best matches, would be clipped. ORT's own advice is to
 * quantise weights to 7 bits there ("reduce range"); VNNI (`vpdpbusd`) and ARM's
 * dot-product instructions accumulate in int32 and need no such care.
 */
import { readFileSync } from 'node:fs';

let cached: boolean | undefined;

/** True when full-range u8×s8 products are exact (VNNI on x86-64, or not x86-64 at all). */
export function int8FullRangeIsExact(): boolean {
  if (cached !== undefined) return cached;
  if (process.arch !== 'x64' && process.arch !== 'ia32') return (cached = true);
  try {
    const flags = readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? '';
    cached = /\b(avx512_vnni|avx_vnni)\b/.test(flags);
  } catch {
    cached = false; // cannot tell (not Linux): be safe
  }
  return cached;
}
