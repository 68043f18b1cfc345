// `glimpse eval DATA.jsonl`: how accuracy on a set of questions changes as visual tokens
// are reduced. One model load; every question answered greedily under each `--reduce` spec.

import { accessSync, constants } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { performance } from 'node:perf_hooks';

import { Option } from 'clipanion';

import { checkReduceSpec, Model } from '../engine.js';
import { type EvalItem, readDataset } from '../eval/dataset.js';
import { evaluate, type LineResult } from '../eval/run.js';
import { type SpecSummary, summarise } from '../eval/summary.js';
import { EXIT_CODES, GlimpseError } from '../errors.js';
import { Interrupt } from '../interrupt.js';
import { resolveModelDir } from '../model-path.js';
import { checkPlotPath, writeEvalPlot } from '../output/eval-plot.js';
import { formatEvalTable, formatKindTable } from '../output/eval-table.js';
import { BatchProgress, formatDuration } from '../output/progress.js';
import { startProgress } from '../output/spinner.js';
import {
  GlimpseCommand,
  isWholeNumber,
  maxImageTokensOption,
  reduceHelp,
  threadsOption,
  visionTowerOption,
} from './base.js';

export const DEFAULT_EVAL_MAX_TOKENS = 16;

export class EvalCommand extends GlimpseCommand {
  static override paths = [['eval']];

  static override usage = GlimpseCommand.Usage({
    description: 'Measure accuracy on a question file under each visual-token reduction',
    details: `
      DATA is a JSON Lines file, one question about one image per line:
      \`{"image": "images/0007.png", "question": "What colour is the triangle?", "answers": ["red"], "kind": "colour"}\`
      or, for free-form answers, \`"must_mention": ["red triangle", "blue circle"]\` instead of
      \`answers\`. Image paths are relative to DATA's folder; \`kind\` (a label for
      \`--by-kind\`), \`max_tokens\` and \`id\` are optional. The whole file and every image are
      checked before the model loads; a bad line is an error naming it (exit code 2).

      Every question is answered greedily (temperature 0) under each \`--reduce\` spec (just
      \`none\` without one), with the question as the whole prompt. Answers and accepted
      answers are normalised (lowercase, whitespace collapsed, trimmed, punctuation at the end
      and a leading a/an/the removed); an answer is right when it, or its first word, equals
      an accepted answer. A \`must_mention\` line is right when every phrase occurs in the
      normalised output as whole words.

      Standard output gets one row per spec: correct lines, accuracy, accuracy relative to
      \`none\` (or to the first spec), and the means per question of the visual tokens after
      the encoder and after prefill, the layer-averaged \`equal_tokens\`, prefill FLOPs (also
      relative) and prefill milliseconds. Progress goes to standard error.
${reduceHelp()}`,
    examples: [
      ['Accuracy of the model as it is', '$0 eval --model ./llava-1.5-7b-hf questions.jsonl'],
      [
        'Compare three budgets, with a plot',
        '$0 eval --reduce none --reduce fastv:keep=144 --reduce fastv:keep=64 --plot acc.png questions.jsonl',
      ],
      ['Per-kind accuracy and every answer', '$0 eval --reduce mustdrop:keep=64 --by-kind --json run.json questions.jsonl'],
    ],
  });

  data = Option.String({ name: 'data' });

  reduce = Option.Array('--reduce', {
    description: 'A visual-token reduction METHOD[:k=v,...] to evaluate (repeatable; default: none)',
  });
  model = Option.String('--model', { description: 'Model directory or cached Hugging Face repo id' });
  threads = threadsOption();
  visionTower = visionTowerOption();
  maxImageTokens = maxImageTokensOption();
  limit = Option.String('--limit', { description: 'Evaluate only the first N questions', validator: isWholeNumber(1) });
  maxTokens = Option.String('--max-tokens', {
    description: `Most tokens per answer, unless a line gives max_tokens (default: ${DEFAULT_EVAL_MAX_TOKENS})`,
    validator: isWholeNumber(1),
  });
  plot = Option.String('--plot', { description: 'Draw accuracy against kept vision tokens into FILE.png' });
  json = Option.String('--json', { description: 'Write every answer, its score and stats, and the summary to FILE' });
  byKind = Option.Boolean('--by-kind', false, { description: 'Also print the accuracy of each kind under each spec' });

