import { Writable } from 'node:stream';

/** A stream that keeps what is written and can act on each write. */
export function sink(onWrite: (text: string) => void = () => {}): Writable & { text: string } {
  const stream = new Writable({
    write(chunk, _encoding, done) {
      stream.text += String(chunk);
      onWrite(String(chunk));
      done();
    },
  }) as Writable & { text: string };
  stream.text = '';
  return stream;
}
