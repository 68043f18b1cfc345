// The sampled frames of a video as a small table for stderr (`glimpse video --stats`),
// with the same names the JSON `frame` events use.

export interface FrameRow {
  frame: number;
  timestamp_s: number;
  width: number;
  height: number;
  vision_tokens: number;
}

export function formatFrameTable(rows: FrameRow[]): string {
  const table = [
    ['frame', 'timestamp_s', 'size', 'vision_tokens'],
    ...rows.map((row) => [
      String(row.frame),
      row.timestamp_s.toFixed(3),
      `${row.width}x${row.height}`,
      String(row.vision_tokens),
    ]),
  ];
  const widths = table[0]!.map((_, column) => Math.max(...table.map((cells) => cells[column]!.length)));
  const line = (cells: string[]) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd();
  return table.map((cells) => `${line(cells)}\n`).join('');
}
