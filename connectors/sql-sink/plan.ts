/**
 * Batch planning: the changes of one partition's batch, in offset order, become a few multi-row
 * statements per table whose effect equals applying the changes one by one.
 *
 * - Changes to one key collapse to the last one. Two upserts merge (the later values win, and a
 *   column the later one left unchanged keeps the earlier value of this batch); a delete followed
 *   by an upsert deletes and then writes the new row, so no column of the deleted row survives.
 * - A truncate drops the table's earlier changes of the batch and runs first.
 * - Per table, the statements run as: truncate, deletes, then upserts. Each key has one final
 *   action, so their order between keys is free; deletes go first so a row that moved to a new key
 *   frees its unique values before the new key takes them.
 * - Inserts (insert mode) are kept in order and never collapse.
 *
 * Moved rows. A primary-key update arrives as a delete of the old key followed by an upsert of the
 * new one (postgres-cdc writes `d` then `c`; Debezium's `u` with the old key in `before` decodes to
 * the same pair). Under REPLICA IDENTITY DEFAULT Postgres does not send TOASTed values the update
 * left unchanged, so the new row carries the unchanged-TOAST marker for them, and "keep the
 * target's value" would keep nothing: the new key has no row yet. Their values are the old row's.
 * The planner pairs such an upsert with the delete right before it and takes what it can from the
 * batch; what only the target knows is listed in {@link Plan.moves} for the caller to read from the
 * old row before the deletes run, and a batch that ends with a delete reports it in
 * {@link Plan.trailingDelete}, so the caller can keep the old row for a pair split across batches.
 */
import { keyText, sameNames, type Change, type Row, type SourceColumn } from './changes.ts';
import { TargetValue } from './values.ts';

export type Step =
  | { readonly kind: 'truncate'; readonly table: string }
  | { readonly kind: 'delete'; readonly table: string; readonly keyColumns: readonly string[]; readonly keys: readonly Row[] }
  | {
      readonly kind: 'upsert';
      readonly table: string;
      readonly keyColumns: readonly string[];
      /** The columns every row of the step sets, in first-seen order. */
      readonly columns: readonly string[];
      readonly rows: readonly Row[];
    }
  | { readonly kind: 'insert'; readonly table: string; readonly columns: readonly string[]; readonly rows: readonly Row[] };

/** What a batch needs of one target table, for DDL before the transaction. */
export interface TableUse {
  readonly table: string;
  /** The last column schema the batch's events carried for it. */
  columns: readonly SourceColumn[] | undefined;
  /** The key columns (upsert, delete), undefined in insert mode. */
  keyColumns: readonly string[] | undefined;
  /** Every column a statement writes or matches, with a sample non-null value for type inference. */
  readonly written: Map<string, unknown>;
}

/**
 * A moved row whose unchanged columns only the target knows: the caller reads `columns` of the
 * row with key `from` (before any delete of the batch runs) and calls `fill` with them.
 */
export interface Move {
  readonly table: string;
  readonly keyColumns: readonly string[];
  /** The old key. */
  readonly from: Row;
  /** The columns to read from the old row. */
  readonly columns: readonly string[];
  /** Sets the values read (target-native, see {@link TargetValue}); columns left out stay unchanged. */
  fill(values: Row): void;
}

/** The old row a batch-ending delete removes, as far as the batch knows it. */
export interface TrailingDelete {
  readonly table: string;
  readonly keyColumns: readonly string[];
  readonly key: Row;
  readonly offset: bigint;
  /** Values an earlier change of this batch gave the row (source values), over the target's. */
  readonly batchValues: Row;
}

/** A delete of the previous batch that may pair with this batch's first change. */
export interface PreviousDelete {
  readonly table: string;
  readonly key: Row;
  readonly offset: bigint;
  /** The deleted row's values, as {@link TrailingDelete} described them and the caller read them. */
  readonly values: Row;
}

export interface Plan {
  readonly tables: ReadonlyMap<string, TableUse>;
  readonly moves: readonly Move[];
  readonly trailingDelete: TrailingDelete | undefined;
  /** The statements; call after every move was filled. */
  steps(): Step[];
}

type Upsert = {
  op: 'upsert';
  row: Row;
  unchanged: readonly string[];
  keyColumns: readonly string[];
  deleteFirst: boolean;
  /** A moved row waiting for values from its old row (a {@link Move}). */
  waiting?: boolean;
  /** Rows moved on from this one in the same batch, which take its values once it has them. */
  followers?: Upsert[];
};
type KeyState = { op: 'delete'; key: Row; keyColumns: readonly string[]; before: Upsert | undefined } | Upsert;

interface TableState {
  truncated: boolean;
  keys: Map<string, KeyState>;
  inserts: Row[];
}

