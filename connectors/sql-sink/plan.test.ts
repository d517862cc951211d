/**
 * The batch planner against an obviously correct model: applying a random sequence of changes one
 * by one to a map must give the same final table as applying the planned statements, for
 * thousands of sequences (fast-check). Plus the shapes the statements take.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Change, Row } from './changes.ts';
import { plan, planChanges, planUpserts, type Plan, type Step } from './plan.ts';

const T = 't';
const KEY = ['id'] as const;

function upsert(offset: number, id: number, row: Row, unchanged: string[] = [], inserted = false): Change {
  return { kind: 'upsert', table: T, offset: BigInt(offset), columns: undefined, keyColumns: KEY, row: { id, ...row }, unchanged, inserted };
}

function del(offset: number, id: number): Change {
  return { kind: 'delete', table: T, offset: BigInt(offset), columns: undefined, keyColumns: KEY, key: { id } };
}

/** The model: each change applied in order to a map of rows. */
function model(initial: Map<number, Row>, changes: readonly Change[]): Map<number, Row> {
  const table = new Map([...initial].map(([k, v]) => [k, { ...v }]));
  for (const c of changes) {
    if (c.kind === 'truncate') table.clear();
    else if (c.kind === 'delete') table.delete(c.key['id'] as number);
    else if (c.kind === 'upsert') {
      const id = c.row['id'] as number;
      const existing = table.get(id);
      // An upsert sets the columns it carries; unchanged columns keep the current value, or stay unset on a new row.
      table.set(id, existing ? { ...existing, ...c.row } : { ...c.row });
    }
  }
  return table;
}

/** The planned statements applied to a map, as the database would run them. */
function apply(initial: Map<number, Row>, steps: readonly Step[]): Map<number, Row> {
  const table = new Map([...initial].map(([k, v]) => [k, { ...v }]));
  for (const s of steps) {
    if (s.kind === 'truncate') table.clear();
    else if (s.kind === 'delete') for (const k of s.keys) table.delete(k['id'] as number);
    else if (s.kind === 'upsert') {
      const ids = new Set<number>();
      for (const row of s.rows) {
        const id = row['id'] as number;
        // One statement must not touch a key twice (Postgres refuses that).
        expect(ids.has(id)).toBe(false);
        ids.add(id);
        const picked = Object.fromEntries(s.columns.map((c) => [c, row[c]]));
        const existing = table.get(id);
        table.set(id, existing ? { ...existing, ...picked } : picked);
      }
    }
  }
  return table;
}

const changeArb = fc.oneof(
  fc.record({ kind: fc.constant('upsert' as const), id: fc.integer({ min: 1, max: 6 }), a: fc.option(fc.integer(), { nil: undefined }), b: fc.option(fc.string(), { nil: undefined }) }),
  fc.record({ kind: fc.constant('delete' as const), id: fc.integer({ min: 1, max: 6 }) }),
  fc.record({ kind: fc.constant('truncate' as const) }),
);

