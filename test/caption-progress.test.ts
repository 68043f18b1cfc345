// The progress report of `caption` on stderr, on a fake clock.

import { Writable } from 'node:stream';

import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { BatchProgress, formatDuration } from '../src/output/progress.js';

function capture(): Writable & { text: string } {
  const stream = new Writable({
    write(chunk, _encoding, done) {
      stream.text += String(chunk);
      done();
    },
  }) as Writable & { text: string };
  stream.text = '';
  return stream;
}

function clock(): { now: () => number; advance: (ms: number) => void } {
  let time = 1_000_000;
  return { now: () => time, advance: (ms) => (time += ms) };
}

test('formatDuration', () => {
  assert.is(formatDuration(0), '0s');
  assert.is(formatDuration(43_400), '43s');
  assert.is(formatDuration(72_000), '1m12s');
  assert.is(formatDuration(3_599_000), '59m59s');
  assert.is(formatDuration(2 * 3_600_000 + 5 * 60_000), '2h05m');
});

test('not a terminal: a line every 10 images or 5 seconds, then a summary', () => {
  const out = capture();
  const time = clock();
  const progress = new BatchProgress(out, { total: 25, terminal: false, now: time.now });
  for (let image = 1; image <= 25; image += 1) {
    progress.started(`img-${image}.png`);
    time.advance(image === 13 ? 6_000 : 400); // image 13 is slow
    progress.finished(image !== 4);
  }
  progress.end(false);
  assert.is(
    out.text,
    [
      '10/25 images, 150.0 images/min, ETA 6s',
      '13/25 images, 72.2 images/min, ETA 10s',
      '20/25 images, 88.2 images/min, ETA 3s',
      '25 of 25 images done (24 captioned, 1 failed) in 16s, 96.2 images/min',
      '',
    ].join('\n'),
  );
});

test('at a terminal: one line redrawn in place, cut to the width, the file name kept', () => {
  const out = capture();
  const time = clock();
  const progress = new BatchProgress(out, { total: 4, terminal: true, columns: 70, now: time.now });
  progress.started('photos/2024/summer/beach-with-a-long-name.jpg');
  time.advance(30_000);
  progress.finished(true);
  progress.note('glimpse: bad.png: not an image');
  progress.clear();
  progress.end(true);
  const clear = '\r\u001b[2K';
  assert.equal(out.text.split(clear), [
    '',
    '[--------------------] 0/4  - images/min  ETA -  …ith-a-long-name.jpg',
    '[#####---------------] 1/4  2.0 images/min  ETA 1m30s  …long-name.jpg',
    'glimpse: bad.png: not an image\n',
    '[#####---------------] 1/4  2.0 images/min  ETA 1m30s  …long-name.jpg',
    '',
    'interrupted: 1 of 4 images done (1 captioned, 0 failed) in 30s, 2.0 images/min\n',
  ]);
  // The redrawn line never reaches the last column (where some terminals wrap).
  for (const line of out.text.split(clear).filter((part) => part.startsWith('['))) {
    assert.ok(line.length <= 69, line);
  }
});

test('at a terminal that reports 0 columns: lines cut to 80 columns', () => {
  const out = capture();
  const progress = new BatchProgress(out, { total: 2, terminal: true, columns: 0, now: clock().now });
  progress.started(`photos/${'a'.repeat(100)}.jpg`);
  const line = out.text.split('\r\u001b[2K')[1]!;
  assert.is(line.length, 79);
  assert.ok(line.endsWith('aaa.jpg'), line);
});

test.run();
