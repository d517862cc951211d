/**
 * The sink task both SQL sinks run: decode records into changes, plan them into multi-row
 * statements, and apply each partition's batch in one transaction that also advances that
 * partition's row in the offsets table. The dialect supplies the SQL.
 *
 * Exactly-once, step by step:
 * - `committedOffsets` reads the offsets table, so after a restart the runtime resumes where the
 *   target is, not where the consumer group committed;
 * - `put` skips records below the partition's stored offset, since they can be delivered again
 *   (a crash between the data commit and the group commit, a retried or bisected batch);
 * - the offset row is advanced in the data's transaction with a compare-and-set on the value the
 *   task believed stored; on a mismatch (another writer of the partition, or a commit whose outcome
 *   was lost with its connection) the transaction rolls back and the retry locks and re-reads it.
 */
import { RetriableError, SluiceError, isSluiceError, parseDuration, type SinkRecord, type SinkTask, type SinkTaskContext, type TopicPartition, type TopicPartitionOffset } from '../../core/connector.ts';
import { ChangeDecoder, type Change, type Row, type SourceColumn } from './changes.ts';
import { RawJson } from './raw-json.ts';
import type { SqlSinkSettings } from './config.ts';
import { offsetRowKey, type ColumnDefinition, type OffsetKey, type Session, type SqlDialect, type Statements, type TargetTable } from './dialect.ts';
import { sinkError } from './errors.ts';
import { checkIdentifier, preview } from './names.ts';
import { plan, type Plan, type PreviousDelete, type Step, type TableUse } from './plan.ts';
import { inferPgType } from './type-mapping.ts';
import { TargetValue, isBadValue, paramRows, type Param, type RowSet } from './values.ts';

/** The metrics both SQL sinks declare, for their definitions' `metrics`. */
export const SQL_SINK_METRICS = {
  rows_total: { type: 'counter', help: 'Rows written, by operation: insert, upsert or delete (after collapsing changes to one key).', labels: ['op'] },
  truncates_total: { type: 'counter', help: 'Tables truncated by change events with op t.' },
  skipped_records_total: {
    type: 'counter',
    help: 'Records skipped because the offsets table shows the target already has them: deliveries repeated after a crash or a retry.',
  },
  schema_changes_total: { type: 'counter', help: 'Tables created (auto_create) and columns added (schema_evolution), by change.', labels: ['change'] },
  transaction_seconds: { type: 'histogram', help: 'Time to apply one partition\'s batch, from BEGIN to COMMIT.' },
  unchanged_values_lost_total: {
    type: 'counter',
    help:
      'Unchanged TOASTed values of rows moved to a new primary key that could not be copied from the old row, because the old row was not in the target (the delete and the insert of the key change were in different partitions). Should stay 0.',
  },
} as const;

/** Runs `worker` over `items` with at most `limit` in flight; resolves with each outcome. */
async function settleAll<T>(items: readonly T[], limit: number, worker: (item: T) => Promise<void>): Promise<unknown[]> {
  const errors: unknown[] = [];
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      try {
        await worker(item);
      } catch (err) {
        errors.push(err);
      }
    }
  });
  await Promise.all(lanes);
  return errors;
}

/** The most telling of several errors: a connector-level one, then a retriable one, then a bad record. */
function worstError(errors: readonly unknown[]): unknown {
  return (
    errors.find((e) => isSluiceError(e, 'CONFIG_INVALID')) ??
    errors.find((e) => e instanceof RetriableError) ??
    errors[0]
  );
}

/** A sink task over one {@link SqlDialect}. Created by the `postgres` and `mysql` definitions. */
export class SqlSinkTask<S extends Session> implements SinkTask {
  readonly #dialect: SqlDialect<S>;
  readonly #settings: SqlSinkSettings;
  readonly #connectTimeoutMs: number;
  #ctx: SinkTaskContext | undefined;
  #decoder: ChangeDecoder | undefined;
  readonly #idle: S[] = [];
  readonly #busy = new Set<S>();
  /** The next offset stored in the target per partition, as far as this task knows for sure. */
  readonly #offsets = new Map<string, bigint>();
  /** The row each partition's last batch deleted last, when it may still pair with a moved row (see plan.ts). */
  readonly #kept = new Map<string, PreviousDelete | undefined>();
  /** Target tables as last described. */
  readonly #tables = new Map<string, TargetTable>();
  /** The column schema last checked against each table, as text. */
  readonly #checkedSchemas = new Map<string, string>();
  /** Serialises DDL and describing between partitions written in parallel. */
  #ddl: Promise<void> = Promise.resolve();
  #onAbort: (() => void) | undefined;

