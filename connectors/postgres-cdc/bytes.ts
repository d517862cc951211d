/**
 * Writes many small byte strings (event keys and values) into large shared chunks, each result a
 * view of its chunk. Building an event as a JS string and then encoding it costs a string per
 * column, a rope to flatten and a buffer per record; streamed changes instead go straight from the
 * pgoutput message's bytes into the event's bytes.
 *
 * A chunk is never written again once a value in it was handed out, so values stay valid for as
 * long as something references them (the log copies them on append, and the chunk is then freed).
 */
const CHUNK_BYTES = 64 << 10;
/** Below this many bytes, a byte loop copies faster than a native call (Buffer#copy, Buffer#write). */
const SMALL_COPY = 32;

export class ByteWriter {
  /** The current chunk; callers of {@link reserve} write at {@link pos} directly and move it on. */
  buf = Buffer.allocUnsafeSlow(CHUNK_BYTES);
  pos = 0;
  private start = 0;

  /** Starts a new value; what is written until {@link end} makes it up. */
  begin(): void {
    this.start = this.pos;
  }

  /** The value written since {@link begin}. */
  end(): Buffer {
    return this.buf.subarray(this.start, this.pos);
  }

  /** Makes room for `n` more bytes at `pos` and returns the chunk to write them into. */
  reserve(n: number): Buffer {
    this.room(n);
    return this.buf;
  }

  /** Makes room for `n` more bytes, moving the value begun so far to a new chunk when this one is full. */
  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const used = this.pos - this.start;
    const next = Buffer.allocUnsafeSlow(Math.max(CHUNK_BYTES, (used + n) * 2));
    this.buf.copy(next, 0, this.start, this.pos);
    this.buf = next;
    this.start = 0;
    this.pos = used;
  }

  byte(c: number): void {
    this.room(1);
    this.buf[this.pos++] = c;
  }

  /** A string of ASCII characters only (JSON punctuation, numbers, LSNs, ISO timestamps). */
  ascii(s: string): void {
    const n = s.length;
    this.room(n);
    if (n >= SMALL_COPY) {
      this.pos += this.buf.write(s, this.pos, 'latin1');
      return;
    }
    const buf = this.buf;
    let pos = this.pos;
    for (let i = 0; i < n; i++) buf[pos++] = s.charCodeAt(i);
    this.pos = pos;
  }

  /** Any string, as UTF-8. */
  text(s: string): void {
    this.room(s.length * 3);
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }

  /** `src[from, to)`. */
  bytes(src: Buffer, from: number, to: number): void {
    const n = to - from;
    this.room(n);
    if (n < SMALL_COPY) {
      const buf = this.buf;
      let pos = this.pos;
      for (let i = from; i < to; i++) buf[pos++] = src[i]!;
      this.pos = pos;
    } else {
      src.copy(this.buf, this.pos, from, to);
      this.pos += n;
    }
  }
}