/** Plans `changes` (one partition, offset order); `previous` is the delete that ended the previous batch, if any. */
export function plan(changes: readonly Change[], previous?: PreviousDelete): Plan {
  return planUpserts(changes) ?? planChanges(changes, previous);
}

/** Per table, what {@link planUpserts} tracks. */
interface UpsertTable {
  readonly use: TableUse;
  /** The key columns of every change of the table: one array, as the decoder shares it. */
  readonly keyColumns: readonly string[];
  /** The keys seen: values for a one-column key whose values are all numbers or all strings, else {@link keyOf} texts. */
  readonly keys: Set<unknown>;
  /** The type of the one-column key's values, while they all share one. */
  keyType: 'number' | 'string' | 'text';
  readonly groups: Map<string, UpsertGroup>;
  last: UpsertGroup | undefined;
}

interface UpsertGroup {
  readonly columns: string[];
  readonly rows: Row[];
  /** Every column of the group has its sample in the table's `written`: noting more rows of it changes nothing. */
  noted: boolean;
}

/**
 * The plan of a batch made only of upserts of distinct keys that keep no unchanged values (upsert
 * mode, a snapshot): what {@link planChanges} makes of it, without per-key state, since nothing
 * collapses, pairs or moves. Undefined for any other batch, which {@link planChanges} plans. It
 * leaves the rows untouched.
 */
export function planUpserts(changes: readonly Change[]): Plan | undefined {
  const tables = new Map<string, TableUse>();
  const states = new Map<string, UpsertTable>();
  let state: UpsertTable | undefined;
  for (const change of changes) {
    if (change.kind !== 'upsert' || change.unchanged.length > 0) return undefined;
    // Only a plain object's keys are its for-in names, which note() reads; JSON.parse makes only those.
    if (Object.getPrototypeOf(change.row) !== Object.prototype) return undefined;
    if (state === undefined || state.use.table !== change.table) {
      state = states.get(change.table);
      if (state === undefined) {
        const use: TableUse = { table: change.table, columns: undefined, keyColumns: undefined, written: new Map() };
        tables.set(change.table, use);
        states.set(change.table, (state = { use, keyColumns: change.keyColumns, keys: new Set(), keyType: change.keyColumns.length === 1 ? 'number' : 'text', groups: new Map(), last: undefined }));
      }
    }
    // Keys named by other columns could still be one row to the general planner.
    if (change.keyColumns !== state.keyColumns) return undefined;
    if (change.columns) state.use.columns = change.columns;
    state.use.keyColumns = change.keyColumns;
    const row = change.row;
    let key: unknown;
    if (state.keyType === 'text') {
      key = keyOf(change.keyColumns, row);
    } else {
      // Numbers and strings are their own key texts; a mix of both (1 and "1" are one key) is left to the general planner.
      key = row[change.keyColumns[0]!];
      if (typeof key !== state.keyType) {
        if (state.keys.size > 0 || typeof key !== 'string') return undefined;
        state.keyType = 'string';
      }
    }
    const size = state.keys.size;
    if (state.keys.add(key).size === size) return undefined;

    const columns = Object.keys(row);
    let group = state.last !== undefined && sameNames(state.last.columns, columns) ? state.last : undefined;
    if (group === undefined) {
      const sig = columns.join('\u0000');
      group = state.groups.get(sig);
      if (group === undefined) state.groups.set(sig, (group = { columns, rows: [], noted: false }));
      state.last = group;
    }
    group.rows.push(row);
    if (!group.noted) {
      note(state.use, row);
      group.noted = noted(state.use, row);
    }
  }
  return {
    tables,
    moves: [],
    trailingDelete: undefined,
    steps: () => {
      const steps: Step[] = [];
      for (const [table, t] of states) {
        for (const group of t.groups.values()) steps.push({ kind: 'upsert', table, keyColumns: t.keyColumns, columns: group.columns, rows: group.rows });
      }
      return steps;
    },
  };
}

/**
 * Plans any batch of `changes` (one partition, offset order), keeping each key's state through the
 * batch; `previous` is the delete that ended the previous batch, if any.
 */
