// The sampled frames of a video as a small table for stderr (`glimpse video --stats`),
// with the same names the JSON `frame` events use. With a reduction, each frame's row also
// says how many of its visual tokens the reduction kept after each stage.

import type { ImageTokens } from './image-tokens.js';

export interface FrameRow {
  frame: number;
  timestamp_s: number;
  width: number;
  height: number;
  vision_tokens: number;
}

/** `kept[i]` (when given) is what the reduction left of frame `rows[i]`. */
export function formatFrameTable(rows: FrameRow[], kept?: ImageTokens[]): string {
  const header = ['frame', 'timestamp_s', 'size', 'vision_tokens'];
  // Evictions only happen under a cache policy; a column of zeros would be noise.
  const evictions = kept?.some((frame) => frame.decode_evicted > 0) ?? false;
  if (kept !== undefined) header.push('after_encoder', 'after_prefill');
  if (evictions) header.push('decode_evicted');
  const table = [
    header,
    ...rows.map((row, i) => {
      const size = `${row.width}x${row.height}`;
      const cells = [String(row.frame), row.timestamp_s.toFixed(3), size, String(row.vision_tokens)];
      const frame = kept?.[i];
      if (frame !== undefined) cells.push(String(frame.after_encoder), String(frame.after_prefill));
      if (frame !== undefined && evictions) cells.push(String(frame.decode_evicted));
      return cells;
    }),
  ];
  const widths = header.map((_, column) => Math.max(...table.map((cells) => cells[column]?.length ?? 0)));
  const line = (cells: string[]) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd();
  return table.map((cells) => `${line(cells)}\n`).join('');
}
