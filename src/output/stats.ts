// Generation statistics for stderr (`--stats`): one `name value` line each, under the names
// the JSON output uses so the two can be compared directly, with sizes and FLOPs in units a
// person reads at a glance. The visual-token counts come in the order a reduction shrinks them,
// and for an image cut into tiles, crop by crop.

import type { GenerationStats } from '../engine.js';

export function formatStats(stats: GenerationStats): string {
  const rows: Array<[string, string]> = [
    ['backend', stats.backend],
    ['reduce', stats.reduce],
    ['prompt_tokens', String(stats.prompt_tokens)],
    ['generated_tokens', String(stats.generated_tokens)],
    ['vision_tokens_in', String(stats.vision_tokens_in)],
    ['after_encoder', String(stats.after_encoder)],
    ['after_prefill', String(stats.after_prefill)],
    ['equal_tokens', stats.equal_tokens.toFixed(1)],
    ['kv_bytes_peak', formatBytes(stats.kv_bytes_peak)],
    ['kv_bytes_final', formatBytes(stats.kv_bytes_final)],
    ['flops_prefill', formatFlops(stats.flops_prefill)],
    ['flops_vision', formatFlops(stats.flops_vision)],
    ['ms_encode', stats.ms_encode.toFixed(1)],
    ['ms_prefill', stats.ms_prefill.toFixed(1)],
    ['ms_decode', stats.ms_decode.toFixed(1)],
    ['prefill_tokens_per_s', stats.prefill_tokens_per_s.toFixed(1)],
    ['tokens_per_s', stats.tokens_per_s.toFixed(1)],
  ];
  // Only a cache policy that decides admission or evicts makes these non-zero.
  if (stats.decode_kv_admitted + stats.decode_kv_rejected > 0) {
    rows.push(['decode_kv_admitted', String(stats.decode_kv_admitted)]);
    rows.push(['decode_kv_rejected', String(stats.decode_kv_rejected)]);
  }
  if (stats.decode_evicted > 0) rows.push(['decode_evicted', String(stats.decode_evicted)]);
  // A tiled image's tokens per crop: in the prompt → after the vision tower → kept at the end.
  stats.crops.forEach((crops, i) => {
    if (crops.length === 0) return;
    const counts = crops.map((c) => `${c.crop} ${c.tokens_in}→${c.after_encoder}→${c.kept}`).join(', ');
    rows.push([`image_${i + 1}_crops`, counts]);
  });
  const width = Math.max(...rows.map(([name]) => name.length));
  return rows.map(([name, value]) => `${name.padEnd(width)}  ${value}\n`).join('');
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
const FLOP_UNITS = ['FLOPs', 'kFLOPs', 'MFLOPs', 'GFLOPs', 'TFLOPs', 'PFLOPs'];

/** `1536` → `1.5 KiB`; whole bytes below 1 KiB. */
export function formatBytes(bytes: number): string {
  const [value, unit] = scaled(bytes, 1024, BYTE_UNITS, (v) => Number(v.toFixed(1)));
  return unit === 'B' ? `${bytes} B` : `${value.toFixed(1)} ${unit}`;
}

/** `2.5e9` → `2.50 GFLOPs`: three significant digits in the largest fitting unit. */
export function formatFlops(flops: number): string {
  const [value, unit] = scaled(flops, 1000, FLOP_UNITS, (v) => Number(v.toPrecision(3)));
  return `${value.toPrecision(3)} ${unit}`;
}

/**
 * `value` divided by `base` until it is below `base` once rounded as it will be printed,
 * so that 1023.96 KiB reads 1.0 MiB rather than 1024.0 KiB.
 */
function scaled(value: number, base: number, units: string[], round: (value: number) => number): [number, string] {
  let index = 0;
  while (Math.abs(round(value)) >= base && index < units.length - 1) {
    value /= base;
    index += 1;
  }
  return [value, units[index]!];
}
