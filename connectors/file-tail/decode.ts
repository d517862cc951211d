/**
 * Turns the bytes of one file into records: splits lines with `Buffer.indexOf`, cuts lines longer
 * than `max_line_bytes`, parses JSON and joins multiline events. It does no I/O; the task feeds it
 * the chunks it reads and asks it to flush what timed out.
 *
 * Positions are byte offsets in the file. Everything before {@link LineDecoder.pendingStart} has
 * been consumed; a partial line, or a multiline event being held, was read but not emitted, so it
 * lies after {@link LineDecoder.delivered}, the position the checkpoint holds, and is read again
 * after a restart.
 */
import type { Headers, SourcePartition, SourceRecord } from '../../core/connector.ts';
import { TAIL_BYTES, shortHash } from './identity.ts';

/** Header names every record carries. */
export const HEADERS = {
  /** The path the record was read from (the file's name at the time). */
  path: 'file.path',
  /** The byte offset of the record's first byte in the file, in decimal. */
  offset: 'file.offset',
  /** On pieces of a cut line or event: `more` on every piece but the last, `end` on the last. */
  split: 'file.split',
  /** `true` on a json-format line that was not valid JSON and is sent as a JSON string. */
  invalidJson: 'file.invalid_json',
} as const;

const SPLIT_MORE = Buffer.from('more');
const SPLIT_END = Buffer.from('end');
const TRUE = Buffer.from('true');
const EMPTY = Buffer.alloc(0);
const NEWLINE = Buffer.from('\n');

export interface DecoderOptions {
  readonly format: 'lines' | 'json' | 'multiline';
  readonly maxLineBytes: number;
  /** The key field split at dots, json format only. */
  readonly keyPath?: readonly string[];
  /** Multiline: a line matching it begins an event. */
  readonly startPattern?: RegExp;
  /** Multiline: a line matching it continues an event. */
  readonly continuationPattern?: RegExp;
}

/** What the decoder needs to know about its file to build records; the path changes on rename. */
export interface RecordSource {
  readonly partition: SourcePartition;
  readonly path: string;
  readonly pathHeader: Buffer;
}

/** What {@link LineDecoder} counts for the task's metrics. */
export interface DecodeCounts {
  split: number;
  invalidJson: number;
}

interface HeldEvent {
  parts: Buffer[];
  bytes: number;
  /** File offset of the event's first byte. */
  offset: number;
  /** The position after the event's last line. */
  end: number;
  /** Earlier pieces of this event were already emitted with split: more. */
  cut: boolean;
}

/**
 * The decoder of one file. The owner appends read bytes with {@link append} and then calls
 * {@link consume}; records go into the array it passes, at most up to its limit.
 */
export class LineDecoder {
  /** Bytes read but not consumed: a partial last line, or lines left when a batch filled up. */
  pending: Buffer = EMPTY;
  /** File offset of `pending[0]`. */
  pendingStart: number;
  /** Index in `pending` from which a newline may still be found; before it there is none. */
  #scanFrom = 0;
  /** The current physical line was cut: its pieces so far went out with split: more. */
  #cutting = false;
  #event: HeldEvent | null = null;
  /** The position after the last record emitted: what the last checkpoint of this file will hold. */
  delivered: number;
  readonly counts: DecodeCounts = { split: 0, invalidJson: 0 };
  /** The last bytes consumed (at most TAIL_BYTES), ending at `pendingStart`. */
  #window: Buffer = EMPTY;
  /** Whether `#window` holds all of min(TAIL_BYTES, pendingStart) bytes before `pendingStart`. */
  #windowValid: boolean;
  /**
   * Where the bytes before `delivered` are: `#window` then `#markBuf[0, #markIdx)`. Kept as
   * references, so a record costs no copy; {@link tailHash} assembles them once per batch.
   */
  #markBuf: Buffer = EMPTY;
  #markIdx = 0;
  #markWindow: Buffer = EMPTY;
  #markValid = false;

