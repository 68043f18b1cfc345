// `glimpse inspect [MODEL]`: what a model is and what it needs.

import { Option } from 'clipanion';

import { Model, type ModelInfo } from '../engine.js';
import { resolveModelDir } from '../model-path.js';
import { startProgress } from '../output/spinner.js';
import { deviceOption, dtypeOption, GlimpseCommand, threadsOption, visionTowerOption } from './base.js';

export class InspectCommand extends GlimpseCommand {
  static override paths = [['inspect']];

  static override usage = GlimpseCommand.Usage({
    description: 'Show a model’s architecture, size and memory needs',
    details: `
      MODEL is a directory or a Hugging Face repo id already in the local cache. Without it,
      \`--model\`, then the GLIMPSE_MODEL environment variable, then the built-in model is used.
    `,
    examples: [
      ['Inspect the built-in model', '$0 inspect'],
      ['Inspect a cached checkpoint as JSON', '$0 inspect llava-hf/llava-1.5-7b-hf --json'],
    ],
  });

  modelArgument = Option.String({ required: false, name: 'model' });
  model = Option.String('--model', { description: 'Model directory or cached Hugging Face repo id' });
  json = Option.Boolean('--json', false, { description: 'Print the information as one JSON object' });
  threads = threadsOption();
  visionTower = visionTowerOption();
  device = deviceOption();
  dtype = dtypeOption();

  async execute(): Promise<number> {
    const dir = resolveModelDir(this.modelArgument ?? this.model);
    const progress = startProgress('Loading model', Boolean(process.stderr.isTTY) && !this.json);
    let info: ModelInfo;
    try {
      const model = await Model.load(dir, {
        threads: this.threads,
        visionTower: this.visionTower,
        device: this.device,
        dtype: this.dtype,
      });
      info = model.info();
    } finally {
      progress.stop();
    }
    this.context.stdout.write(this.json ? `${JSON.stringify(info)}\n` : formatInfo(info));
    return 0;
  }
}

export function formatInfo(info: ModelInfo): string {
  const rows: Array<[string, string]> = [
    ['architecture', info.architecture],
    ['parameters', `${formatCount(info.parameters)} (${info.parameters.toLocaleString('en-US')})`],
    ['dtype', info.dtype],
    [
      'memory needed',
      `${formatBytes(info.weight_bytes)} weights + ${formatBytes(info.kv_bytes_per_token * info.context_length)}` +
        ` KV cache at ${info.context_length} tokens`,
    ],
    ['layers', `vision ${info.vision_layers}, text ${info.text_layers}`],
    ['hidden size', String(info.hidden_size)],
    ['image tokens', imageTokens(info)],
    ['context length', String(info.context_length)],
    ['backend', info.backend],
    ['directory', info.dir],
  ];
  const width = Math.max(...rows.map(([name]) => name.length));
  return rows.map(([name, value]) => `${name.padEnd(width)}  ${value}\n`).join('');
}

/** `576`, or for a tiling model `up to 2928 (the whole image plus its tiles, on a grid of 672×336, …)`. */
function imageTokens(info: ModelInfo): string {
  if (info.tile_grids.length === 0) return String(info.image_tokens);
  const grids = info.tile_grids.map(([height, width]) => `${width}×${height}`).join(', ');
  return `up to ${info.image_tokens} (the whole image plus its tiles, on a grid of ${grids} pixels)`;
}

function formatCount(count: number): string {
  if (count >= 1e9) return `${(count / 1e9).toFixed(2)} B`;
  if (count >= 1e6) return `${(count / 1e6).toFixed(2)} M`;
  if (count >= 1e3) return `${(count / 1e3).toFixed(2)} K`;
  return String(count);
}

function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(2)} ${units[unit]}`;
}
