// `glimpse eval --plot FILE.png`: accuracy against the mean visual tokens kept into the
// language model, one labelled point per reduction spec. Drawn as SVG and rasterised by
// sharp, so no plotting library is needed.

import { accessSync, constants } from 'node:fs';
import { dirname, extname } from 'node:path';

import sharp from 'sharp';

import { GlimpseError, oneLine } from '../errors.js';
import type { SpecSummary } from '../eval/summary.js';

export const PLOT_WIDTH = 960;
export const PLOT_HEIGHT = 600;

/** The plotting area inside the picture, leaving room for the title, ticks and axis names. */
const AREA = { left: 90, right: PLOT_WIDTH - 40, top: 70, bottom: PLOT_HEIGHT - 80 };
const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif';
const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const X_AXIS_NAME = 'mean vision tokens kept into the language model (after_prefill)';
const Y_AXIS_NAME = 'accuracy (%)';
const LABEL_SIZE = 13;
/** A generous average glyph width at LABEL_SIZE, to keep labels apart and inside the picture. */
const LABEL_CHAR_WIDTH = 7.8;

/** A usage error unless `path` ends in .png and its folder can be written. */
export function checkPlotPath(path: string): void {
  if (extname(path).toLowerCase() !== '.png') {
    throw new GlimpseError('usage', `--plot ${path}: the file name must end in .png`);
  }
  try {
    accessSync(dirname(path), constants.W_OK);
  } catch {
    throw new GlimpseError('usage', `--plot ${path}: cannot write into ${dirname(path)}`);
  }
}

export async function writeEvalPlot(path: string, summaries: readonly SpecSummary[], title: string): Promise<void> {
  try {
    await sharp(Buffer.from(evalPlotSvg(summaries, title))).png().toFile(path);
  } catch (error) {
    throw new GlimpseError('input', `--plot ${path}: cannot write (${oneLine((error as Error).message)})`);
  }
}

export function evalPlotSvg(summaries: readonly SpecSummary[], title: string): string {
  const points = summaries.map((summary) => ({
    label: `${summary.reduce} (${(summary.accuracy * 100).toFixed(1)}%)`,
    x: summary.after_prefill,
    y: summary.accuracy * 100,
  }));
  const xAxis = axis(0, Math.max(1, ...points.map((point) => point.x)), AREA.left, AREA.right);
  const ys = points.map((point) => point.y);
  const pad = Math.max(5, (Math.max(...ys) - Math.min(...ys)) * 0.15);
  const yAxis = axis(Math.max(0, Math.min(...ys) - pad), Math.min(100, Math.max(...ys) + pad), AREA.bottom, AREA.top);

  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${PLOT_WIDTH}" height="${PLOT_HEIGHT}" font-family="${FONT}">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    text(PLOT_WIDTH / 2, 36, title, { size: 17, anchor: 'middle', weight: 'bold' }),
  ];
  for (const tick of xAxis.ticks) {
    const x = xAxis.at(tick);
    parts.push(line(x, AREA.top, x, AREA.bottom, '#e4e4e4'), line(x, AREA.bottom, x, AREA.bottom + 6, '#333'));
    parts.push(text(x, AREA.bottom + 22, tickText(tick), { size: 13, anchor: 'middle' }));
  }
  for (const tick of yAxis.ticks) {
    const y = yAxis.at(tick);
    parts.push(line(AREA.left, y, AREA.right, y, '#e4e4e4'), line(AREA.left - 6, y, AREA.left, y, '#333'));
    parts.push(text(AREA.left - 10, y + 4.5, tickText(tick), { size: 13, anchor: 'end' }));
  }
  const frame = { width: AREA.right - AREA.left, height: AREA.bottom - AREA.top };
  const axisName = { size: 15, anchor: 'middle' } as const;
  parts.push(
    `<rect x="${AREA.left}" y="${AREA.top}" width="${frame.width}" height="${frame.height}" fill="none" stroke="#333"/>`,
    text((AREA.left + AREA.right) / 2, PLOT_HEIGHT - 28, X_AXIS_NAME, axisName),
    `<g transform="translate(28 ${(AREA.top + AREA.bottom) / 2}) rotate(-90)">${text(0, 0, Y_AXIS_NAME, axisName)}</g>`,
  );

  const placed: Box[] = [];
  points.forEach((point, index) => {
    const colour = COLOURS[index % COLOURS.length]!;
    const x = xAxis.at(point.x);
    const y = yAxis.at(point.y);
    parts.push(`<circle cx="${x}" cy="${y}" r="6" fill="${colour}" stroke="white" stroke-width="1.5"/>`);
    const label = placeLabel(x, y, point.label, placed);
    parts.push(text(label.x, label.y, point.label, { size: LABEL_SIZE, anchor: label.anchor, fill: colour }));
  });
  parts.push('</svg>');
  return parts.join('\n');
}