  constructor(
    private readonly options: DecoderOptions,
    private readonly source: RecordSource,
    position: number,
    /** Resuming in the middle of a line that was being cut when the checkpoint was taken. */
    cutting = false,
  ) {
    this.pendingStart = position;
    this.delivered = position;
    this.#cutting = cutting;
    this.#windowValid = position === 0;
    this.#markValid = position === 0;
  }

  /** Whether the bytes before the read position are unknown: the owner should {@link seed} them. */
  get needsSeed(): boolean {
    return !this.#windowValid;
  }

  /** Gives the bytes before `pendingStart` (min(TAIL_BYTES, pendingStart) of them), read from the file. */
  seed(bytes: Buffer): void {
    if (bytes.length !== Math.min(TAIL_BYTES, this.pendingStart)) return;
    this.#window = bytes;
    this.#windowValid = true;
    if (this.delivered === this.pendingStart) this.#mark();
  }

  /**
   * The hash of the min(TAIL_BYTES, position) bytes before `position`, when `position` is where the
   * last record ended and those bytes are known; the checkpoint stores it to recognise copies.
   */
  tailHash(position: number): string | undefined {
    const need = Math.min(TAIL_BYTES, position);
    if (position !== this.delivered || (!this.#markValid && this.#markIdx < need)) return undefined;
    const buf = this.#markBuf;
    const idx = this.#markIdx;
    if (idx >= need) return shortHash(buf.subarray(idx - need, idx));
    const window = this.#markWindow;
    if (window.length < need - idx) return undefined;
    return shortHash(Buffer.concat([window.subarray(window.length - (need - idx)), buf.subarray(0, idx)]));
  }

  /** Records that the bytes before `delivered` are the window and then `pending[0, delivered - pendingStart)`. */
  #mark(): void {
    this.#markBuf = this.pending;
    this.#markIdx = this.delivered - this.pendingStart;
    this.#markWindow = this.#window;
    this.#markValid = this.#windowValid;
  }

  /** Moves the window past `pending[0, pos)`, which was just consumed. */
  #slide(pos: number): void {
    if (pos === 0) return;
    if (pos >= TAIL_BYTES) {
      this.#window = Buffer.from(this.pending.subarray(pos - TAIL_BYTES, pos));
      this.#windowValid = true;
      return;
    }
    const keep = Math.min(this.#window.length, TAIL_BYTES - pos);
    this.#window = Buffer.concat([this.#window.subarray(this.#window.length - keep), this.pending.subarray(0, pos)]);
  }

  /** The file offset after the last byte handed to the decoder: where the next read starts. */
  get end(): number {
    return this.pendingStart + this.pending.length;
  }

  /** Whether a multiline event is held, waiting for more lines or its flush timeout. */
  get holdsEvent(): boolean {
    return this.#event !== null;
  }

  /** Whether `pending` holds a newline not consumed yet (the last batch filled up). */
  get hasCompleteLine(): boolean {
    return this.pending.indexOf(10, this.#scanFrom) >= 0;
  }

  /**
   * A buffer holding the pending bytes followed by room for `length` more: the owner reads into it
   * at `pending.length` and passes the filled part to {@link append}.
   */
  bufferFor(length: number): Buffer {
    const buffer = Buffer.allocUnsafeSlow(this.pending.length + length);
    this.pending.copy(buffer, 0);
    return buffer;
  }

  /** Takes a buffer from {@link bufferFor} holding the pending bytes and then the bytes just read. */
  append(buffer: Buffer): void {
    this.pending = buffer;
  }

  /** Splits the pending bytes into records, adding them to `out` until it holds `limit`. */
  consume(out: SourceRecord[], limit: number): void {
    const buf = this.pending;
    const base = this.pendingStart;
    const max = this.options.maxLineBytes;
    let pos = 0;
    let scan = this.#scanFrom;
    let complete = false;
    while (out.length < limit) {
      const nl = buf.indexOf(10, scan);
      if (nl < 0) {
        complete = true;
        break;
      }
      const end = nl > pos && buf[nl - 1] === 13 ? nl - 1 : nl;
      this.#line(buf, pos, end, base + pos, base + nl + 1, out);
      pos = scan = nl + 1;
    }
    // Cut a partial line that has outgrown max_line_bytes; what is left stays pending.
    if (complete) {
      while (buf.length - pos > max && out.length < limit) {
        const cut = utf8Boundary(buf, pos, pos + max);
        this.#piece(buf, pos, cut, base + pos, base + cut, out, 'more');
        pos = cut;
      }
    }
    this.#slide(pos);
    this.pending = pos === 0 ? buf : buf.subarray(pos);
    this.pendingStart = base + pos;
    this.#scanFrom = complete ? this.pending.length : 0;
  }

  /**
   * Emits a last line that has no newline, as it is (after `partial_line_timeout`, or when the
   * file is released). Bytes appended later start a new line.
   */
  flushPartial(out: SourceRecord[]): void {
    const buf = this.pending;
    if (buf.length === 0) return;
    const end = buf[buf.length - 1] === 13 ? buf.length - 1 : buf.length;
    this.#line(buf, 0, end, this.pendingStart, this.pendingStart + buf.length, out);
    this.#slide(buf.length);
    this.pendingStart += buf.length;
    this.pending = EMPTY;
    this.#scanFrom = 0;
  }

  /** Emits the multiline event being held, if any (after `flush_timeout`, or on release). */
  flushEvent(out: SourceRecord[]): void {
    const event = this.#event;
    if (!event) return;
    this.#event = null;
    this.#emit(joinParts(event), event.offset, event.end, out, event.cut ? SPLIT_END : null, false);
  }

  /** Drops everything held and restarts at `position`: the file was truncated. */
  reset(position: number): void {
    if (position !== this.pendingStart || this.pending.length > 0) {
      this.#window = EMPTY;
      this.#windowValid = position === 0;
      this.#markValid = position === 0;
      this.#markBuf = EMPTY;
      this.#markIdx = 0;
    }
    this.pending = EMPTY;
    this.pendingStart = position;
    this.delivered = position;
    this.#scanFrom = 0;
    this.#cutting = false;
    this.#event = null;
  }

  /** One physical line [start, end) of `buf`, cut into pieces when too long. */
  #line(buf: Buffer, start: number, end: number, offset: number, next: number, out: SourceRecord[]): void {
    const max = this.options.maxLineBytes;
    if (end - start <= max && !this.#cutting) {
      this.#unit(buf, start, end, offset, next, out, null);
      return;
    }
    while (end - start > max) {
      const cut = utf8Boundary(buf, start, start + max);
      this.#piece(buf, start, cut, offset, offset + (cut - start), out, 'more');
      offset += cut - start;
      start = cut;
    }
    this.#piece(buf, start, end, offset, next, out, 'end');
  }

  /** A piece of a cut physical line. */
  #piece(buf: Buffer, start: number, end: number, offset: number, next: number, out: SourceRecord[], split: 'more' | 'end'): void {
    const first = !this.#cutting;
    this.#cutting = split === 'more';
    if (first) this.counts.split++;
    this.#unit(buf, start, end, offset, next, out, split === 'more' ? SPLIT_MORE : SPLIT_END, !first);
  }