describe('plan', () => {
  it('collapses any sequence of upserts, partial upserts, deletes and truncates to statements with the same effect', () => {
    // Guarantee: for every batch, running the planned statements leaves the table exactly as applying each change in order would.
    fc.assert(
      fc.property(fc.array(changeArb, { maxLength: 40 }), fc.array(fc.integer({ min: 1, max: 6 }), { maxLength: 6 }), (specs, existing) => {
        const initial = new Map(existing.map((id) => [id, { id, a: -id, b: 'old' } as Row]));
        const changes: Change[] = specs.map((s, i): Change => {
          if (s.kind === 'truncate') return { kind: 'truncate', table: T, offset: BigInt(i), columns: undefined };
          if (s.kind === 'delete') return del(i, s.id);
          const row: Row = {};
          if (s.a !== undefined) row['a'] = s.a;
          if (s.b !== undefined) row['b'] = s.b;
          return upsert(i, s.id, row);
        });
        expect(Object.fromEntries(apply(initial, plan(changes).steps()))).toEqual(Object.fromEntries(model(initial, changes)));
      }),
      { numRuns: 2000 },
    );
  });

  it('orders a table\'s statements truncate, deletes, upserts, and groups rows by column set', () => {
    // Guarantee: one statement per kind and column set, deletes before upserts so a moved row frees its unique values first.
    const steps = plan([upsert(0, 1, { a: 1 }), upsert(1, 2, { a: 2, b: 'x' }), del(2, 3), upsert(3, 4, { a: 4 }), { kind: 'truncate', table: 'u', offset: 4n, columns: undefined }]).steps();
    expect(steps.map((s) => [s.kind, s.table, s.kind === 'upsert' ? s.columns : s.kind === 'delete' ? s.keys.length : null, s.kind === 'upsert' ? s.rows.length : null])).toEqual([
      ['delete', 't', 1, null],
      ['upsert', 't', ['id', 'a'], 2],
      ['upsert', 't', ['id', 'a', 'b'], 1],
      ['truncate', 'u', null, null],
    ]);
  });

  it('pairs a key change\'s delete with the next insert that keeps unchanged values, and takes them from the batch or asks for the old row', () => {
    // Guarantee: a moved row gets its unchanged-TOAST values from its old row: from this batch when it knows them, else through a Move read from the target.
    const known = plan([upsert(0, 1, { a: 1, big: 'B1' }), del(1, 1), upsert(2, 2, { a: 1 }, ['big'], true)]);
    expect(known.moves).toEqual([]);
    expect(known.steps().find((s) => s.kind === 'upsert')).toMatchObject({ rows: [{ id: 2, a: 1, big: 'B1' }] });

    const fromTarget = plan([del(5, 7), upsert(6, 8, { a: 1 }, ['big'], true)]);
    expect(fromTarget.moves.map((m) => [m.from, m.columns])).toEqual([[{ id: 7 }, ['big']]]);
    fromTarget.moves[0]!.fill({ big: 'from target' });
    expect(fromTarget.steps().find((s) => s.kind === 'upsert')).toMatchObject({ columns: ['id', 'a', 'big'], rows: [{ id: 8, a: 1, big: 'from target' }] });

    // An update (not an insert) right after an unrelated delete keeps its own row's values.
    expect(plan([del(0, 7), upsert(1, 8, { a: 1 }, ['big'], false)]).moves).toEqual([]);
    // The previous batch's last delete pairs with this batch's first insert.
    const split = plan([upsert(10, 9, { a: 1 }, ['big'], true)], { table: T, key: { id: 3 }, offset: 9n, values: { big: 'kept' } });
    expect(split.steps()[0]).toMatchObject({ rows: [{ id: 9, a: 1, big: 'kept' }] });
    // A batch ending with a delete says so, for the next one.
    expect(plan([upsert(0, 1, { a: 1 }), del(1, 1)]).trailingDelete).toMatchObject({ key: { id: 1 }, offset: 1n, batchValues: { id: 1, a: 1 } });
  });

  it('plans a batch of distinct upserts without per-key state exactly as the general planner does', () => {
    // Guarantee: the upsert-only fast path gives the same tables, samples, moves and statements as the general planner, and steps aside for any batch it cannot plan so.
    const keyColumns = { one: ['id'], two: ['id', 'k'] } as const;
    const upsertSpec = fc.record({
      kind: fc.constant('upsert' as const),
      table: fc.constantFrom('t', 'u'),
      key: fc.constantFrom('one' as const, 'one' as const, 'two' as const),
      id: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 40 }) }, { weight: 2, arbitrary: fc.integer({ min: 0, max: 3 }) }, { weight: 2, arbitrary: fc.integer({ min: 0, max: 3 }).map(String) }, fc.constantFrom(-0, 1.5, 1e21), fc.constantFrom(true, null, { x: 1 })),
      k: fc.constantFrom('a', 'b', 1),
      values: fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c', '__proto__'), fc.oneof(fc.integer(), fc.string(), fc.constant(null))), { maxLength: 4 }),
      schema: fc.boolean(),
      unchanged: fc.constantFrom([], [], [], ['c']),
    });
    const other = fc.oneof(fc.constant({ kind: 'delete' as const }), fc.constant({ kind: 'truncate' as const }), fc.constant({ kind: 'insert' as const }));
    const schema = [{ name: 'id', type: { base: 'integer', array: 0 }, typeText: 'integer', nullable: false, pk: true }] as never;
    const batch = fc.array(fc.oneof({ weight: 20, arbitrary: upsertSpec }, { weight: 1, arbitrary: other }), { maxLength: 30 });
    const view = (p: Plan) => ({
      tables: [...p.tables].map(([name, use]) => [name, { ...use, written: [...use.written] }]),
      moves: p.moves,
      trailingDelete: p.trailingDelete,
      steps: p.steps(),
    });
    let fast = 0;
    fc.assert(
      fc.property(batch, (specs) => {
        const changes: Change[] = specs.map((s, i): Change => {
          const offset = BigInt(i);
          if (s.kind === 'truncate') return { kind: 'truncate', table: T, offset, columns: undefined };
          if (s.kind === 'delete') return del(i, 1);
          if (s.kind === 'insert') return { kind: 'insert', table: T, offset, columns: undefined, row: { id: i } };
          const row: Row = JSON.parse(JSON.stringify(Object.fromEntries([['id', s.id], ...(s.key === 'two' ? [['k', s.k]] : []), ...s.values])));
          return { kind: 'upsert', table: s.table, offset, columns: s.schema ? schema : undefined, keyColumns: keyColumns[s.key], row, unchanged: s.unchanged, inserted: false };
        });
        const copies = changes.map((c) => (c.kind === 'upsert' ? { ...c, row: { ...c.row } } : c));
        const planned = planUpserts(changes);
        if (planned === undefined) return;
        fast++;
        expect(view(planned)).toEqual(view(planChanges(copies)));
        expect(changes).toEqual(copies);
      }),
      { numRuns: 3000 },
    );
    // The fast path is taken, not only declined.
    expect(fast).toBeGreaterThan(300);
    // Distinct numeric keys of one table qualify; a repeated key, 1 next to "1", a delete or an unchanged value do not.
    expect(planUpserts([upsert(0, 1, { a: 1 }), upsert(1, 2, { a: 2 })])).toBeDefined();
    expect(planUpserts([upsert(0, 1, { a: 1 }), upsert(1, 1, { a: 2 })])).toBeUndefined();
    expect(planUpserts([upsert(0, 1, { a: 1 }), { ...(upsert(1, 0, { a: 2 }) as Change & { kind: 'upsert' }), row: { id: '1', a: 2 } }])).toBeUndefined();
    expect(planUpserts([upsert(0, 1, { a: 1 }), del(1, 2)])).toBeUndefined();
    expect(planUpserts([upsert(0, 1, { a: 1 }, ['big'])])).toBeUndefined();
  });
});