  async execute(): Promise<number> {
    const specs = this.specs();
    if (this.plot !== undefined) checkPlotPath(this.plot);
    if (this.json !== undefined) checkJsonPath(this.json);
    const modelDir = resolveModelDir(this.model);

    // Until the first generation Ctrl-C exits at once; from then on it stops the current answer.
    const interrupt = new Interrupt();
    try {
      const { items, model } = await this.prepare(modelDir);
      interrupt.generationStarted();
      const stderr = this.context.stderr as NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
      const total = items.length * specs.length;
      const progress = new BatchProgress(stderr, {
        total,
        unit: 'answers',
        terminal: stderr.isTTY === true,
        columns: stderr.columns,
      });
      const started = performance.now();
      const outcome = await evaluate({
        model,
        file: this.data,
        items,
        specs,
        maxTokens: this.maxTokens ?? DEFAULT_EVAL_MAX_TOKENS,
        signal: interrupt.signal,
        progress,
      });
      progress.clear();
      if (outcome.interrupted) return EXIT_CODES.cancelled;
      const elapsed = formatDuration(performance.now() - started);
      const count = `${plural(items.length, 'question')} under ${plural(specs.length, 'spec')}`;
      stderr.write(`${total} answers (${count}) in ${elapsed}\n`);

      const summaries = summarise(specs, outcome.results);
      this.context.stdout.write(formatEvalTable(summaries));
      if (this.byKind) this.context.stdout.write(`\n${formatKindTable(summaries)}`);
      if (this.json !== undefined) await this.writeJson(this.json, modelDir, items, summaries, outcome.results);
      if (this.plot !== undefined) {
        await writeEvalPlot(this.plot, summaries, `Accuracy vs kept vision tokens: ${basename(this.data)}`);
      }
      return EXIT_CODES.ok;
    } catch (error) {
      if (interrupt.interrupted) return EXIT_CODES.cancelled;
      throw error;
    } finally {
      interrupt.dispose();
    }
  }

  /** The whole data file is checked before the model loads: a bad line fails in a moment. */
  private async prepare(modelDir: string): Promise<{ items: EvalItem[]; model: Model }> {
    const spinner = startProgress(`Checking ${this.data}`, Boolean(process.stderr.isTTY));
    try {
      const items = (await readDataset(this.data)).slice(0, this.limit);
      spinner.update('Loading model');
      const model = await Model.load(modelDir, {
        threads: this.threads,
        visionTower: this.visionTower,
        maxImageTokens: this.maxImageTokens,
      });
      return { items, model };
    } finally {
      spinner.stop();
    }
  }

  /** The `--reduce` specs, each checked by the engine; `none` alone when none is given. */
  private specs(): string[] {
    const specs = this.reduce ?? ['none'];
    const seen = new Set<string>();
    for (const spec of specs) {
      checkReduceSpec(spec);
      if (seen.has(spec)) throw new GlimpseError('usage', `--reduce ${spec} is given twice`);
      seen.add(spec);
    }
    return specs;
  }

  private async writeJson(
    file: string,
    modelDir: string,
    items: readonly EvalItem[],
    summary: readonly SpecSummary[],
    results: readonly LineResult[],
  ): Promise<void> {
    const report = {
      data: this.data,
      model: modelDir,
      max_tokens: this.maxTokens ?? DEFAULT_EVAL_MAX_TOKENS,
      questions: items.length,
      specs: summary.map((entry) => entry.reduce),
      summary,
      results: results.map(resultRecord),
    };
    try {
      await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new GlimpseError('usage', `--json ${file}: cannot write (${reason})`);
    }
  }
}

/** One answer as `--json` lists it: the line it came from, what was expected, and how it went. */
function resultRecord({ item, reduce, answer, correct, finish_reason, stats }: LineResult): Record<string, unknown> {
  return {
    line: item.line,
    ...(item.id === undefined ? {} : { id: item.id }),
    image: item.image,
    question: item.question,
    kind: item.kind ?? null,
    ...item.expect,
    reduce,
    answer,
    correct,
    finish_reason,
    stats,
  };
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function checkJsonPath(path: string): void {
  try {
    accessSync(dirname(path), constants.W_OK);
  } catch {
    throw new GlimpseError('usage', `--json ${path}: cannot write into ${dirname(path)}`);
  }
}
