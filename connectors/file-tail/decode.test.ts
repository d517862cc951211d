/**
 * The line decoder against an obviously correct model, with fast-check: whatever the chunking, the
 * batch limits and the line lengths, the records reassemble to the file's lines, every offset and
 * position points at the right bytes, and the tail hash of a checkpoint is the hash of the bytes
 * before it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { SourceRecord } from '../../core/connector.ts';
import { HEADERS, LineDecoder, utf8Boundary, type DecoderOptions, type RecordSource } from './decode.ts';
import { TAIL_BYTES, shortHash } from './identity.ts';

const source: RecordSource = { partition: { file: 'test' }, path: '/test.log', pathHeader: Buffer.from('/test.log') };

/** Feeds `content` to a decoder starting at `from` in chunks of the given sizes, consuming with `limit` per call; flushes at the end. */
function decode(options: DecoderOptions, content: Buffer, chunks: readonly number[], limit: number, from = 0, check?: (d: LineDecoder) => void): SourceRecord[] {
  const d = new LineDecoder(options, source, from);
  if (from > 0) d.seed(content.subarray(from - Math.min(TAIL_BYTES, from), from));
  const out: SourceRecord[] = [];
  let i = 0;
  while (d.end < content.length || d.hasCompleteLine) {
    if (d.hasCompleteLine) {
      d.consume(out, out.length + limit);
    } else {
      const n = Math.min(chunks[i++ % chunks.length]!, content.length - d.end);
      const at = d.pending.length;
      const buffer = d.bufferFor(n);
      content.copy(buffer, at, d.end, d.end + n);
      d.append(buffer);
      d.consume(out, out.length + limit);
    }
    check?.(d);
  }
  d.flushPartial(out);
  d.flushEvent(out);
  check?.(d);
  return out;
}

/** The expected records of the lines format: each line without its newline and a trailing \r. */
function modelLines(content: Buffer): string[] {
  const text = content.toString('latin1');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
}

/** Joins the pieces of cut lines back together. */
function reassemble(records: readonly SourceRecord[]): string[] {
  const out: string[] = [];
  let current: string | null = null;
  for (const r of records) {
    const piece = r.value!.toString('latin1');
    const split = r.headers?.[HEADERS.split]?.toString();
    current = (current ?? '') + piece;
    if (split !== 'more') {
      out.push(current);
      current = null;
    }
  }
  if (current !== null) out.push(current);
  return out;
}

const line = fc.oneof(
  { weight: 6, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string({ minLength: 40, maxLength: 200 }) },
  { weight: 1, arbitrary: fc.constantFrom('', '\r', 'é€😀', 'tab\there') },
);
const contentArb = fc
  .record({ lines: fc.array(line, { maxLength: 40 }), crlf: fc.boolean(), finalNewline: fc.boolean() })
  .map(({ lines, crlf, finalNewline }) => {
    const text = lines.map((l) => l.replace(/\n/g, ' ')).join(crlf ? '\r\n' : '\n') + (finalNewline && lines.length > 0 ? '\n' : '');
    return Buffer.from(text, 'utf8');
  });
const chunksArb = fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 5 });

describe('LineDecoder', () => {
  it('reassembles every line, at every chunking and batch limit, with exact offsets, positions and tail hashes', () => {
    // Guarantee: the hot-path splitter never loses, reorders or alters a line, and each checkpoint describes the bytes before it.
    fc.assert(
      fc.property(contentArb, chunksArb, fc.integer({ min: 1, max: 50 }), fc.integer({ min: 16, max: 64 }), (content, chunks, limit, maxLineBytes) => {
        const options: DecoderOptions = { format: 'lines', maxLineBytes };
        const records = decode(options, content, chunks, limit, 0, (d) => {
          const expected = d.delivered === 0 ? undefined : shortHash(content.subarray(Math.max(0, d.delivered - TAIL_BYTES), d.delivered));
          if (d.delivered > 0) expect(d.tailHash(d.delivered)).toBe(expected);
        });
        expect(reassemble(records)).toEqual(modelLines(content));
        let previous = 0;
        for (const r of records) {
          const offset = Number(r.headers![HEADERS.offset]!.toString());
          const position = r.sourceOffset['position'] as number;
          expect(content.subarray(offset, offset + r.value!.length).equals(r.value!)).toBe(true);
          expect(r.value!.length).toBeLessThanOrEqual(maxLineBytes);
          expect(position).toBeGreaterThan(previous - (r.value!.length === 0 ? 1 : 0));
          expect(position).toBeGreaterThanOrEqual(offset + r.value!.length);
          previous = position;
        }
        // Pieces end at UTF-8 character boundaries whenever the line is valid UTF-8.
        for (const r of records) expect(r.value!.toString('utf8')).not.toContain('\uFFFD');
      }),
      { numRuns: 300 },
    );
  });

  it('resumed at any checkpoint, produces exactly the records after it', () => {
    // Guarantee: restarting from a committed position repeats nothing before it and skips nothing after it.
    fc.assert(
      fc.property(contentArb, chunksArb, fc.integer({ min: 16, max: 64 }), fc.nat(), (content, chunks, maxLineBytes, pick) => {
        const options: DecoderOptions = { format: 'lines', maxLineBytes };
        const all = decode(options, content, [content.length || 1], 1_000_000);
        if (all.length === 0) return;
        const k = pick % all.length;
        const checkpoint = all[k]!.sourceOffset;
        const d = new LineDecoder(options, source, checkpoint['position'] as number, checkpoint['cut'] === true);
        expect(d.needsSeed).toBe((checkpoint['position'] as number) > 0);
        const rest = decode(options, content, chunks, 7, checkpoint['position'] as number);
        expect(rest.map((r) => r.value!.toString('latin1'))).toEqual(all.slice(k + 1).map((r) => r.value!.toString('latin1')));
        expect(rest.map((r) => r.headers![HEADERS.offset]!.toString())).toEqual(all.slice(k + 1).map((r) => r.headers![HEADERS.offset]!.toString()));
      }),
      { numRuns: 300 },
    );
  });

  it('joins multiline events identically at every chunking', () => {
    // Guarantee: multiline events do not depend on where reads happen to end.
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constantFrom('E start', '  at frame', 'Caused by: x', ''), fc.string({ maxLength: 20 })), { maxLength: 40 }),
        chunksArb,
        (lines, chunks) => {
          const content = Buffer.from(lines.map((l) => `${l.replace(/\n/g, ' ')}\n`).join(''));
          const options: DecoderOptions = { format: 'multiline', maxLineBytes: 1 << 20, startPattern: /^E / };
          const whole = decode(options, content, [content.length || 1], 1_000_000).map((r) => r.value!.toString());
          const chunked = decode(options, content, chunks, 3).map((r) => r.value!.toString());
          expect(chunked).toEqual(whole);
          expect(whole.join('\n')).toBe(lines.map((l) => l.replace(/\n/g, ' ')).join('\n'));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('cuts at UTF-8 boundaries', () => {
    // Guarantee: a cut never splits a multi-byte character, and never backs off more than three bytes.
    const buf = Buffer.from('aé€😀b');
    for (let limit = 1; limit < buf.length; limit++) {
      const cut = utf8Boundary(buf, 0, limit);
      expect(limit - cut).toBeLessThanOrEqual(3);
      expect(buf.subarray(0, cut).toString('utf8')).not.toContain('\uFFFD');
    }
  });
});