export function planChanges(changes: readonly Change[], previous?: PreviousDelete): Plan {
  const states = new Map<string, TableState>();
  const tables = new Map<string, TableUse>();
  const moves: Move[] = [];
  const stateOf = (change: Change): TableState => {
    let use = tables.get(change.table);
    if (!use) tables.set(change.table, (use = { table: change.table, columns: undefined, keyColumns: undefined, written: new Map() }));
    if (change.columns) use.columns = change.columns;
    if (change.kind === 'upsert' || change.kind === 'delete') use.keyColumns = change.keyColumns;
    // Every column a change names, even one a later change supersedes: the table must have them all.
    if (change.kind !== 'truncate') note(use, change.kind === 'delete' ? change.key : change.row);
    let state = states.get(change.table);
    if (!state) states.set(change.table, (state = { truncated: false, keys: new Map(), inserts: [] }));
    return state;
  };

  let prev: Change | undefined;
  for (const change of changes) {
    const state = stateOf(change);
    switch (change.kind) {
      case 'truncate':
        state.truncated = true;
        state.keys.clear();
        state.inserts = [];
        break;
      case 'insert':
        state.inserts.push(change.row);
        break;
      case 'delete': {
        const k = keyOf(change.keyColumns, change.key);
        const before = state.keys.get(k);
        state.keys.set(k, { op: 'delete', key: change.key, keyColumns: change.keyColumns, before: before?.op === 'upsert' ? before : undefined });
        break;
      }
      case 'upsert': {
        const k = keyOf(change.keyColumns, change.row);
        const prior = state.keys.get(k);
        if (prior?.op === 'upsert') {
          // In place: a pending move fills this same entry later (see resolveMove).
          Object.assign(prior.row, change.row);
          prior.unchanged = [...new Set([...prior.unchanged, ...change.unchanged])].filter((c) => !(c in prior.row));
          prior.keyColumns = change.keyColumns;
          break;
        }
        // The change's row is the decoder's own object, made for this record: the entry may change it.
        const entry: Upsert = { op: 'upsert', row: change.row, unchanged: change.unchanged, keyColumns: change.keyColumns, deleteFirst: prior?.op === 'delete' };
        state.keys.set(k, entry);
        if (entry.unchanged.length > 0) {
          // A row that is new in this batch yet keeps "unchanged" values: it moved from the key deleted right before it.
          const moved = movedFrom(change, prev, previous, states);
          // After a truncate in this batch the target's old rows are gone: only the batch knows the old row.
          if (moved) resolveMove(entry, state.truncated ? { ...moved, complete: true } : moved, change, moves);
        }
        break;
      }
    }
    prev = change;
  }

  const last = changes[changes.length - 1];
  let trailingDelete: TrailingDelete | undefined;
  if (last?.kind === 'delete') {
    const state = states.get(last.table)?.keys.get(keyOf(last.keyColumns, last.key));
    const before = state?.op === 'delete' ? state.before : undefined;
    // The live row, not a copy: moves resolved later fill it.
    trailingDelete = { table: last.table, keyColumns: last.keyColumns, key: last.key, offset: last.offset, batchValues: before ? before.row : {} };
  }

  return {
    tables,
    moves,
    trailingDelete,
    steps: () => buildSteps(states),
  };
}

interface MoveSource {
  /** The old key. */
  key: Row;
  /** The old key's entry in this batch, when it had one. */
  entry?: Upsert;
  /** Values known without the target: the old row's state in this batch, or the previous batch's kept row. */
  known: Row;
  /** Whether `known` is all there is (the previous batch's kept row): nothing more to read. */
  complete: boolean;
}

/**
 * The delete `change` pairs with, if any: of the same table, and either from the same record (an
 * update whose `before` holds the old key) or from the record right before an insert (postgres-cdc
 * writes a key change as `d` then `c`). An update right after an unrelated delete does not pair:
 * its unchanged values are its own row's.
 */
function movedFrom(change: Change & { kind: 'upsert' }, prev: Change | undefined, previous: PreviousDelete | undefined, states: Map<string, TableState>): MoveSource | undefined {
  const adjacent = (offset: bigint): boolean => offset === change.offset || (change.inserted && offset === change.offset - 1n);
  if (prev === undefined) {
    if (previous && previous.table === change.table && adjacent(previous.offset)) return { key: previous.key, known: previous.values, complete: true };
    return undefined;
  }
  if (prev.kind !== 'delete' || prev.table !== change.table || !adjacent(prev.offset)) return undefined;
  const state = states.get(prev.table)?.keys.get(keyOf(prev.keyColumns, prev.key));
  const before = state?.op === 'delete' ? state.before : undefined;
  return { key: prev.key, ...(before ? { entry: before } : {}), known: before ? before.row : {}, complete: false };
}

/**
 * Fills the moved row's unchanged columns from what the batch knows. What the old row is itself
 * still waiting for (a key moved twice in one batch) it passes on when it gets it; the rest is
 * listed as a {@link Move}, to be read from the target.
 */
