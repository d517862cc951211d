/**
 * The pure parts of postgres-cdc: LSNs, the pgoutput decoder on hand-built messages (including the
 * TupleData kinds a test server rarely sends, 'u' and 'b'), the text-to-JSON mapping's edge cases,
 * and the byte path of streamed events against the string path. Everything that needs a server is
 * in the other test files.
 */
import { describe, expect, it } from 'vitest';
import { ByteWriter } from './bytes.ts';
import { TableShape, streamSource, streamSourceRest } from './events.ts';
import { formatLsn, parseLsn } from './lsn.ts';
import { RawText, UNCHANGED_TOAST, decodeKeepalive, decodePgOutput, encodeStandbyStatus, pgTimeToIso, type TupleValue } from './pgoutput.ts';
import { type PgType, byteaBase64, parseArrayText, timeIso, timestampIso, toJson } from './types.ts';

function cstring(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function u64(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
}

function tuple(values: Array<['n'] | ['u'] | ['t', string] | ['b', Buffer]>): Buffer {
  const parts: Buffer[] = [Buffer.from([0, values.length])];
  for (const v of values) {
    parts.push(Buffer.from(v[0]));
    if (v[0] === 't') parts.push(u32(Buffer.byteLength(v[1])), Buffer.from(v[1]));
    if (v[0] === 'b') parts.push(u32(v[1].length), v[1]);
  }
  return Buffer.concat(parts);
}

describe('LSNs', () => {
  // Pins that LSNs are 64-bit numbers compared as BigInt, printed as Postgres prints them.
  it('parse and format as Postgres writes them, and compare numerically', () => {
    expect(parseLsn('16/B374D848')).toBe((0x16n << 32n) | 0xb374d848n);
    expect(formatLsn(parseLsn('0/1538CE0'))).toBe('0/1538CE0');
    expect(parseLsn('10/0') > parseLsn('9/FFFFFFFF')).toBe(true);
    expect(() => parseLsn('16-B3')).toThrow(/invalid LSN/);
  });
});

describe('pgoutput decoding', () => {
  // Pins the layout of every message sluice reads, as the protocol documentation gives it.
  it('decodes begin, relation, insert, update with an old key, delete, truncate, message and commit', () => {
    const begin = decodePgOutput(Buffer.concat([Buffer.from('B'), u64(0x1538dc0n), u64(1000000n), u32(726)]));
    expect(begin).toEqual({ tag: 'begin', finalLsn: 0x1538dc0n, commitTime: 1000000n, xid: 726 });
    const relation = decodePgOutput(
      Buffer.concat([Buffer.from('R'), u32(16384), cstring('public'), cstring('t'), Buffer.from('d'), Buffer.from([0, 2]), Buffer.from([1]), cstring('id'), u32(23), u32(0xffffffff), Buffer.from([0]), cstring('v'), u32(25), u32(0xffffffff)]),
    );
    expect(relation).toEqual({
      tag: 'relation',
      relationId: 16384,
      schema: 'public',
      name: 't',
      replicaIdentity: 'd',
      columns: [
        { flags: 1, name: 'id', typeOid: 23, typeMod: -1 },
        { flags: 0, name: 'v', typeOid: 25, typeMod: -1 },
      ],
    });
    const insert = decodePgOutput(Buffer.concat([Buffer.from('I'), u32(16384), Buffer.from('N'), tuple([['t', '1'], ['t', 'héllo']])]));
    expect(insert).toEqual({ tag: 'insert', relationId: 16384, newTuple: ['1', 'héllo'] });
    const update = decodePgOutput(Buffer.concat([Buffer.from('U'), u32(16384), Buffer.from('K'), tuple([['t', '1'], ['n']]), Buffer.from('N'), tuple([['t', '2'], ['u']])]));
    expect(update).toEqual({ tag: 'update', relationId: 16384, keyTuple: ['1', null], oldTuple: null, newTuple: ['2', UNCHANGED_TOAST] });
    const binary = decodePgOutput(Buffer.concat([Buffer.from('I'), u32(1), Buffer.from('N'), tuple([['b', Buffer.from([0, 0, 0, 7])]])]));
    expect(binary).toEqual({ tag: 'insert', relationId: 1, newTuple: [Buffer.from([0, 0, 0, 7])] });
    const del = decodePgOutput(Buffer.concat([Buffer.from('D'), u32(16384), Buffer.from('O'), tuple([['t', '2'], ['t', 'x']])]));
    expect(del).toEqual({ tag: 'delete', relationId: 16384, keyTuple: null, oldTuple: ['2', 'x'] });
    const truncate = decodePgOutput(Buffer.concat([Buffer.from('T'), u32(2), Buffer.from([1]), u32(16384), u32(16390)]));
    expect(truncate).toEqual({ tag: 'truncate', options: 1, relationIds: [16384, 16390] });
    const message = decodePgOutput(Buffer.concat([Buffer.from('M'), Buffer.from([1]), u64(5n), cstring('sluice.heartbeat'), u32(2), Buffer.from('hb')]));
    expect(message).toEqual({ tag: 'message', flags: 1, lsn: 5n, prefix: 'sluice.heartbeat', content: Buffer.from('hb') });
    const commit = decodePgOutput(Buffer.concat([Buffer.from('C'), Buffer.from([0]), u64(10n), u64(20n), u64(1000000n)]));
    expect(commit).toEqual({ tag: 'commit', flags: 0, commitLsn: 10n, endLsn: 20n, commitTime: 1000000n });
  });

  // Pins that garbage is reported, not misread.
  it('rejects unknown tags and truncated messages', () => {
    expect(() => decodePgOutput(Buffer.from('Z'))).toThrow(/unknown pgoutput message tag/);
    expect(() => decodePgOutput(Buffer.concat([Buffer.from('I'), u32(1), Buffer.from('N'), Buffer.from([0, 1]), Buffer.from('t'), u32(10), Buffer.from('ab')]))).toThrow(/truncated/);
  });

  // Pins the standby status update: the same LSN written, flushed and applied, and the clock in Postgres epoch microseconds.
  it('encodes standby status updates and decodes keepalives', () => {
    const status = encodeStandbyStatus(0x1538dc0n, Date.UTC(2000, 0, 1, 0, 0, 1), true);
    expect(status.length).toBe(34);
    expect(status[0]).toBe(0x72);
    expect([status.readBigUInt64BE(1), status.readBigUInt64BE(9), status.readBigUInt64BE(17)]).toEqual([0x1538dc0n, 0x1538dc0n, 0x1538dc0n]);
    expect(status.readBigInt64BE(25)).toBe(1_000_000n);
    expect(status[33]).toBe(1);
    expect(decodeKeepalive(Buffer.concat([Buffer.from('k'), u64(99n), u64(0n), Buffer.from([1])]))).toEqual({ walEnd: 99n, replyRequested: true });
    expect(pgTimeToIso(1_500_001n)).toBe('2000-01-01T00:00:01.500001Z');
    expect(pgTimeToIso(-1n)).toBe('1999-12-31T23:59:59.999999Z');
  });
});

describe('type mapping edge cases', () => {
  // Pins the documented JSON of values whose text output has unusual forms.
  it('maps integers, floats, timestamps, times, bytea and arrays as documented', () => {
    expect(toJson({ oid: 20, kind: 'int8' }, '9007199254740991')).toBe('9007199254740991');
    expect(toJson({ oid: 20, kind: 'int8' }, '9007199254740992')).toBe('"9007199254740992"');
    expect(toJson({ oid: 20, kind: 'int8' }, '-9007199254740992')).toBe('"-9007199254740992"');
    expect(toJson({ oid: 701, kind: 'float' }, 'Infinity')).toBe('"Infinity"');
    expect(toJson({ oid: 701, kind: 'float' }, '1e+100')).toBe('1e+100');
    expect(timestampIso('2024-01-02 03:04:05.123456+00', true)).toBe('2024-01-02T03:04:05.123456Z');
    expect(timestampIso('2024-01-02 03:04:05+00', true)).toBe('2024-01-02T03:04:05.000000Z');
    expect(timestampIso('2024-01-02 03:04:05.1+05:30', true)).toBe('2024-01-02T03:04:05.100000+05:30');
    expect(timestampIso('0001-01-01 00:00:00+00 BC', true)).toBe('0000-01-01T00:00:00.000000Z');
    expect(timestampIso('infinity', true)).toBe('infinity');
    expect(timeIso('24:00:00')).toBe('24:00:00.000000');
    expect(timeIso('01:02:03.5-07')).toBe('01:02:03.500000-07:00');
    expect(byteaBase64('\\x')).toBe('');
    expect(byteaBase64('a\\\\b\\001')).toBe(Buffer.from([0x61, 0x5c, 0x62, 0x01]).toString('base64'));
    expect(parseArrayText('[0:1]={7,8}')).toEqual(['7', '8']);
    expect(parseArrayText('{}')).toEqual([]);
    expect(parseArrayText('{"(1,2)";"(3,4)"}', ';')).toEqual(['(1,2)', '(3,4)']);
    expect(parseArrayText('{{a,NULL},{"",b}}')).toEqual([
      ['a', null],
      ['', 'b'],
    ]);
    const intArray = { oid: 1007, kind: 'array' as const, element: { oid: 23, kind: 'int' as const }, delimiter: ',' };
    expect(toJson(intArray, '{{1,2},{NULL,4}}')).toBe('[[1,2],[null,4]]');
  });
});

describe('events written as bytes', () => {
  it('writes streamed events byte for byte as the JSON text of the same values', () => {
    // Guarantee: the byte path for streamed changes (values copied from the message) produces exactly the envelope and key the string path documents, for every kind of value, escapes and non-ASCII names included.
    const types: Array<[string, PgType, string | null | typeof UNCHANGED_TOAST]> = [
      ['id', { oid: 23, kind: 'int' }, '42'],
      ['big', { oid: 20, kind: 'int8' }, '-9223372036854775808'],
      ['small8', { oid: 20, kind: 'int8' }, '-123456789012345'],
      ['amount', { oid: 1700, kind: 'numeric' }, '12.50'],
      ['ok', { oid: 16, kind: 'bool' }, 't'],
      ['no', { oid: 16, kind: 'bool' }, 'f'],
      ['f', { oid: 701, kind: 'float' }, '1e+100'],
      ['nan', { oid: 701, kind: 'float' }, 'NaN'],
      ['ninf', { oid: 701, kind: 'float' }, '-Infinity'],
      ['neg', { oid: 701, kind: 'float' }, '-1.5'],
      ['plain', { oid: 25, kind: 'string' }, 'héllo wörld ✓'],
      ['escaped', { oid: 25, kind: 'string' }, 'a "quote" \\ back\nline\ttab\u0001'],
      ['doc', { oid: 3802, kind: 'json' }, '{"a": [1, 2.50], "big": 12345678901234567890}'],
      ['at', { oid: 1184, kind: 'timestamptz' }, '2024-02-29 13:14:15.123456+05:30'],
      ['utc', { oid: 1184, kind: 'timestamptz' }, '2024-02-29 13:14:15.123456+00'],
      ['utc_short', { oid: 1184, kind: 'timestamptz' }, '2024-02-29 13:14:15.5+00'],
      ['local', { oid: 1114, kind: 'timestamp' }, '2024-02-29 13:14:15.000001'],
      ['inf', { oid: 1114, kind: 'timestamp' }, 'infinity'],
      ['blob', { oid: 17, kind: 'bytea' }, '\\x00ff10'],
      ['tags', { oid: 1009, kind: 'array', element: { oid: 25, kind: 'string' }, delimiter: ',' }, '{"a b",NULL,c}'],
      ['toast', { oid: 25, kind: 'string' }, UNCHANGED_TOAST],
      ['nothing', { oid: 25, kind: 'string' }, null],
    ];
    const columns = types.map(([name, type], i) => ({ name: i === 1 ? 'grö"ße' : name, type, typeName: 'x', nullable: true, pkPosition: i < 2 ? i + 1 : 0, identity: i < 2 }));
    const shape = new TableShape('públic', 'tàble', columns, { database: 'shop', prefix: 'cdc', schemaHeader: true });
    // The values as a pgoutput message carries them: text bytes inside a larger buffer.
    const message = Buffer.from(`xx${types.map(([, , v]) => (typeof v === 'string' ? v : '')).join('')}`);
    let at = 2;
    const raw: TupleValue[] = types.map(([, , v]) => {
      if (typeof v !== 'string') return v;
      const value = new RawText(message, at, at + Buffer.byteLength(v));
      at = value.end;
      return value;
    });
    const text: TupleValue[] = types.map(([, , v]) => v);
    const source = streamSource('0/16B3748', 7, '2024-01-01T00:00:00.000000Z');
    const rest = streamSourceRest(7, '2024-01-01T00:00:00.000000Z');
    const extra = ',"transaction":{"id":7,"total_order":3}';
    // A small writer chunk would hide nothing: fill one so that values cross into a new chunk.
    const w = new ByteWriter();
    for (let i = 0; i < 20_000; i++) {
      const before = i % 3 === 0 ? raw : null;
      const bytes = shape.envelopeBytes(w, 'u', before, i % 2 === 0 ? null : shape.keyIndexes, raw, '0/16B3748', rest, i % 5 === 0 ? '' : extra);
      const key = shape.keyBytes(w, raw)!;
      const beforeText = before === null ? 'null' : i % 2 === 0 ? shape.row(text) : shape.partial(text, shape.keyIndexes);
      const expected = shape.envelope('u', beforeText, shape.row(text), source, i % 5 === 0 ? '' : extra);
      // ts_ms is the clock: compare everything before it, and that it is a number.
      const cut = expected.lastIndexOf(',"ts_ms":');
      expect(bytes.toString('utf8', 0, Buffer.byteLength(expected.slice(0, cut)))).toBe(expected.slice(0, cut));
      expect(bytes.toString().slice(cut)).toMatch(/^,"ts_ms":\d+}$/);
      expect(key.equals(shape.key(text)!)).toBe(true);
      if (i === 0) expect(JSON.parse(bytes.toString())).toMatchObject({ op: 'u', after: { escaped: 'a "quote" \\ back\nline\ttab\u0001', 'grö"ße': '-9223372036854775808' } });
    }
  });
});
