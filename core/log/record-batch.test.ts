/**
 * Unit tests of the record-batch codec. Each test opens with one sentence naming the guarantee it
 * pins.
 */
import { describe, expect, it } from 'vitest';
import { checkBatch, decodeRecords, encodeBatch, WriteBuffer } from './record-batch.ts';
import type { Headers, LogRecord, ProducerRecord } from './types.ts';

function encode(records: readonly ProducerRecord[]): Buffer {
  const out = new WriteBuffer(64);
  const batch = encodeBatch(out, records, null, 7n, 1_700_000_000_000);
  return Buffer.from(out.buf.subarray(batch.start, batch.start + batch.size));
}

function decode(bytes: Buffer): LogRecord[] {
  const check = checkBatch(bytes, 0, bytes.length);
  if (!check.ok) throw new Error(`batch rejected: ${check.reason}`);
  const out: LogRecord[] = [];
  decodeRecords(bytes, 0, check.header, 't', 0, 0n, 1n << 62n, out);
  return out;
}

const text = (headers: Headers): Record<string, string | null> =>
  Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, v == null ? null : v.toString('utf8')]));

describe('encodeBatch', () => {
  it('encodes records that share one headers object byte for byte as records with their own equal copies', () => {
    const shared: Headers = { received_at: Buffer.from('2026-12-08T02:00:00.000Z'), remote_addr: Buffer.from('127.0.0.1'), empty: Buffer.alloc(0), request_id: Buffer.from('ab12-1') };
    const other: Headers = { request_id: Buffer.from('ab12-2'), 'ünïcode': Buffer.from('välue') };
    // Runs of one object, an interruption by another, an empty object and a record without
    // headers, then the first object again: every change of object must be encoded afresh.
    const layout: Array<Headers | undefined> = [shared, shared, shared, other, other, {}, undefined, shared, shared];
    const records = (copy: boolean): ProducerRecord[] =>
      layout.map((headers, i) => ({
        key: i % 2 === 0 ? Buffer.from(`k${i}`) : null,
        value: Buffer.from(JSON.stringify({ i, pad: 'x'.repeat(i * 40) })),
        headers: copy && headers !== undefined ? { ...headers } : headers,
        timestamp: 1_700_000_000_000 + i,
      }));
    const sharedBytes = encode(records(false));
    expect(sharedBytes.equals(encode(records(true)))).toBe(true);
    const decoded = decode(sharedBytes);
    expect(decoded.map((r) => text(r.headers))).toEqual(layout.map((h) => text(h ?? {})));
    expect(decoded.map((r) => r.value!.toString('utf8'))).toEqual(records(false).map((r) => r.value!.toString('utf8')));
    expect(decoded.map((r) => r.offset)).toEqual(layout.map((_, i) => 7n + BigInt(i)));
  });
});