function resolveMove(entry: Upsert, source: MoveSource, change: Change & { kind: 'upsert' }, moves: Move[]): void {
  const missing: string[] = [];
  const inherited: string[] = [];
  const waitingFor = new Set(source.entry?.waiting ? source.entry.unchanged : []);
  for (const c of entry.unchanged) {
    if (c in source.known) entry.row[c] = source.known[c];
    else if (waitingFor.has(c)) inherited.push(c);
    else missing.push(c);
  }
  // Until they are filled, these columns are not written at all, as unchanged columns are not.
  entry.unchanged = [...inherited, ...missing];
  if (inherited.length > 0) {
    entry.waiting = true;
    (source.entry!.followers ??= []).push(entry);
  }
  if (source.complete || missing.length === 0) return;
  entry.waiting = true;
  moves.push({
    table: change.table,
    keyColumns: change.keyColumns,
    from: source.key,
    columns: missing,
    fill: (values: Row) => fillEntry(entry, values),
  });
}

/** Sets the still-unchanged columns of `entry` from `values`, then passes them on to its followers. */
function fillEntry(entry: Upsert, values: Row): void {
  // A later change of this batch may have set a column since: its value wins.
  const still = new Set(entry.unchanged);
  for (const [c, v] of Object.entries(values)) {
    if (!still.has(c)) continue;
    entry.row[c] = v;
    still.delete(c);
  }
  entry.unchanged = [...still];
  for (const follower of entry.followers ?? []) fillEntry(follower, entry.row);
}

/** Records the columns of `row` in `use.written`, with the first non-null value seen for each. */
function note(use: TableUse, row: Row): void {
  for (const c in row) {
    // Once a column has its sample, the one lookup is all: every later row of the table ends here.
    if (use.written.get(c) !== undefined) continue;
    const v = row[c];
    if (v !== null && v !== undefined && !(v instanceof TargetValue)) use.written.set(c, v);
    else if (!use.written.has(c)) use.written.set(c, undefined);
  }
}

/** Whether every column of `row` has its sample in `use.written`, so that noting `row` again changes nothing. */
function noted(use: TableUse, row: Row): boolean {
  for (const c in row) if (use.written.get(c) === undefined) return false;
  return true;
}

function buildSteps(states: Map<string, TableState>): Step[] {
  const steps: Step[] = [];
  for (const [table, state] of states) {
    if (state.truncated) steps.push({ kind: 'truncate', table });
    const deletes = new Map<string, { keyColumns: readonly string[]; keys: Row[] }>();
    const upserts = new Map<string, { keyColumns: readonly string[]; columns: string[]; rows: Row[] }>();
    let lastUpsert: { keyColumns: readonly string[]; columns: string[]; rows: Row[] } | undefined;
    for (const entry of state.keys.values()) {
      if (entry.op === 'delete' || entry.deleteFirst) {
        const key = entry.op === 'delete' ? entry.key : pickKey(entry.row, entry.keyColumns);
        const sig = entry.keyColumns.join('\u0000');
        let group = deletes.get(sig);
        if (!group) deletes.set(sig, (group = { keyColumns: entry.keyColumns, keys: [] }));
        group.keys.push(key);
      }
      if (entry.op === 'upsert') {
        // Rows of one shape follow each other: compare with the last group before building a signature.
        const columns = Object.keys(entry.row);
        let group = lastUpsert !== undefined && lastUpsert.keyColumns === entry.keyColumns && sameNames(lastUpsert.columns, columns) ? lastUpsert : undefined;
        if (!group) {
          const sig = `${entry.keyColumns.join('\u0000')}\u0001${columns.join('\u0000')}`;
          group = upserts.get(sig);
          if (!group) upserts.set(sig, (group = { keyColumns: entry.keyColumns, columns, rows: [] }));
          lastUpsert = group;
        }
        group.rows.push(entry.row);
      }
    }
    for (const group of deletes.values()) steps.push({ kind: 'delete', table, keyColumns: group.keyColumns, keys: group.keys });
    for (const group of upserts.values()) steps.push({ kind: 'upsert', table, keyColumns: group.keyColumns, columns: group.columns, rows: group.rows });
    if (state.inserts.length > 0) {
      const inserts = new Map<string, { columns: string[]; rows: Row[] }>();
      for (const row of state.inserts) {
        const columns = Object.keys(row);
        const sig = columns.join('\u0000');
        let group = inserts.get(sig);
        if (!group) inserts.set(sig, (group = { columns, rows: [] }));
        group.rows.push(row);
      }
      for (const group of inserts.values()) steps.push({ kind: 'insert', table, columns: group.columns, rows: group.rows });
    }
  }
  return steps;
}

/** The map key of a row's key: its key columns' values as text, in key order. */
function keyOf(keyColumns: readonly string[], row: Row): string {
  if (keyColumns.length === 1) return keyText(row[keyColumns[0]!]);
  return JSON.stringify(keyColumns.map((c) => keyText(row[c])));
}

function pickKey(row: Row, keyColumns: readonly string[]): Row {
  const key: Row = {};
  for (const c of keyColumns) key[c] = row[c];
  return key;
}
