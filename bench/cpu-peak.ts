/**
 * The machine's arithmetic peak, from what the OS says about the CPU:
 *   cores × SIMD lanes × FMA units × 2 (multiply + add) × clock.
 * Lanes come from the ISA flags (AVX-512: 16 fp32 lanes, AVX2: 8); int8 dot products
 * (VNNI `vpdpbusd`) do 4 u8×s8 multiply-adds per 32-bit lane; AMX (`amx_int8`) does
 * 1024 int8 multiply-adds per cycle and core (Intel's figure). The FMA unit count is not
 * visible to software: 2 per core is assumed (Intel Xeon Scalable Gold/Platinum and
 * later, AMD Zen 5 server parts); stated in the output so it can be checked.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface ArithmeticPeak {
  readonly fp32Gflops: number;
  /** VNNI (or AVX2 pairwise) int8 peak. */
  readonly int8Gops: number;
  /** AMX int8 peak, when the CPU has AMX. */
  readonly amxInt8Gops: number | null;
  readonly how: string;
}

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

export function arithmeticPeak(fmaUnits = 2): ArithmeticPeak {
  const cpuinfo = read('/proc/cpuinfo');
  const flags = cpuinfo.match(/^flags\s*:(.*)$/m)?.[1] ?? '';
  const has = (f: string) => new RegExp(`\\b${f}\\b`).test(flags);
  const maxKhz = Number(read('/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq').trim());
  const mhz = maxKhz > 0 ? maxKhz / 1000 : Number(cpuinfo.match(/^cpu MHz\s*:\s*([\d.]+)/m)?.[1] ?? os.cpus()[0]?.speed ?? 0);
  const ghz = mhz / 1000;
  const cores = os.cpus().length;
  const lanes = has('avx512f') ? 16 : has('avx2') ? 8 : 4;
  const fp32 = cores * lanes * fmaUnits * 2 * ghz;
  const vnni = has('avx512_vnni') || has('avx_vnni');
  // VNNI: 4 MACs per 32-bit lane per instruction; AVX2 without VNNI: vpmaddubsw + vpmaddwd ≈ 2 per lane.
  const int8 = cores * lanes * (vnni ? 4 : 2) * fmaUnits * 2 * ghz;
  const amx = has('amx_int8') ? cores * 1024 * 2 * ghz : null;
  const clock = maxKhz > 0 ? `${ghz.toFixed(2)} GHz (cpufreq max)` : `${ghz.toFixed(2)} GHz (/proc/cpuinfo "cpu MHz"; a VM reports its nominal clock)`;
  const how =
    `${cores} cores × ${lanes} fp32 lanes (${lanes === 16 ? 'AVX-512' : lanes === 8 ? 'AVX2' : 'SSE'}) × ${fmaUnits} FMA units (assumed) × 2 × ${clock}; ` +
    `int8 ×${vnni ? 4 : 2} per lane (${vnni ? 'VNNI' : 'no VNNI'})${amx ? `; AMX: ${cores} cores × 1024 int8 MAC/cycle × 2 × ${ghz.toFixed(2)} GHz` : ''}`;
  return { fp32Gflops: fp32, int8Gops: int8, amxInt8Gops: amx, how };
}