  /** Called through the definition's `createTask`; does no I/O. */
  constructor(dialect: SqlDialect<S>, settings: SqlSinkSettings) {
    this.#dialect = dialect;
    this.#settings = settings;
    this.#connectTimeoutMs = parseDuration(settings.connect_timeout);
  }

  /**
   * Connects once and creates the offsets table if missing. A database that cannot be reached is a
   * RetriableError; bad credentials, a missing database or a mapping that cannot work
   * (`columns.exclude` of a key column, `{table}` outside cdc mode) are `CONFIG_INVALID`.
   */
  async start(ctx: SinkTaskContext): Promise<void> {
    this.#ctx = ctx;
    this.#decoder = new ChangeDecoder(this.#settings);
    checkIdentifier(this.#settings.offsets_table, 'offsets table', this.#dialect.identifiers);
    // A stop cuts in-flight statements short: their transactions roll back, so nothing half-done stays.
    this.#onAbort = () => {
      for (const s of this.#busy) this.#dialect.destroy(s);
    };
    ctx.signal.addEventListener('abort', this.#onAbort, { once: true });
    await this.#withSession('start', (s) => this.#dialect.ensureOffsetsTable(s, this.#settings.offsets_table));
  }

  /** The offsets stored in the target for these partitions; partitions never written are left out. */
  async committedOffsets(partitions: readonly TopicPartition[]): Promise<readonly TopicPartitionOffset[]> {
    const ctx = this.#context();
    const keys = partitions.map((tp) => this.#offsetKey(ctx, tp));
    const stored = await this.#withSession('reading offsets', (s) => this.#dialect.readOffsets(s, this.#settings.offsets_table, keys));
    const out: TopicPartitionOffset[] = [];
    for (const tp of partitions) {
      const k = offsetRowKey(tp.topic, tp.partition);
      const offset = stored.get(k);
      if (offset === undefined) {
        this.#offsets.delete(k);
        continue;
      }
      this.#offsets.set(k, offset);
      out.push({ topic: tp.topic, partition: tp.partition, offset });
    }
    ctx.logger.info({ partitions: out.map((o) => `${o.topic}/${o.partition}@${o.offset}`) }, 'resuming from the offsets stored in the target');
    return out;
  }

  /**
   * Applies the batch: each partition's records in one transaction with its offset row, partitions
   * in parallel on up to `connections` connections. Throws a RetriableError for a lost connection
   * or a restart of the database (partitions already committed are skipped on the retry),
   * `CONFIG_INVALID` for a missing table without auto_create or an incompatible schema change, and
   * any other error for a row the database refused, which makes the runtime bisect the batch.
   */
  async put(records: readonly SinkRecord[]): Promise<void> {
    if (records.length === 0) return;
    const ctx = this.#context();
    const byPartition = new Map<string, SinkRecord[]>();
    let list: SinkRecord[] | undefined;
    let last: SinkRecord | undefined;
    for (const r of records) {
      // A partition's records come in runs: its list is looked up again only where the run ends.
      if (last === undefined || r.partition !== last.partition || r.topic !== last.topic) {
        const k = offsetRowKey(r.topic, r.partition);
        list = byPartition.get(k);
        if (!list) byPartition.set(k, (list = []));
      }
      list!.push(r);
      last = r;
    }
    const errors = await settleAll([...byPartition.values()], this.#settings.connections, (list) => this.#applyPartition(ctx, list));
    if (errors.length > 0) throw worstError(errors);
  }

  /**
   * Stores the offsets of records that never reached `put` (sent to the DLQ, dropped by a filter)
   * when they end a batch, so a restart does not deliver them again. Returns `offsets` unchanged.
   */
  async preCommit(offsets: readonly TopicPartitionOffset[]): Promise<readonly TopicPartitionOffset[]> {
    const ctx = this.#context();
    const behind = offsets.filter((o) => {
      const known = this.#offsets.get(offsetRowKey(o.topic, o.partition));
      return known !== undefined && known < o.offset;
    });
    for (const o of behind) {
      const k = offsetRowKey(o.topic, o.partition);
      await this.#withSession('storing offsets', async (s) => {
        if (this.#dialect.begin) await this.#dialect.begin(s);
        try {
          const stored = await this.#dialect.lockOffset(s, this.#settings.offsets_table, this.#offsetKey(ctx, o));
          // The kept row stays: the records skipped here come after it, so it no longer pairs with anything.
          if (stored.next < o.offset) await this.#dialect.advanceOffset(s, this.#settings.offsets_table, this.#offsetKey(ctx, o), stored.next, o.offset, null);
          await this.#dialect.commit(s);
          this.#offsets.set(k, stored.next < o.offset ? o.offset : stored.next);
          this.#kept.set(k, undefined);
        } catch (err) {
          this.#forgetPartition(k);
          await this.#rollbackQuietly(s);
          throw err;
        }
      });
    }
    return offsets;
  }

  /** Forgets what it knew of revoked partitions: another task may write them next. */
  async close(partitions: readonly TopicPartition[]): Promise<void> {
    for (const tp of partitions) this.#forgetPartition(offsetRowKey(tp.topic, tp.partition));
  }

  /** Closes every connection. */
  async stop(): Promise<void> {
    if (this.#ctx && this.#onAbort) this.#ctx.signal.removeEventListener('abort', this.#onAbort);
    for (const s of this.#busy) this.#dialect.destroy(s);
    this.#busy.clear();
    const idle = this.#idle.splice(0);
    await Promise.all(idle.map((s) => this.#dialect.close(s).catch(() => this.#dialect.destroy(s))));
  }

  // -------------------------------------------------------------------------------------------

  #context(): SinkTaskContext {
    if (!this.#ctx || !this.#decoder) throw new SluiceError('CONNECTOR_FAILED', `${this.#dialect.label} sink: called before start`);
    return this.#ctx;
  }

  #offsetKey(ctx: SinkTaskContext, tp: TopicPartition): OffsetKey {
    return { pipeline: ctx.pipeline, connector: ctx.connector, topic: tp.topic, partition: tp.partition };
  }

  async #acquire(): Promise<S> {
    const ctx = this.#context();
    const idle = this.#idle.pop();
    if (idle) {
      this.#busy.add(idle);
      return idle;
    }
    if (ctx.signal.aborted) throw new RetriableError(`${this.#dialect.label} sink: stopping`);
    const session = await this.#dialect.connect({ connectTimeoutMs: this.#connectTimeoutMs, logger: ctx.logger, applicationName: `sluice ${ctx.pipeline}/${ctx.connector}/${ctx.task}` });
    this.#busy.add(session);
    return session;
  }

  #release(session: S, broken: boolean): void {
    this.#busy.delete(session);
    if (broken || !session.healthy || this.#ctx?.signal.aborted) {
      this.#dialect.destroy(session);
      return;
    }
    this.#idle.push(session);
  }

  /** Runs `fn` on a connection, turning database errors into the connector API's. */
  async #withSession<T>(what: string, fn: (s: S) => Promise<T>): Promise<T> {
    let session: S;
    try {
      session = await this.#acquire();
    } catch (err) {
      throw this.#translate(err, `connecting (${what})`);
    }
    let broken = false;
    try {
      return await fn(session);
    } catch (err) {
      broken = true;
      // A stop destroys busy connections on purpose; whatever error the driver then reports ("write
      // after end", a closed socket) is the stop, not a bad row, and the transaction rolled back.
      if (this.#ctx?.signal.aborted) throw new RetriableError(`${this.#dialect.label} sink: stopped during ${what}`, { cause: err });
      throw this.#translate(err, what);
    } finally {
      this.#release(session, broken);
    }
  }

  /** A SluiceError passes through; anything else is a database error to classify. */
  #translate(err: unknown, what: string, context: Record<string, unknown> = {}): SluiceError {
    if (isBadValue(err)) {
      const { badValue: _, ...rest } = err.context;
      const where = typeof context['table'] === 'string' ? ` (table ${JSON.stringify(context['table'])})` : '';
      return new SluiceError('CONNECTOR_FAILED', `${this.#dialect.label} sink, ${what}: ${err.message}${where}`, { context: { ...rest, ...context } });
    }
    if (err instanceof SluiceError) return err;
    // After a stop destroyed the busy connections, a driver error is the stop, not the data.
    if (this.#ctx?.signal.aborted) return new RetriableError(`${this.#dialect.label} sink: stopped during ${what}`);
    const classified = this.#dialect.classify(err);
    if (classified.kind === 'schema' && typeof context['table'] === 'string') this.#forgetTable(context['table']);
    return sinkError(`${this.#dialect.label} sink, ${what}`, classified, context);
  }

  /** Rolls back; false when that failed too, and the connection must be dropped. */
  async #rollbackQuietly(session: S): Promise<boolean> {
    if (!session.healthy) return false;
    try {
      await this.#dialect.rollback(session);
      return true;
    } catch {
      return false;
    }
  }

  #forgetTable(table: string): void {
    this.#tables.delete(table);
    this.#checkedSchemas.delete(table);
  }

  async #applyPartition(ctx: SinkTaskContext, records: readonly SinkRecord[]): Promise<void> {
    const first = records[0]!;
    const tp = { topic: first.topic, partition: first.partition };
    const k = offsetRowKey(tp.topic, tp.partition);
    const known = this.#offsets.get(k);
    let pending = known === undefined || first.offset >= known ? records : records.filter((r) => r.offset >= known);
    if (pending.length < records.length) ctx.metrics.count('skipped_records_total', records.length - pending.length);
    if (pending.length === 0) return;

    let changes: Change[] = [];
    for (const r of pending) {
      for (const c of this.#decoder!.decode(r)) changes.push(c);
    }
    // Planning merges rows in place. When the stored offset is not known yet, this first plan only
    // says which tables to prepare, and the batch is planned again once it is: on copies, then.
    let batch = known === undefined ? plan(changes.map(copyChange)) : plan(changes, this.#kept.get(k));

    // No await between here and the first statement when nothing needs connecting, describing or
    // locking: the partitions of a batch then take turns, one preparing its rows in JavaScript while
    // another's statement runs in the database.
    let session: S;
    const idle = this.#idle.pop();
    if (idle) {
      this.#busy.add(idle);
      session = idle;
    } else {
      try {
        session = await this.#acquire();
      } catch (err) {
        throw this.#translate(err, 'connecting');
      }
    }
    let broken = false;
    let table: string | undefined;
    const started = performance.now();
    try {
      // DDL first: MySQL commits the open transaction on any DDL.
      if (!this.#allReady(batch)) await this.#prepareTables(ctx, session, batch);
      let statements: Prepared<S>[] | undefined;
      if (known !== undefined && batch.moves.length === 0) {
        // Nothing the transaction reads can change these rows: they are converted before its first
        // round trip and dropped, so they die young instead of surviving collections while this
        // partition waits for the database and other partitions allocate.
        statements = [];
        for (const step of batch.steps()) {
          table = step.table;
          statements.push(this.#prepare(step));
        }
        table = undefined;
        batch = withoutRows(batch);
        changes = [];
      }
      if (this.#dialect.begin) await this.#dialect.begin(session);
      let expected = known;
      if (expected === undefined) {
        const stored = await this.#dialect.lockOffset(session, this.#settings.offsets_table, this.#offsetKey(ctx, tp));
        const floor = stored.next;
        expected = floor;
        if (pending[0]!.offset < floor) {
          const before = pending.length;
          pending = pending.filter((r) => r.offset >= floor);
          ctx.metrics.count('skipped_records_total', before - pending.length);
          changes = changes.filter((c) => c.offset >= floor);
        }
        batch = plan(changes, keptDelete(stored.kept));
      }
      if (pending.length > 0) {
        await this.#resolveMoves(ctx, session, batch);
        const kept = await this.#keep(session, batch);
        if (statements === undefined) {
          statements = [];
          for (const step of batch.steps()) {
            table = step.table;
            statements.push(this.#prepare(step));
          }
        }
        for (const statement of statements) {
          table = statement.table;
          await statement.run(session);
        }
        table = undefined;
        const next = pending[pending.length - 1]!.offset + 1n;
        const keptText = kept === undefined ? null : JSON.stringify(kept, keptReplacer);
        const moved = !(await this.#dialect.advanceOffset(session, this.#settings.offsets_table, this.#offsetKey(ctx, tp), expected, next, keptText));
        if (moved) {
          await this.#rollbackQuietly(session);
          this.#forgetPartition(k);
          throw new RetriableError(`${this.#dialect.label} sink: the stored offset of ${tp.topic}/${tp.partition} is no longer ${expected}; another writer or an earlier commit moved it, so the batch is retried against the stored offset`, {
            context: { topic: tp.topic, partition: tp.partition, expected: expected.toString() },
          });
        }
        await this.#dialect.commit(session);
        this.#offsets.set(k, next);
        this.#kept.set(k, keptText === null ? undefined : keptDelete(keptText));
        this.#count(ctx, statements);
      } else {
        await this.#dialect.commit(session);
        this.#offsets.set(k, expected);
      }
      ctx.metrics.observe('transaction_seconds', (performance.now() - started) / 1000);
    } catch (err) {
      // Whether the transaction committed is unknown when the connection died during COMMIT: the
      // next attempt locks the offset row and reads it.
      this.#forgetPartition(k);
      const classified = err instanceof SluiceError ? undefined : this.#dialect.classify(err);
      const lost = classified ? classified.kind === 'retriable' : err instanceof RetriableError;
      broken = lost || !(await this.#rollbackQuietly(session));
      const context: Record<string, unknown> = { topic: tp.topic, partition: tp.partition, ...(table !== undefined ? { table } : {}) };
      let where = `${tp.topic}/${tp.partition}@${pending[0]?.offset ?? first.offset}..${pending[pending.length - 1]?.offset ?? first.offset}`;
      if ((classified?.kind === 'record' || isBadValue(err)) && !broken && pending.length > 1) {
        // A multi-row statement does not say which row it refused: find the record, so that the
        // error names it even when the runtime does not bisect (errors.tolerance: none).
        const culprit = await this.#locate(session, pending).catch(() => {
          broken = true;
          return undefined;
        });
        if (culprit) {
          where = `${culprit.topic}/${culprit.partition}@${culprit.offset} (the first record of ${where} that fails)`;
          context['offset'] = culprit.offset.toString();
        }
      }
      throw this.#translate(err, `writing ${where}`, context);
    } finally {
      this.#release(session, broken);
    }
  }

  #forgetPartition(k: string): void {
    this.#offsets.delete(k);
    this.#kept.delete(k);
  }

  /** Reads from the target what moved rows need of their old rows, before any delete runs. */
  async #resolveMoves(ctx: SinkTaskContext, session: S, batch: Plan): Promise<void> {
    for (const move of batch.moves) {
      const target = this.#tables.get(move.table)!;
      const key = this.#params(target, move.keyColumns, [move.from])[0]!;
      const columns = move.columns.filter((c) => target.columns.has(c));
      const row = columns.length === 0 ? undefined : await this.#dialect.readRow(session, move.table, move.keyColumns, key, columns);
      if (!row) {
        // Only possible when the delete and the insert of a key change were split over partitions.
        ctx.metrics.count('unchanged_values_lost_total', move.columns.length);
        ctx.logger.warn({ table: move.table, columns: move.columns }, 'a row moved to a new primary key, but its old row is not in the target: its unchanged TOASTed values are unknown and stay empty; keep each table\'s changes in one partition');
        continue;
      }
      move.fill(Object.fromEntries(Object.entries(row).map(([c, v]) => [c, new TargetValue(v)])));
    }
  }

  /**
   * When the batch ends with a delete in cdc mode, the deleted row as it stands before the delete:
   * the next batch may start with the insert of the same row under a new key.
   */
  async #keep(session: S, batch: Plan): Promise<KeptDelete | undefined> {
    const last = batch.trailingDelete;
    if (!last || this.#settings.mode !== 'cdc') return undefined;
    const target = this.#tables.get(last.table);
    if (!target) return undefined;
    const keys = new Set(last.keyColumns);
    const columns = [...target.columns.keys()].filter((c) => !keys.has(c));
    const key = this.#params(target, last.keyColumns, [last.key])[0]!;
    const row = columns.length === 0 ? undefined : await this.#dialect.readRow(session, last.table, last.keyColumns, key, columns);
    const values: Row = {};
    for (const [c, v] of Object.entries(row ?? {})) values[c] = new TargetValue(v);
    Object.assign(values, last.batchValues);
    return { table: last.table, key: last.key, offset: last.offset, values };
  }

  /**
   * The first record whose changes, applied after those of the records before it, make the
   * database refuse the batch: a binary search over prefixes, each tried in a transaction that is
   * always rolled back. About log2(records) tries; only run after a record-level failure.
   */
  async #locate(session: S, records: readonly SinkRecord[]): Promise<SinkRecord | undefined> {
    let lo = 1;
    let hi = records.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (await this.#fails(session, records.slice(0, mid))) hi = mid;
      else lo = mid + 1;
    }
    return records[lo - 1];
  }

  /** Whether applying `records` fails with a record-level error; throws on any other failure. */
  async #fails(session: S, records: readonly SinkRecord[]): Promise<boolean> {
    const changes: Change[] = [];
    for (const r of records) changes.push(...this.#decoder!.decode(r));
    const batch = plan(changes);
    if (this.#dialect.begin) await this.#dialect.begin(session);
    try {
      for (const step of batch.steps()) await this.#prepare(step).run(session);
      return false;
    } catch (err) {
      if (isBadValue(err)) return true;
      if (err instanceof SluiceError || this.#dialect.classify(err).kind !== 'record') throw err;
      return true;
    } finally {
      await this.#dialect.rollback(session);
    }
  }

  #count(ctx: SinkTaskContext, statements: readonly Prepared<S>[]): void {
    for (const s of statements) {
      if (s.kind === 'truncate') ctx.metrics.count('truncates_total');
      else ctx.metrics.count('rows_total', s.rows, { op: s.kind });
    }
  }

  /** The statement of `step`, its values converted now; throws a value's record-level error. */
  #prepare(step: Step): Prepared<S> {
    const d = this.#dialect;
    const target = this.#tables.get(step.table)!;
    const rows = this.#settings.batch_rows;
    const table = step.table;
    switch (step.kind) {
      case 'truncate':
        return { table, kind: 'truncate', rows: 0, run: (session) => d.truncate(session, table) };
      case 'delete': {
        const keys = this.#params(target, step.keyColumns, step.keys);
        const keyColumns = step.keyColumns;
        return { table, kind: 'delete', rows: keys.length, run: (session) => d.deleteRows(session, table, keyColumns, keys, rows) };
      }
      case 'upsert':
        return { table, kind: 'upsert', rows: step.rows.length, run: d.upsertRows(table, step.keyColumns, rowSet(target, step.columns, step.rows), rows) };
      case 'insert':
        return { table, kind: 'insert', rows: step.rows.length, run: d.insertRows(table, rowSet(target, step.columns, step.rows), rows) };
    }
  }

  #params(target: TargetTable, columns: readonly string[], rows: readonly Row[]): Param[][] {
    return paramRows(rowSet(target, columns, rows), { engine: this.#dialect.engine });
  }

  // -------------------------------------------------------------------------------------------
  // Tables: describe, create, evolve, check

  /** Makes every table the batch touches ready, before its transaction (MySQL DDL commits implicitly). */
  /** True when every table of the batch is described and covers what the batch writes. */
  #allReady(batch: Plan): boolean {
    for (const use of batch.tables.values()) if (!this.#ready(use)) return false;
    return true;
  }

  async #prepareTables(ctx: SinkTaskContext, session: S, batch: Plan): Promise<void> {
    const needed = [...batch.tables.values()].filter((use) => !this.#ready(use));
    if (needed.length === 0) return;
    const run = this.#ddl.then(async () => {
      for (const use of needed) await this.#prepareTable(ctx, session, use);
    });
    this.#ddl = run.catch(() => {});
    await run;
  }

  /** True when the cached description already covers what `use` needs. */
  #ready(use: TableUse): boolean {
    const target = this.#tables.get(use.table);
    if (!target) return false;
    for (const c of use.written.keys()) if (!target.columns.has(c)) return false;
    if (use.columns && this.#checkedSchemas.get(use.table) !== schemaText(use.columns)) return false;
    return true;
  }

  async #prepareTable(ctx: SinkTaskContext, session: S, use: TableUse): Promise<void> {
    const d = this.#dialect;
    const label = `${d.label} sink`;
    const name = use.table;
    checkIdentifier(name, 'table', d.identifiers);
    for (const c of use.written.keys()) checkIdentifier(c, 'column', d.identifiers);
    const ddl = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
      try {
        return await fn();
      } catch (err) {
        const classified = d.classify(err);
        if (classified.kind === 'retriable') throw sinkError(label, classified, { table: name });
        throw new SluiceError('CONFIG_INVALID', `${label}: ${what} ${preview(name)} failed: ${classified.message}`, { context: { table: name, dbCode: classified.code } });
      }
    };

    let target = this.#tables.get(name) ?? (await ddl('describing table', () => d.describe(session, name)));
    if (!target) {
      if (!this.#settings.auto_create) {
        throw new SluiceError('CONFIG_INVALID', `${label}: table ${preview(name)} does not exist in the target; create it, or set auto_create: true`, { context: { table: name, field: 'auto_create' } });
      }
      const columns = this.#definitions(use, [...new Set([...(use.columns ?? []).map((c) => c.name), ...use.written.keys()])]);
      for (const c of columns) checkIdentifier(c.name, 'column', d.identifiers);
      const key = use.keyColumns ?? [];
      await ddl('creating table', () => d.createTable(session, name, columns, key));
      ctx.metrics.count('schema_changes_total', 1, { change: 'create_table' });
      ctx.logger.info({ table: name, columns: columns.length, key }, 'created the target table');
      target = await ddl('describing table', () => d.describe(session, name));
      if (!target) throw new SluiceError('CONFIG_INVALID', `${label}: table ${preview(name)} is still missing after CREATE TABLE`, { context: { table: name } });
    }

    const missing = [...use.written.keys()].filter((c) => !target!.columns.has(c));
    if (missing.length > 0) {
      if (this.#settings.schema_evolution === 'fail') {
        throw new SluiceError('CONFIG_INVALID', `${label}: table ${preview(name)} has no column ${missing.map((c) => preview(c)).join(', ')} and schema_evolution is fail; add the column, or set schema_evolution: add_columns`, {
          context: { table: name, columns: missing, field: 'schema_evolution' },
        });
      }
      for (const column of this.#definitions(use, missing)) {
        await ddl(`adding column ${preview(column.name)} (${column.type}) to`, () => d.addColumn(session, name, column));
        ctx.metrics.count('schema_changes_total', 1, { change: 'add_column' });
        ctx.logger.info({ table: name, column: column.name, type: column.type }, 'added a column to the target table');
      }
      target = await ddl('describing table', () => d.describe(session, name));
      const still = target ? missing.filter((c) => !target!.columns.has(c)) : missing;
      if (!target || still.length > 0) throw new SluiceError('CONFIG_INVALID', `${label}: table ${preview(name)} still lacks ${still.join(', ')} after ALTER TABLE`, { context: { table: name } });
    }

    if (use.keyColumns && use.keyColumns.length > 0 && this.#settings.mode !== 'insert') {
      const wanted = [...use.keyColumns].sort().join('\u0000');
      if (!target.uniqueKeys.some((k) => [...k].sort().join('\u0000') === wanted)) {
        throw new SluiceError('CONFIG_INVALID', `${label}: table ${preview(name)} has no primary key or unique index on exactly (${use.keyColumns.join(', ')}), which upserts match rows by; add one, or map the key with columns.rename`, {
          context: { table: name, key: use.keyColumns },
        });
      }
    }

    if (use.columns) {
      for (const source of use.columns) {
        const column = target.columns.get(source.name);
        if (!column) continue;
        const family = d.targetFamily(source.type, source.pk);
        if (!d.accepts(column, family)) {
          throw new SluiceError(
            'CONFIG_INVALID',
            `${label}: column ${preview(source.name)} of table ${preview(name)} is ${column.typeText} in the target, but the source sends ${source.typeText}, which it cannot hold without loss; alter the target column (e.g. to ${d.targetType(source.type, source.pk)}) and restart`,
            { context: { table: name, column: source.name, targetType: column.typeText, sourceType: source.typeText } },
          );
        }
      }
      this.#checkedSchemas.set(name, schemaText(use.columns));
    }
    this.#tables.set(name, target);
  }

  /** Column definitions for `names`: from the event's column schema, else inferred from a value. */
  #definitions(use: TableUse, names: readonly string[]): ColumnDefinition[] {
    const byName = new Map<string, SourceColumn>((use.columns ?? []).map((c) => [c.name, c]));
    const keys = new Set(use.keyColumns ?? []);
    return names.map((name) => {
      const source = byName.get(name);
      const isKey = keys.has(name) || source?.pk === true;
      const type = source ? source.type : inferPgType(use.written.get(name));
      return { name, type: this.#dialect.targetType(type, isKey), nullable: !isKey && (source ? source.nullable : true) };
    });
  }
}

/** A step of a plan, converted for its dialect: what it runs, and what the metrics count of it. */
interface Prepared<S extends Session> {
  readonly table: string;
  readonly kind: Step['kind'];
  /** Rows written or keys deleted. */
  readonly rows: number;
  readonly run: Statements<S>;
}

/** `batch` without its rows, once they are converted: what the transaction still reads of it. */
function withoutRows(batch: Plan): Plan {
  return { tables: batch.tables, moves: batch.moves, trailingDelete: batch.trailingDelete, steps: () => [] };
}

/** `rows` with the families of `columns` in `target`. */
function rowSet(target: TargetTable, columns: readonly string[], rows: readonly Row[]): RowSet {
  return { columns, families: columns.map((c) => target.columns.get(c)?.family ?? 'other'), rows };
}

/** A change with its own row object, for a plan whose merges must not touch the original. */
function copyChange(change: Change): Change {
  return change.kind === 'upsert' || change.kind === 'insert' ? { ...change, row: { ...change.row } } : change;
}

/** A kept row as the offsets table stores it. */
interface KeptDelete {
  table: string;
  key: Row;
  offset: bigint;
  values: Row;
}

/**
 * JSON for a kept row. The replacer looks at the holder's original value, since JSON.stringify has
 * already turned Buffers and RawJson into plain JSON when the replacer sees them: target values
 * are marked (Buffers as base64), json kept as its exact text, bigints as strings.
 */
function keptReplacer(this: unknown, key: string, value: unknown): unknown {
  const original = (this as Record<string, unknown>)[key];
  if (typeof original === 'bigint') return original.toString();
  if (original instanceof TargetValue) {
    const v = original.value;
    return { $target: Buffer.isBuffer(v) ? { $base64: v.toString('base64') } : v };
  }
  if (original instanceof RawJson) return { $raw: original.text };
  return value;
}

/** The kept row of an offsets row, as the planner takes it; undefined for none or an unreadable one. */
function keptDelete(text: string | null): PreviousDelete | undefined {
  if (text === null) return undefined;
  try {
    const parsed = JSON.parse(text) as { table: string; key: Row; offset: string; values: Record<string, unknown> };
    const values: Row = {};
    for (const [c, v] of Object.entries(parsed.values)) {
      if (v !== null && typeof v === 'object' && '$target' in v) {
        const t = (v as { $target: unknown }).$target;
        values[c] = new TargetValue(t !== null && typeof t === 'object' && '$base64' in t ? Buffer.from(String((t as { $base64: unknown }).$base64), 'base64') : t);
      } else if (v !== null && typeof v === 'object' && '$raw' in v) {
        values[c] = new RawJson(String((v as { $raw: unknown }).$raw));
      } else {
        values[c] = v;
      }
    }
    return { table: parsed.table, key: parsed.key, offset: BigInt(parsed.offset), values };
  } catch {
    return undefined;
  }
}

function schemaText(columns: readonly SourceColumn[]): string {
  return columns.map((c) => `${c.name}\u0000${c.typeText}\u0000${c.pk ? 1 : 0}`).join('\u0001');
}
