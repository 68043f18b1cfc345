// `--show-kept FILE.html`: one self-contained page with the drawn images (PNG data URLs) and
// the answer, each generated token its own span. Tokens whose keys and values the cache
// policy did not keep (`decode_admitted` false) are greyed: later tokens could not attend
// to them.

import type { ReductionReport } from '../engine.js';

/** A piece of the answer as it streamed: the text a token completed (no id: released text). */
export interface AnswerPiece {
  id?: number;
  text: string;
}

export interface KeptPage {
  /** PNG bytes of each drawn image, in prompt order. */
  images: Uint8Array[];
  answer: AnswerPiece[];
  report: ReductionReport;
}

export function keptHtml({ images, answer, report }: KeptPage): string {
  const figures = images
    .map((png, i) => {
      const src = `data:image/png;base64,${Buffer.from(png).toString('base64')}`;
      return `<figure><img src="${src}" alt="image ${i + 1}"><figcaption>image ${i + 1}</figcaption></figure>`;
    })
    .join('\n');
  const spans = answerSpans(answer, report.decode_admitted).join('');
  const decided = report.decode_admitted.length;
  const dropped = report.decode_admitted.filter((admitted) => !admitted).length;
  const greyed =
    decided === 0
      ? 'No cache policy decided which generated tokens to keep.'
      : `Grey answer text: tokens whose keys and values were not kept (${dropped} of ${decided}).`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>glimpse --reduce ${escapeHtml(report.spec)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; max-width: 60rem; }
figure { display: inline-block; margin: 0 1rem 1rem 0; }
img { width: 24rem; max-width: 100%; height: auto; image-rendering: pixelated; }
.answer { white-space: pre-wrap; font-size: 1.1rem; line-height: 1.6; }
.answer .not-kept { color: #aaa; }
.legend { color: #555; font-size: 0.9rem; }
</style>
</head>
<body>
<h1>--reduce <code>${escapeHtml(report.spec)}</code></h1>
${figures}
<p class="legend">Whitened patches: visual tokens dropped during prefill (lighter: evicted while decoding).
Outlined: one token standing for several patches. Dot: key token.
${greyed}</p>
<p class="answer">${spans}</p>
</body>
</html>
`;
}

/**
 * One span per generated token, in order. The i-th token with an id is the i-th generated
 * token, and `admitted[i]` says whether its keys and values stayed; tokens never fed back
 * (the last one) and text without a token have no verdict and stay plain.
 */
export function answerSpans(answer: AnswerPiece[], admitted: boolean[]): string[] {
  let index = 0;
  return answer.map((piece) => {
    const verdict = piece.id === undefined ? undefined : admitted[index++];
    const attributes = piece.id === undefined ? '' : ` data-token="${piece.id}"`;
    const kind = verdict === false ? ' class="not-kept"' : '';
    return `<span${kind}${attributes}>${escapeHtml(piece.text)}</span>`;
  });
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