  /** A line or piece, for the configured format. `continued`: a later piece of a cut line. */
  #unit(buf: Buffer, start: number, end: number, offset: number, next: number, out: SourceRecord[], split: Buffer | null, continued = false): void {
    if (this.options.format === 'multiline') {
      this.#multiline(buf, start, end, offset, next, out, split !== null, continued);
      return;
    }
    this.#emit(buf.subarray(start, end), offset, next, out, split, split === SPLIT_MORE);
  }

  #multiline(buf: Buffer, start: number, end: number, offset: number, next: number, out: SourceRecord[], piece: boolean, continued: boolean): void {
    const { startPattern, continuationPattern, maxLineBytes } = this.options;
    let begins = false;
    if (!continued) {
      const text = buf.toString('utf8', start, end);
      begins = startPattern ? startPattern.test(text) : !continuationPattern!.test(text);
    }
    let event = this.#event;
    if (event && begins) {
      this.flushEvent(out);
      event = null;
    }
    const length = end - start;
    if (event && event.bytes + 1 + length > maxLineBytes) {
      // The event would outgrow max_line_bytes: what it holds goes out as a piece.
      if (!event.cut) this.counts.split++;
      this.#emit(joinParts(event), event.offset, event.end, out, SPLIT_MORE, true);
      event = this.#event = { parts: [], bytes: 0, offset, end: next, cut: true };
    }
    if (!event) event = this.#event = { parts: [], bytes: 0, offset, end: next, cut: piece && continued };
    if (event.parts.length > 0) event.bytes += 1;
    event.parts.push(buf.subarray(start, end));
    event.bytes += length;
    event.end = next;
  }

  /** Builds one record ending at `next`. `cutting`: the checkpoint lands inside a cut line. */
  #emit(value: Buffer, offset: number, next: number, out: SourceRecord[], split: Buffer | null, cutting: boolean): void {
    const { source } = this;
    // Literal keys (the values of HEADERS.path and .offset) give every headers object one hidden class.
    const headers: Headers = { 'file.path': source.pathHeader, 'file.offset': Buffer.from(String(offset), 'latin1') };
    let key: Buffer | null = null;
    if (this.options.format === 'json') {
      const text = value.toString('utf8');
      // Skipped without moving `delivered`: a checkpoint stays at the last record, and reading the
      // blank line again after a restart skips it again.
      if (split === null && isBlank(text)) return;
      let parsed: unknown;
      let valid = split === null;
      if (valid) {
        try {
          parsed = JSON.parse(text);
        } catch {
          valid = false;
        }
      }
      if (valid) {
        if (this.options.keyPath) key = keyOf(parsed, this.options.keyPath);
      } else {
        value = Buffer.from(JSON.stringify(text), 'utf8');
        headers[HEADERS.invalidJson] = TRUE;
        this.counts.invalidJson++;
      }
    }
    if (split) headers[HEADERS.split] = split;
    this.delivered = next;
    this.#mark();
    out.push({
      sourcePartition: source.partition,
      sourceOffset: cutting ? { position: next, path: source.path, cut: true } : { position: next, path: source.path },
      key,
      value,
      headers,
    });
  }
}

function joinParts(event: HeldEvent): Buffer {
  if (event.parts.length === 1) return event.parts[0]!;
  const pieces: Buffer[] = [];
  event.parts.forEach((part, i) => {
    if (i > 0) pieces.push(NEWLINE);
    pieces.push(part);
  });
  return Buffer.concat(pieces, event.bytes);
}

function isBlank(text: string): boolean {
  return /^\s*$/.test(text);
}

/** The record key from a parsed JSON line: strings as UTF-8, other values as JSON; none for null or missing. */
function keyOf(parsed: unknown, keyPath: readonly string[]): Buffer | null {
  let value: unknown = parsed;
  for (const name of keyPath) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
    value = (value as Record<string, unknown>)[name];
  }
  if (value === undefined || value === null) return null;
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value), 'utf8');
}

/**
 * The largest cut point in (start, limit] that does not split a UTF-8 character: backs off over
 * continuation bytes (10xxxxxx), at most three. Bytes that are not UTF-8 are cut at `limit`.
 */
export function utf8Boundary(buf: Buffer, start: number, limit: number): number {
  for (let cut = limit; cut > start && cut > limit - 4; cut--) {
    if ((buf[cut]! & 0xc0) !== 0x80) return cut;
  }
  return limit;
}
