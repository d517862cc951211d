/**
 * The COPY encoder the sink uses on rows against the general path it replaces: converting every
 * value to its parameter (toParam) and encoding the parameters (encodeCopyRows) must give the same
 * bytes, for any values in any column family (fast-check).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RawJson } from '../sql-sink/raw-json.ts';
import type { Family } from '../sql-sink/type-mapping.ts';
import { TargetValue, paramRows, type RowSet } from '../sql-sink/values.ts';
import { encodeCopyRowSet, encodeCopyRows } from './copy.ts';

const FAMILIES: readonly Family[] = ['int', 'decimal', 'float', 'bool', 'text', 'binary', 'json', 'timestamptz', 'timestamp', 'date', 'time', 'uuid', 'array', 'other'];

/** Strings that COPY escapes or that toParam rewrites in some family. */
const awkwardString = fc.oneof(
  fc.string(),
  fc.string({ unit: fc.constantFrom('a', '\\', '\t', '\n', '\r', '"', 'é', '😀', ' ') }),
  fc.constantFrom('-000043-03-15', '+010000-01-01T00:00:00Z', '0000-01-01', '2024-05-01T10:20:30.123456Z', 'infinity', '0123', 'aGVsbG8=', '1.10'),
);

/** Any value a decoded row can hold: JSON values (1e400 parses to Infinity), exact json text, values read back from the target. */
const value: fc.Arbitrary<unknown> = fc.oneof(
  awkwardString,
  fc.double(),
  fc.integer(),
  fc.constantFrom(Infinity, -Infinity, -0, 0, 1e21, 12345678901234567000),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.jsonValue(),
  fc.array(fc.oneof(awkwardString, fc.integer(), fc.constant(null), fc.array(fc.integer()))),
  awkwardString.map((s) => new RawJson(JSON.stringify(s))),
  fc.oneof(awkwardString, fc.integer(), fc.constant(null)).map((v) => new TargetValue(v)),
  fc.uint8Array({ maxLength: 8 }).map((b) => new TargetValue(Buffer.from(b))),
);

const rowSet: fc.Arbitrary<RowSet> = fc.integer({ min: 1, max: 5 }).chain((width) => {
  const columns = Array.from({ length: width }, (_, j) => `c${j}`);
  return fc.record({
    families: fc.array(fc.constantFrom(...FAMILIES), { minLength: width, maxLength: width }),
    rows: fc.array(fc.array(value, { minLength: width, maxLength: width }), { maxLength: 20 }),
  }).map(({ families, rows }) => ({ columns, families, rows: rows.map((values) => Object.fromEntries(columns.map((c, j) => [c, values[j]]))) }));
});

describe('COPY encoding straight from rows', () => {
  it('gives the bytes of encoding the rows\' parameters, in chunks that end at row boundaries', () => {
    // Guarantee: the sink's COPY data is exactly what the general parameter path would send.
    fc.assert(
      fc.property(rowSet, fc.integer({ min: 1, max: 200 }), (set, chunkChars) => {
        const expected = encodeCopyRows(paramRows(set, { engine: 'postgres' }));
        const chunks = encodeCopyRowSet(set, chunkChars);
        expect(Buffer.concat(chunks).equals(expected)).toBe(true);
        for (const chunk of chunks.slice(0, -1)) expect(chunk[chunk.length - 1]).toBe(0x0a);
        expect(encodeCopyRowSet(set, 1 << 24)).toHaveLength(1);
      }),
      { numRuns: 2000 },
    );
  });

  it('writes a column missing from a row as NULL, like a null value', () => {
    // Guarantee: a row without one of the statement's columns sets it to NULL, as the parameter path does.
    const set: RowSet = { columns: ['id', 'note'], families: ['int', 'text'], rows: [{ id: 1 }, { id: 2, note: null }, { id: 3, note: 'x' }] };
    expect(Buffer.concat(encodeCopyRowSet(set, 1 << 20)).toString()).toBe('1\t\\N\n2\t\\N\n3\tx\n');
  });
});
