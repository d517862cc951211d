/**
 * The mysql sink's multi-row INSERT parameters, built in one pass from the rows, against the
 * general path they replace: converting every row to parameters (paramRows), chunking them by
 * rows and bytes (chunks), padding upserts or splitting inserts to standard statement sizes, and
 * flattening. Both must give the same statements with the same parameters (fast-check).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chunks } from '../sql-sink/dialect.ts';
import { RawJson } from '../sql-sink/raw-json.ts';
import type { Family } from '../sql-sink/type-mapping.ts';
import { TargetValue, paramRows, type Param, type RowSet } from '../sql-sink/values.ts';
import { insertStatements } from './dialect.ts';

/** The statement sizes the dialect keeps prepared, as its doc says: 1, 2, 5, 10, 20, 50, then hundreds, then `max`. */
function sizes(max: number): number[] {
  const out = [1, 2, 5, 10, 20, 50];
  for (let n = 100; n < max; n += 100) out.push(n);
  return [...out.filter((n) => n < max), max];
}

/** The general path, step by step. */
function reference(set: RowSet, max: number, idempotent: boolean): Array<{ count: number; params: unknown[] }> {
  const flat = (rows: readonly Param[][]): unknown[] => rows.flatMap((row) => row.map((v) => (typeof v === 'bigint' ? v.toString() : Array.isArray(v) ? JSON.stringify(v) : v)));
  const out: Array<{ count: number; params: unknown[] }> = [];
  for (const chunk of chunks(paramRows(set, { engine: 'mysql' }), max, 4 << 20)) {
    if (idempotent) {
      const size = sizes(max).find((n) => n >= chunk.length)!;
      const padded = [...chunk];
      while (padded.length < size) padded.push(chunk[chunk.length - 1]!);
      out.push({ count: size, params: flat(padded) });
    } else {
      let at = 0;
      while (at < chunk.length) {
        const size = [...sizes(max)].reverse().find((n) => n <= chunk.length - at)!;
        out.push({ count: size, params: flat(chunk.slice(at, at + size)) });
        at += size;
      }
    }
  }
  return out;
}

const FAMILIES: readonly Family[] = ['int', 'decimal', 'float', 'bool', 'text', 'binary', 'json', 'timestamptz', 'timestamp', 'date', 'time', 'uuid', 'other'];

const value: fc.Arbitrary<unknown> = fc.oneof(
  fc.string(),
  fc.constantFrom('2024-05-01T10:20:30.123456Z', '2024-05-01T10:20:30+02:00', '10:20:30Z', '2024-05-01', 'aGVsbG8=', '-000043-03-15', '0999-01-01'),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.jsonValue(),
  fc.string().map((s) => new RawJson(JSON.stringify(s))),
  fc.oneof(fc.string(), fc.integer(), fc.bigInt()).map((v) => new TargetValue(v)),
);

const rowSet: fc.Arbitrary<RowSet> = fc.integer({ min: 1, max: 4 }).chain((width) => {
  const columns = Array.from({ length: width }, (_, j) => `c${j}`);
  return fc
    .record({
      families: fc.array(fc.constantFrom(...FAMILIES), { minLength: width, maxLength: width }),
      rows: fc.array(fc.array(value, { minLength: width, maxLength: width }), { maxLength: 60 }),
    })
    .map(({ families, rows }) => ({ columns, families, rows: rows.map((values) => Object.fromEntries(columns.map((c, j) => [c, values[j]]))) }));
});

describe('mysql multi-row INSERT parameters', () => {
  it('are the statements and parameters of the general path, for upserts (padded) and inserts (split)', () => {
    // Guarantee: building statement parameters in one pass sends exactly what converting, chunking and flattening rows sent.
    fc.assert(
      fc.property(rowSet, fc.integer({ min: 1, max: 130 }), fc.boolean(), (set, max, idempotent) => {
        let expected: unknown;
        try {
          expected = reference(set, max, idempotent);
        } catch (err) {
          // A value the column cannot take fails both the same way.
          expect(() => insertStatements(set, max, idempotent)).toThrow((err as Error).message);
          return;
        }
        expect(insertStatements(set, max, idempotent)).toEqual(expected);
      }),
      { numRuns: 2000 },
    );
  });

  it('starts a new statement where the parameters pass 4 MiB, as the general path does', () => {
    // Guarantee: the byte limit per statement splits rows at the same places in both paths.
    const big = 'x'.repeat(1_500_000);
    const set: RowSet = { columns: ['id', 'note'], families: ['int', 'text'], rows: Array.from({ length: 7 }, (_, id) => ({ id, note: id % 2 === 0 ? big : 'small' })) };
    for (const idempotent of [true, false]) expect(insertStatements(set, 1000, idempotent)).toEqual(reference(set, 1000, idempotent));
    expect(insertStatements(set, 1000, true).map((s) => s.count)).toEqual([5, 5]);
  });
});