interface Axis {
  ticks: number[];
  /** The pixel coordinate of a value. */
  at: (value: number) => number;
}

/** An axis over [low, high] widened to whole ticks, mapped onto pixels [from, to]. */
function axis(low: number, high: number, from: number, to: number): Axis {
  const step = niceStep((high - low) / 6);
  const start = Math.floor(low / step) * step;
  const end = Math.max(Math.ceil(high / step) * step, start + step);
  const ticks: number[] = [];
  for (let tick = start; tick <= end + step / 2; tick += step) ticks.push(Number(tick.toPrecision(12)));
  return { ticks, at: (value) => round1(from + ((value - start) / (end - start)) * (to - from)) };
}

/** 1, 2 or 5 times a power of ten, at least `rough`. */
function niceStep(rough: number): number {
  if (!(rough > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(rough));
  return ([1, 2, 5, 10].find((factor) => factor * power >= rough) ?? 10) * power;
}

function tickText(value: number): string {
  return String(Number(value.toPrecision(6)));
}

interface Box {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

/**
 * Beside the point, right of it unless that runs out of the plotting area; moved down, then
 * up, in line steps until it overlaps no label placed before.
 */
function placeLabel(
  x: number,
  y: number,
  label: string,
  placed: Box[],
): { x: number; y: number; anchor: 'start' | 'end' } {
  const width = label.length * LABEL_CHAR_WIDTH;
  const leftSide = x + 10 + width > AREA.right;
  const left = leftSide ? x - 10 - width : x + 10;
  const anchor = leftSide ? 'end' : 'start';
  const step = LABEL_SIZE + 4;
  for (let attempt = 0; attempt < 40; attempt++) {
    const shift = (attempt % 2 === 0 ? 1 : -1) * Math.ceil(attempt / 2) * step;
    const baseline = y + 4.5 + shift;
    const box = { left, right: left + width, top: baseline - LABEL_SIZE, bottom: baseline + 3 };
    const inside = box.top >= AREA.top && box.bottom <= AREA.bottom;
    if (inside && !placed.some((other) => overlaps(box, other))) {
      placed.push(box);
      return { x: leftSide ? x - 10 : x + 10, y: baseline, anchor };
    }
  }
  return { x: leftSide ? x - 10 : x + 10, y: y + 4.5, anchor };
}

function overlaps(a: Box, b: Box): boolean {
  return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
}

function line(x1: number, y1: number, x2: number, y2: number, stroke: string): string {
  return `<line x1="${x1}" y1="${y1}" x2="${x2}" y2="${y2}" stroke="${stroke}" stroke-width="1"/>`;
}

function text(
  x: number,
  y: number,
  content: string,
  style: { size: number; anchor: 'start' | 'middle' | 'end'; weight?: string; fill?: string },
): string {
  const weight = style.weight === undefined ? '' : ` font-weight="${style.weight}"`;
  const attributes = `font-size="${style.size}" text-anchor="${style.anchor}" fill="${style.fill ?? '#222'}"${weight}`;
  return `<text x="${x}" y="${y}" ${attributes}>${escapeXml(content)}</text>`;
}

function escapeXml(content: string): string {
  return content.replace(/[<>&"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}
