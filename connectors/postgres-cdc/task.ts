/**
 * The postgres-cdc source task: a consistent snapshot, then the slot's changes, acknowledged to
 * Postgres only once they are durable in the log.
 *
 * Offsets. The task has one source partition, `{ slot }`, and two kinds of offsets:
 * - snapshot: `{ system, phase: 'snapshot', lsn, done, table, after, rows }`: the slot's consistent
 *   point, the tables copied completely, the table being copied and the primary key of its last
 *   row read, and the rows copied in all;
 * - stream: `{ system, phase: 'stream', lsn, seq, copied }`: the commit LSN of the record's
 *   transaction and the record's position in it (the ordinal of its pgoutput change message).
 *   Postgres decodes the same WAL into the same messages every time, so (lsn, seq) names one change
 *   across reconnects and restarts; a restart skips every change at or below the stored one, even
 *   inside a transaction that was only partly durable. `copied` (snapshot: initial only) lists the
 *   relation ids of the tables whose rows were copied;
 * - stream_snapshot: `{ system, phase: 'stream_snapshot', lsn, seq, copied, table, oid, after, rows }`:
 *   a row of a table that joined the publication after the snapshot, copied while streaming: the
 *   last change streamed before it, and the table's copy up to this row (`table` null once done).
 *   See "Tables added later" in EVENTS.md.
 * `system` is the cluster's system identifier: offsets of one cluster mean nothing on another.
 *
 * Acknowledging. Postgres is told (standby status update: written = flushed = applied) the end LSN
 * of a transaction once every record polled up to that transaction's commit is durable, which
 * `commit()` reports. Transactions that produced no record (heartbeats, changes to tables left out)
 * are acknowledged as soon as everything before them is durable, and so is the server's WAL end from
 * a keepalive when nothing is in flight, which is what lets the slot advance past other databases'
 * WAL.
 *
 * The snapshot after a crash. The exported snapshot lives only as long as the connection that
 * created the slot, so a restart cannot read the remaining chunks in it. The slot, though, has not
 * moved from its consistent point (nothing is acknowledged before streaming starts). The remaining
 * chunks are read in a new snapshot, newer than the consistent point, and streaming then starts at
 * the consistent point: every change since is streamed after the snapshot rows, so each key's last
 * event in the topic is its row in the table once streaming has caught up. Until then, rows of the
 * resumed tables may show a newer value before older changes of the same row. Tables without a
 * primary key restart their copy from the first row.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import {
  SluiceError,
  parseDuration,
  parseSize,
  type SourceOffset,
  type SourceOffsetEntry,
  type SourcePartition,
  type SourceRecord,
  type SourceTask,
  type SourceTaskContext,
} from '../../core/connector.ts';
import {
  TableFilter,
  type TableRef,
  dropSlot,
  ensurePublication,
  matchingTables,
  publicationTables,
  relationMetadata,
  slotState,
  tablesWithoutIdentity,
  type SlotState,
} from './catalog.ts';
import { ByteWriter } from './bytes.ts';
import { clientConfig, closeClient, connectClient, describeTarget, wrapError } from './connection.ts';
import { MARKER_SCHEMA, MARKER_TABLE, TableShape, markerRecord, record, snapshotSource, streamSourceRest } from './events.ts';
import { formatLsn, maxLsn, parseLsn } from './lsn.ts';
import {
  KEEPALIVE,
  ProtocolError,
  UNCHANGED_TOAST,
  XLOG_DATA,
  XLOG_DATA_HEADER,
  decodeKeepalive,
  decodePgOutput,
  pgTimeToIso,
  pgTimeToMs,
  type DeleteMessage,
  type InsertMessage,
  type LogicalMessage,
  type PgOutputMessage,
  type RelationMessage,
  type TruncateMessage,
  type UpdateMessage,
  type TupleValue,
} from './pgoutput.ts';
import { ReplicationConnection } from './replication.ts';
import type { PostgresCdcConfig } from './schema.ts';
import { type TableCopy, beginSnapshot, openTable, readChunk } from './snapshot.ts';
import { TYPE_QUERY, TypeRegistry, type PgTypeRow } from './types.ts';

/** The prefix of heartbeat messages (pg_logical_emit_message). */
export const HEARTBEAT_PREFIX = 'sluice.heartbeat';

/** The recovery command named in failures that need a new slot and snapshot. */
export function resetCommand(pipeline: string, connector: string): string {
  return `npx sluice cdc reset ${pipeline} ${connector}`;
}

/** The longest a poll waits for changes when there are none, so the runtime regains control. */
const IDLE_POLL_MS = 500;
/** Stop reading the socket past this many buffered bytes; start again below the low mark. */
const QUEUE_HIGH_BYTES = 16 << 20;
const QUEUE_LOW_BYTES = 4 << 20;
/** A status update at least this often, so the server's wal_sender_timeout never ends a paused stream. */
const STATUS_INTERVAL_MS = 10_000;
/** Snapshot progress lines at most this often per table (and always when a table completes). */
const PROGRESS_INTERVAL_MS = 5_000;
/** A repeated warning (lag, failing heartbeats) at most this often. */
const WARN_INTERVAL_MS = 60_000;

/** The source partition of a slot. */
export function partitionOf(slot: string): SourcePartition {
  return { slot };
}

/**
 * A place in the output, for comparing what was emitted with what is durable: snapshot rows
 * (phase 0, by rows copied) come before streamed changes (phase 1, by commit LSN and ordinal).
 */
interface Position {
  readonly phase: 0 | 1;
  readonly lsn: bigint;
  readonly seq: number;
}

function compare(a: Position, b: Position): number {
  if (a.phase !== b.phase) return a.phase - b.phase;
  if (a.lsn !== b.lsn) return a.lsn < b.lsn ? -1 : 1;
  return a.seq - b.seq;
}

const ORIGIN: Position = { phase: 0, lsn: 0n, seq: 0 };

/** A stored offset's position, or null when it is not one of ours. */
function positionOf(offset: SourceOffset): Position | null {
  if (offset.phase === 'snapshot' && typeof offset.rows === 'number') return { phase: 0, lsn: 0n, seq: offset.rows };
  if ((offset.phase === 'stream' || offset.phase === 'stream_snapshot') && typeof offset.lsn === 'string' && typeof offset.seq === 'number') {
    return { phase: 1, lsn: parseLsn(offset.lsn), seq: offset.seq };
  }
  return null;
}

/**
 * Orders two offsets of one slot, for the runtime's restart de-duplication
 * ({@link SourceConnector.compareOffsets}): streamed changes by (commit LSN, ordinal of the change
 * in its transaction). Null for anything else: snapshot rows (numbered by a read that differs
 * between runs), rows of a table copied while streaming, offsets of another cluster, and offsets
 * that are not this connector's. Pure; never throws.
 *
 * Why streamed offsets meet the three requirements:
 * - Postgres sends transactions whole, in commit order, and the ordinal counts every change
 *   message pgoutput sends (whatever `tables` keeps), so offsets never decrease in poll order;
 *   transaction markers take ordinal 0 (BEGIN) and the one after the last change (END).
 * - The records sharing an offset come from one pgoutput message (the delete and insert of a key
 *   change, one truncate of several tables), and `poll` handles each message whole.
 * - The slot decodes the same WAL into the same messages each time, so a re-streamed change gets
 *   the same (LSN, ordinal), and its key comes from the same tuple.
 */
export function compareStreamOffsets(a: SourceOffset, b: SourceOffset): number | null {
  if (a.phase !== 'stream' || b.phase !== 'stream' || a.system !== b.system) return null;
  if (typeof a.seq !== 'number' || typeof b.seq !== 'number' || typeof a.lsn !== 'string' || typeof b.lsn !== 'string') return null;
  if (a.lsn !== b.lsn) {
    const x = lsnOrNull(a.lsn);
    const y = lsnOrNull(b.lsn);
    if (x === null || y === null) return null;
    if (x !== y) return x < y ? -1 : 1;
  }
  return a.seq - b.seq;
}

function lsnOrNull(text: string): bigint | null {
  try {
    return parseLsn(text);
  } catch {
    return null;
  }
}

/** A decoded message waiting for `poll`, or a keepalive. */
type Queued = { readonly walStart: string; readonly msg: PgOutputMessage; readonly size: number } | { readonly walEnd: bigint; readonly size: number };

interface Transaction {
  readonly finalLsn: bigint;
  readonly lsnText: string;
  readonly xid: number;
  readonly commitTs: string;
  readonly commitMs: number;
  /** The end of its events' `source`, after the LSN. */
  readonly sourceRest: Buffer;
  /** Ordinal of the last change message. */
  seq: number;
  /** Events written for it, and per table, for the END marker. */
  events: number;
  readonly tables: Map<string, number>;
}

/** The prefix of the message written after a table copy's consistent point, so an idle stream reaches it. */
export const COPY_PREFIX = 'sluice.copy';

/**
 * A table that joined the publication after the snapshot, copied while streaming: the stream runs
 * up to the copy's consistent point, waits while the table is read in a snapshot taken exactly
 * there, then goes on (EVENTS.md, "Tables added later").
 */
interface AddedCopy {
  readonly ref: TableRef;
  /** Where an earlier attempt or run stopped: the last key read and the rows copied. */
  resume: { after: string[] | null; rows: number } | null;
  /**
   * preparing: getting the snapshot (a temporary slot's exported snapshot, which matches its
   * consistent point exactly); ready: the stream still runs up to the consistent point; copying:
   * the stream waits at the consistent point while chunks are read.
   */
  state: 'preparing' | 'ready' | 'copying';
  /** Transactions that commit at or after this LSN wait for the copy. While preparing, a lower bound of the consistent point. */
  gate: bigint;
  consistentPoint: string | null;
  preparing: Promise<void> | null;
  failure: unknown;
  client: pg.Client | null;
  copy: TableCopy | null;
  cancelled: boolean;
  lastProgressAt: number;
}

interface SnapshotState {
  client: pg.Client;
  /** The slot's consistent point; null for initial_only, which has no slot. */
  readonly lsn: bigint | null;
  readonly lsnText: string | null;
  readonly tables: readonly TableRef[];
  done: string[];
  copy: TableCopy | null;
  /** Where an earlier run stopped inside a table. */
  resume: { table: string; after: string[] | null; rows: number } | null;
  rows: number;
  readonly startedAt: number;
  lastProgressAt: number;
  /** The connection failed: the next poll continues in a new one (and a new snapshot). */
  broken: boolean;
}

/** One slot's changes: snapshot, then streaming, with acknowledgements following durability. */
export class PostgresCdcTask implements SourceTask {
  private readonly pgConfig: pg.ClientConfig;
  private readonly filter: TableFilter;
  private readonly publication: string;
  private readonly partition: SourcePartition;
  private readonly heartbeatMs: number;
  private readonly slotCheckMs: number;
  private readonly maxLagBytes: number;
  private readonly shapeOptions: { database: string; prefix: string; schemaHeader: boolean };

  private ctx: SourceTaskContext | undefined;
  private system: string | null = null;
  private phase: 'snapshot' | 'stream' | 'done' = 'stream';
  private meta: pg.Client | null = null;
  private metaBroken = false;
  private readonly types: TypeRegistry;
  private snapshot: SnapshotState | null = null;

  // Streaming
  private repl: ReplicationConnection | null = null;
  private streamFailure: Error | null = null;
  private startLsn = 0n;
  private queue: Queued[] = [];
  private head = 0;
  private queuedBytes = 0;
  private paused = false;
  private wake: (() => void) | null = null;
  private readonly relations = new Map<number, { signature: string; shape: TableShape | null; identity: number[] }>();
  /** Where streamed events' keys and values are written. */
  private readonly bytes = new ByteWriter();
  private tx: Transaction | null = null;
  private totalOrder = 0;
  /** Stream changes at or below this were emitted before (a restart or reconnect): skipped. */
  private skipTo: Position | null = null;
  private lastEmitted: Position = ORIGIN;
  private durable: Position = ORIGIN;
  private ackPoints: Array<{ needs: Position; endLsn: bigint }> = [];
  /** The LSN reported to Postgres as flushed: never more than what is durable. */
  private acked = 0n;
  private fatal: SluiceError | null = null;

  // Tables that joined the publication after the snapshot (snapshot: initial only)
  /** Relation ids of the captured tables whose rows were copied; null while unknown or when nothing is copied while streaming. */
  private copied: Set<number> | null = null;
  /** `copied` sorted, as stream offsets carry it: replaced (never changed) when `copied` changes, so offsets share it. */
  private copiedList: number[] = [];
  private pendingCopies: Array<{ ref: TableRef; resume: AddedCopy['resume'] }> = [];
  private added: AddedCopy | null = null;

  private timers: NodeJS.Timeout[] = [];
  private heartbeatRunning = false;
  private slotCheckRunning = false;
  private lastWarnAt = new Map<string, number>();

  /** Builds the task. No I/O. */
  constructor(private readonly config: PostgresCdcConfig) {
    this.pgConfig = clientConfig(config);
    this.filter = new TableFilter({ include: config.tables.include ?? ['*.*'], exclude: config.tables.exclude ?? [] });
    this.publication = config.publication ?? config.slot;
    this.partition = partitionOf(config.slot);
    this.heartbeatMs = parseDuration(config.heartbeat_interval);
    this.slotCheckMs = Math.max(1000, parseDuration(config.slot_check_interval));
    this.maxLagBytes = parseSize(config.max_slot_lag_bytes);
    this.shapeOptions = { database: '', prefix: config.topic_prefix, schemaHeader: config.schema_header };
    this.types = new TypeRegistry((oids) => this.lookupTypes(oids));
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle

  /**
   * Connects, checks the slot and the stored offset, and gets ready to snapshot or stream. A
   * RetriableError means Postgres is not reachable (yet); anything else needs the user, e.g. a
   * slot that was invalidated or dropped while offsets say streaming was under way.
   */
  async start(ctx: SourceTaskContext): Promise<void> {
    this.ctx = ctx;
    await this.release();
    this.reset();
    const target = describeTarget(this.config);
    let repl: ReplicationConnection | null = null;
    try {
      const meta = await this.metaClient();
      const db = await meta.query<{ db: string; wal_level: string }>("SELECT current_database() AS db, current_setting('wal_level') AS wal_level");
      const database = db.rows[0]!.db;
      this.shapeOptions.database = database;
      const stored = ctx.committedOffset(this.partition);
      const mode = this.config.snapshot;

      if (mode === 'initial_only') {
        await this.startInitialOnly(stored);
        return;
      }
      if (db.rows[0]!.wal_level !== 'logical') {
        throw new SluiceError('CONFIG_INVALID', `${target} has wal_level=${db.rows[0]!.wal_level}; logical replication needs wal_level=logical (ALTER SYSTEM SET wal_level = logical, then restart Postgres)`, {
          context: { field: 'url', wal_level: db.rows[0]!.wal_level },
        });
      }
      repl = await ReplicationConnection.connect(this.pgConfig);
      const identity = await repl.identifySystem();
      this.system = identity.systemId;
      if (stored && typeof stored.system === 'string' && stored.system !== identity.systemId) {
        throw this.needsReset(`the stored offsets belong to Postgres cluster ${stored.system}, but ${target} is cluster ${identity.systemId}`);
      }
      const publication = await ensurePublication(meta, this.publication, this.filter);
      if (publication.created) ctx.logger.info({ publication: this.publication, tables: publication.tables.length > 0 ? publication.tables : 'all' }, 'created publication');
      const captured = await publicationTables(meta, this.publication, this.filter);
      const unidentified = await tablesWithoutIdentity(meta, captured);
      if (unidentified.length > 0) {
        ctx.logger.warn(
          { tables: unidentified, publication: this.publication },
          `captured tables without a primary key or replica identity: Postgres rejects UPDATE and DELETE on them while they are in publication ${this.publication}; add a primary key or ALTER TABLE ... REPLICA IDENTITY FULL`,
        );
      }
      const slot = await slotState(meta, this.config.slot);
      if (slot) this.checkSlotUsable(slot, database);
      const lost = slot?.walStatus === 'lost';

      if (stored?.phase === 'stream' || stored?.phase === 'stream_snapshot') {
        if (!slot) throw this.needsReset(`replication slot ${this.config.slot} does not exist, but the stored offset says streaming reached ${String(stored.lsn)}: the changes since are gone`);
        if (lost) throw this.lostSlot();
        const position = positionOf(stored)!;
        this.phase = 'stream';
        this.startLsn = position.lsn;
        this.skipTo = position;
        this.durable = this.lastEmitted = position;
        this.acked = slot.confirmedFlush ?? 0n;
        ctx.logger.info({ slot: this.config.slot, lsn: String(stored.lsn), seq: stored.seq, confirmed: formatLsn(this.acked) }, 'resuming streaming');
        if (mode === 'initial') this.planCopies(stored, captured);
      } else if (stored?.phase === 'snapshot' && slot && !lost && typeof stored.lsn === 'string') {
        await this.resumeSnapshot(stored, parseLsn(stored.lsn));
        this.acked = slot.confirmedFlush ?? 0n;
      } else if (mode === 'initial') {
        if (stored?.phase === 'snapshot') ctx.logger.warn({ slot: this.config.slot, wal_status: slot?.walStatus ?? null }, 'the slot of an unfinished snapshot is gone or invalidated; starting the snapshot over');
        if (slot) {
          await dropSlot(meta, this.config.slot);
          ctx.logger.info({ slot: this.config.slot }, 'dropped the existing slot: no offsets are stored, so a new slot and snapshot start together');
        }
        const created = await repl.createSlot(this.config.slot, true);
        const client = await this.connectSnapshotClient(created.snapshotName);
        const tables = await publicationTables(client, this.publication, this.filter);
        this.beginSnapshotState(client, created.consistentPoint, tables, [], null, 0);
        this.acked = created.consistentPoint;
        ctx.logger.info({ slot: this.config.slot, consistent_point: formatLsn(created.consistentPoint), tables: tables.length }, 'created slot; snapshot started');
      } else {
        // snapshot: never, with no offsets (or a snapshot offset without its slot).
        if (slot && lost) {
          await dropSlot(meta, this.config.slot);
          ctx.logger.warn({ slot: this.config.slot }, 'dropped the invalidated slot (snapshot: never, no offsets stored)');
        }
        if (!slot || lost) {
          const created = await repl.createSlot(this.config.slot, false);
          this.startLsn = this.acked = created.consistentPoint;
          ctx.logger.info({ slot: this.config.slot, consistent_point: formatLsn(created.consistentPoint) }, 'created slot; streaming without a snapshot');
        } else {
          this.startLsn = this.acked = slot.confirmedFlush ?? 0n;
          ctx.logger.info({ slot: this.config.slot, confirmed: formatLsn(this.acked) }, 'streaming from the existing slot without a snapshot');
        }
        this.phase = 'stream';
        this.durable = this.lastEmitted = { phase: 1, lsn: 0n, seq: 0 };
      }
    } catch (err) {
      await repl?.close();
      await this.release();
      throw wrapError(err, `postgres-cdc on ${target}`);
    }
    // The exported snapshot is imported by now; streaming opens its own connection.
    await repl?.close();
    this.startTimers();
  }

  /**
   * Returns the next batch: snapshot rows first, then changes. Waits up to half a second for
   * changes. A RetriableError means the connection dropped (the next poll reconnects and resumes
   * from the last change emitted); a CONNECTOR_FAILED error means the slot is gone or invalidated.
   */
  async poll(signal: AbortSignal): Promise<readonly SourceRecord[]> {
    if (this.fatal) throw this.fatal;
    if (this.phase === 'snapshot') return this.pollSnapshot();
    if (this.phase === 'done') {
      await this.waitForData(IDLE_POLL_MS, signal);
      return [];
    }
    return this.pollStream(signal);
  }

  /** Records what is durable and acknowledges every transaction that is now durable in full. */
  async commit(offsets: readonly SourceOffsetEntry[]): Promise<void> {
    for (const { sourcePartition, sourceOffset } of offsets) {
      if (sourcePartition.slot !== this.config.slot) continue;
      const position = positionOf(sourceOffset);
      if (position && compare(position, this.durable) > 0) this.durable = position;
    }
    this.acknowledge();
  }

  /** Reports the acknowledged LSN one last time and closes every connection. */
  async stop(): Promise<void> {
    if (this.repl && this.acked > 0n) this.repl.sendStatus(this.acked);
    await this.release();
  }

  // -------------------------------------------------------------------------------------------
  // Start-up paths

  private reset(): void {
    this.phase = 'stream';
    this.snapshot = null;
    this.streamFailure = null;
    this.queue = [];
    this.head = 0;
    this.queuedBytes = 0;
    this.paused = false;
    this.relations.clear();
    this.tx = null;
    this.skipTo = null;
    this.lastEmitted = this.durable = ORIGIN;
    this.ackPoints = [];
    this.acked = 0n;
    this.fatal = null;
    this.copied = null;
    this.copiedList = [];
    this.pendingCopies = [];
    this.added = null;
  }

  private async startInitialOnly(stored: SourceOffset | undefined): Promise<void> {
    const client = await this.connectSnapshotClient(null);
    const tables = await matchingTables(client, this.filter);
    if (stored?.phase === 'snapshot') {
      this.ctx!.logger.warn({ done: stored.done }, 'resuming an initial_only snapshot in a new snapshot: tables copied before the restart and after it are read at different moments');
      this.beginSnapshotState(client, null, tables, stringArray(stored.done), resumeOf(stored), typeof stored.rows === 'number' ? stored.rows : 0);
    } else {
      this.beginSnapshotState(client, null, tables, [], null, 0);
    }
    this.ctx!.logger.info({ tables: tables.length }, 'initial_only snapshot started');
  }

  private async resumeSnapshot(stored: SourceOffset, lsn: bigint): Promise<void> {
    const client = await this.connectSnapshotClient(null);
    const tables = await publicationTables(client, this.publication, this.filter);
    this.beginSnapshotState(client, lsn, tables, stringArray(stored.done), resumeOf(stored), typeof stored.rows === 'number' ? stored.rows : 0);
    this.ctx!.logger.warn(
      { slot: this.config.slot, consistent_point: formatLsn(lsn), tables_done: stringArray(stored.done).length, table: stored.table ?? null },
      'resuming the snapshot after a restart in a new snapshot: streaming from the consistent point then replays every change since, so each row converges',
    );
  }

  private beginSnapshotState(client: pg.Client, lsn: bigint | null, tables: TableRef[], done: string[], resume: SnapshotState['resume'], rows: number): void {
    this.phase = 'snapshot';
    this.snapshot = {
      client,
      lsn,
      lsnText: lsn === null ? null : formatLsn(lsn),
      tables,
      done,
      copy: null,
      resume,
      rows,
      startedAt: Date.now(),
      lastProgressAt: 0,
      broken: false,
    };
    this.durable = this.lastEmitted = { phase: 0, lsn: 0n, seq: rows };
    if (lsn !== null) this.startLsn = lsn;
  }

  private async connectSnapshotClient(snapshotName: string | null): Promise<pg.Client> {
    const client = await connectClient(this.pgConfig, (err) => this.ctx?.logger.warn({ err }, 'snapshot connection error'));
    try {
      await beginSnapshot(client, snapshotName);
    } catch (err) {
      await closeClient(client);
      throw err;
    }
    return client;
  }

  private checkSlotUsable(slot: SlotState, database: string): void {
    if (slot.slotType !== 'logical' || slot.plugin !== 'pgoutput' || slot.database !== database) {
      throw new SluiceError(
        'CONFIG_INVALID',
        `replication slot ${this.config.slot} exists but is ${slot.slotType}${slot.plugin ? ` with plugin ${slot.plugin}` : ''} on database ${slot.database ?? '(none)'}; ` +
          `postgres-cdc needs a logical pgoutput slot on ${database}: choose another slot name`,
        { context: { field: 'slot', value: this.config.slot } },
      );
    }
  }

  private needsReset(why: string): SluiceError {
    const ctx = this.ctx!;
    return new SluiceError('CONNECTOR_FAILED', `${why}. To start over with a new slot and a new snapshot, stop the pipeline and run: ${resetCommand(ctx.pipeline, ctx.connector)}`, {
      context: { slot: this.config.slot, recovery: resetCommand(ctx.pipeline, ctx.connector) },
    });
  }

  private lostSlot(): SluiceError {
    return this.needsReset(
      `replication slot ${this.config.slot} was invalidated (wal_status = lost): Postgres removed WAL it still needed, past max_slot_wal_keep_size, so changes were lost`,
    );
  }

  // -------------------------------------------------------------------------------------------
  // Snapshot

  private async pollSnapshot(): Promise<SourceRecord[]> {
    const snap = this.snapshot!;
    const logger = this.ctx!.logger;
    if (snap.broken) await this.reopenSnapshot(snap);
    try {
      if (!snap.copy) {
        const next = snap.tables.find((t) => !snap.done.includes(t.id));
        if (!next) {
          await this.finishSnapshot();
          return [];
        }
        const resume = snap.resume?.table === next.id ? snap.resume : null;
        snap.copy = await openTable(snap.client, next, this.types, this.shapeOptions, resume);
        logger.info({ table: next.id, total: snap.copy.total, resumed_after: snap.copy.after, tables_done: snap.done.length, tables: snap.tables.length }, `snapshot of ${next.id} started`);
      }
      const copy = snap.copy;
      const rows = await readChunk(snap.client, copy, this.config.snapshot_chunk_size);
      const records: SourceRecord[] = new Array(rows.length);
      const shape = copy.shape;
      const pk = shape.pkIndexes;
      const source = snapshotSource(snap.lsnText);
      const done = snap.done;
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i]!;
        snap.rows++;
        copy.rows++;
        const after = pk.length > 0 ? pk.map((k) => row[k] as string) : null;
        const offset = { system: this.system, phase: 'snapshot', lsn: snap.lsnText, done, table: copy.ref.id, after, rows: snap.rows, table_rows: copy.rows };
        const value = shape.envelope('r', 'null', shape.row(row), source, '');
        records[i] = record(this.partition, offset, shape, shape.key(row), value, undefined);
      }
      if (rows.length > 0) {
        if (pk.length > 0) copy.after = pk.map((k) => rows[rows.length - 1]![k] as string);
        this.lastEmitted = { phase: 0, lsn: 0n, seq: snap.rows };
        this.ctx!.metrics.count('snapshot_rows', rows.length, { table: copy.ref.id });
      }
      const finished = rows.length < this.config.snapshot_chunk_size;
      if (finished) {
        snap.done = [...snap.done, copy.ref.id];
        if (records.length > 0) {
          const last = records[records.length - 1]!;
          last.sourceOffset = { ...last.sourceOffset, done: snap.done, table: null, after: null };
        }
        snap.copy = null;
        if (snap.resume?.table === copy.ref.id) snap.resume = null;
        logger.info({ table: copy.ref.id, rows: copy.rows, total: copy.total, tables_done: snap.done.length, tables: snap.tables.length }, `snapshot of ${copy.ref.id} complete`);
      } else if (Date.now() - snap.lastProgressAt >= PROGRESS_INTERVAL_MS) {
        snap.lastProgressAt = Date.now();
        logger.info(
          { table: copy.ref.id, rows: copy.rows, total: copy.total, percent: copy.total > 0 ? Math.min(100, Math.round((copy.rows * 100) / copy.total)) : null, tables_done: snap.done.length, tables: snap.tables.length },
          `snapshot of ${copy.ref.id}: ${copy.rows} of ~${copy.total} rows`,
        );
      }
      return records;
    } catch (err) {
      snap.broken = true;
      throw wrapError(err, `snapshot of ${snap.copy?.ref.id ?? 'the next table'}`);
    }
  }

  /**
   * The snapshot connection failed, and its transaction with it: continue where the last chunk
   * ended, in a new snapshot, with the same guarantee as a resume after a restart.
   */
  private async reopenSnapshot(snap: SnapshotState): Promise<void> {
    await closeClient(snap.client, 100);
    snap.client = await this.connectSnapshotClient(null).catch((err: unknown) => {
      throw wrapError(err, 'reconnecting the snapshot');
    });
    snap.broken = false;
    if (snap.copy) {
      snap.copy.cursorOpen = false;
      if (snap.copy.shape.pkIndexes.length === 0) snap.copy.rows = 0;
    }
    this.ctx!.logger.warn({ table: snap.copy?.ref.id ?? null, tables_done: snap.done.length }, 'the snapshot connection failed; continuing after the last chunk in a new snapshot');
  }

  private async finishSnapshot(): Promise<void> {
    const snap = this.snapshot!;
    await snap.client.query('COMMIT').catch(() => undefined);
    await closeClient(snap.client);
    this.ctx!.logger.info({ tables: snap.tables.length, rows: snap.rows, seconds: Math.round((Date.now() - snap.startedAt) / 100) / 10 }, 'snapshot complete');
    this.snapshot = null;
    if (snap.lsn === null) {
      this.phase = 'done';
      this.ctx!.logger.info('initial_only: snapshot done, nothing is streamed');
      return;
    }
    this.phase = 'stream';
    this.startLsn = snap.lsn;
    if (this.config.snapshot === 'initial') this.setCopied(snap.tables.map((t) => t.oid));
  }

  // -------------------------------------------------------------------------------------------
  // Tables added later

  private setCopied(oids: Iterable<number>): void {
    this.copied = new Set(oids);
    this.copiedList = [...this.copied].sort((a, b) => a - b);
  }

  /**
   * On a restart while streaming: the tables copied are those the offset lists and still in the
   * publication (a table that leaves and joins again is copied again); the others are copied now,
   * the one a crash interrupted first, after its last stored key.
   */
  private planCopies(stored: SourceOffset, captured: readonly TableRef[]): void {
    const logger = this.ctx!.logger;
    if (!Array.isArray(stored.copied)) {
      // Offsets from before tables were tracked: what is in the publication now was streamed all along.
      this.setCopied(captured.map((t) => t.oid));
      logger.info({ tables: captured.length }, 'the stored offset lists no copied tables: every table in the publication now counts as copied');
      return;
    }
    const known = new Set(stored.copied.filter((v): v is number => typeof v === 'number'));
    this.setCopied(captured.filter((t) => known.has(t.oid)).map((t) => t.oid));
    const interrupted = stored.phase === 'stream_snapshot' && typeof stored.oid === 'number' ? stored.oid : null;
    const missing = captured.filter((t) => !known.has(t.oid)).sort((a, b) => Number(b.oid === interrupted) - Number(a.oid === interrupted));
    for (const ref of missing) {
      const resume = ref.oid === interrupted ? { after: Array.isArray(stored.after) ? stored.after.map(String) : null, rows: typeof stored.rows === 'number' ? stored.rows : 0 } : null;
      this.pendingCopies.push({ ref, resume });
      logger.info({ table: ref.id, resumed_after: resume?.after ?? null }, resume ? `resuming the copy of ${ref.id} after a restart` : `${ref.id} joined the publication after the snapshot: copying it`);
    }
    this.startNextCopy();
  }

  /** Queues the copy of a captured table whose rows were never copied. */
  private scheduleCopy(ref: TableRef, why: string): void {
    if (!this.copied || this.copied.has(ref.oid) || this.added?.ref.oid === ref.oid || this.pendingCopies.some((p) => p.ref.oid === ref.oid)) return;
    this.pendingCopies.push({ ref, resume: null });
    this.ctx!.logger.info({ table: ref.id, why }, `${ref.id} joined the publication after the snapshot: copying it`);
    this.startNextCopy();
  }

  private startNextCopy(): void {
    if (this.added) return;
    const next = this.pendingCopies.shift();
    if (!next) return;
    const added: AddedCopy = {
      ref: next.ref,
      resume: next.resume,
      state: 'preparing',
      gate: 0n,
      consistentPoint: null,
      preparing: null,
      failure: null,
      client: null,
      copy: null,
      cancelled: false,
      lastProgressAt: Date.now(),
    };
    this.added = added;
    this.prepareCopy(added);
  }

  /**
   * Gets a snapshot that matches an LSN exactly: a temporary slot's exported snapshot, imported
   * into a REPEATABLE READ transaction (the slot goes with its connection once the snapshot is
   * imported). Runs in the background while the stream goes on up to the current WAL position,
   * which the consistent point cannot precede. A failure is thrown by the next poll.
   */
  private prepareCopy(added: AddedCopy): void {
    added.state = 'preparing';
    added.gate = 0n;
    added.failure = null;
    added.preparing = (async () => {
      let repl: ReplicationConnection | null = null;
      let client: pg.Client | null = null;
      try {
        const meta = await this.metaClient();
        const now = await meta.query<{ lsn: string }>('SELECT pg_catalog.pg_current_wal_lsn()::text AS lsn');
        added.gate = parseLsn(now.rows[0]!.lsn);
        repl = await ReplicationConnection.connect(this.pgConfig);
        const created = await repl.createSlot(`sluice_copy_${randomBytes(8).toString('hex')}`, true, true);
        client = await this.connectSnapshotClient(created.snapshotName);
        await repl.close();
        repl = null;
        const copy = await openTable(client, added.ref, this.types, this.shapeOptions, added.resume);
        if (added.cancelled) return;
        if (copy.columns.length === 0) {
          this.abandonCopy(added, 'it no longer exists');
          return;
        }
        added.client = client;
        client = null;
        added.copy = copy;
        added.consistentPoint = formatLsn(created.consistentPoint);
        added.gate = created.consistentPoint;
        added.state = 'ready';
        this.ctx!.logger.info(
          { table: added.ref.id, consistent_point: added.consistentPoint, total: copy.total, resumed_after: copy.after },
          `copy of ${added.ref.id} ready: streaming continues up to ${added.consistentPoint}, then the table is read`,
        );
        await meta.query('SELECT pg_catalog.pg_logical_emit_message(true, $1::text, $2::text)', [COPY_PREFIX, added.ref.id]).catch((err: unknown) => {
          this.warnEvery('copy-message', { err }, `writing the copy message failed (the next change or heartbeat starts the copy): ${(err as Error).message}`);
        });
      } catch (err) {
        if (!added.cancelled) added.failure = err;
      } finally {
        await repl?.close();
        await closeClient(client);
        added.preparing = null;
        this.wake?.();
      }
    })();
  }

  /** Gives up a copy that cannot be done (the table was dropped): the stream goes on, and the next table's copy starts. */
  private abandonCopy(added: AddedCopy, why: string): void {
    this.ctx!.logger.warn({ table: added.ref.id }, `not copying ${added.ref.id}: ${why}`);
    void closeClient(added.client);
    added.client = null;
    if (this.added === added) this.added = null;
    this.startNextCopy();
  }

  /** Reads the next chunk of a table added later, while the stream waits at the copy's consistent point. */
  private async pollCopy(added: AddedCopy): Promise<SourceRecord[]> {
    const copy = added.copy!;
    const client = added.client!;
    const id = added.ref.id;
    const logger = this.ctx!.logger;
    let rows: Array<Array<string | null>>;
    try {
      rows = await readChunk(client, copy, this.config.snapshot_chunk_size);
    } catch (err) {
      added.client = null;
      void closeClient(client, 100);
      if ((err as { code?: string }).code === '42P01') {
        this.abandonCopy(added, 'it was dropped');
        return [];
      }
      // The snapshot ended with its connection: the rest is read in a new one, at a new consistent
      // point, after the last key read (tables without a primary key start over).
      added.resume = copy.shape.pkIndexes.length > 0 ? { after: copy.after, rows: copy.rows } : null;
      added.copy = null;
      added.state = 'preparing';
      added.gate = 0n;
      throw wrapError(err, `copying ${id}, a table that joined the publication after the snapshot`);
    }
    // The offset resumes streaming after the last change emitted, and the copy after the last key.
    const at = this.lastEmitted.phase === 1 ? this.lastEmitted : null;
    const lsn = at ? formatLsn(at.lsn) : '0/0';
    const seq = at ? at.seq : 0;
    const shape = copy.shape;
    const pk = shape.pkIndexes;
    const source = snapshotSource(added.consistentPoint);
    const records: SourceRecord[] = new Array(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i]!;
      copy.rows++;
      const after = pk.length > 0 ? pk.map((k) => row[k] as string) : null;
      const offset = { system: this.system, phase: 'stream_snapshot', lsn, seq, copied: this.copiedList, table: id, oid: added.ref.oid, after, rows: copy.rows };
      records[i] = record(this.partition, offset, shape, shape.key(row), shape.envelope('r', 'null', shape.row(row), source, ''), undefined);
    }
    if (rows.length > 0) {
      if (pk.length > 0) copy.after = pk.map((k) => rows[rows.length - 1]![k] as string);
      this.ctx!.metrics.count('snapshot_rows', rows.length, { table: id });
    }
    if (rows.length < this.config.snapshot_chunk_size) {
      await client.query('COMMIT').catch(() => undefined);
      await closeClient(client);
      added.client = null;
      this.setCopied([...this.copied!, added.ref.oid]);
      if (records.length > 0) {
        const last = records[records.length - 1]!;
        last.sourceOffset = { ...last.sourceOffset, copied: this.copiedList, table: null, oid: null, after: null };
      }
      logger.info({ table: id, rows: copy.rows, total: copy.total, consistent_point: added.consistentPoint }, `snapshot of ${id} complete`);
      this.added = null;
      this.startNextCopy();
    } else if (Date.now() - added.lastProgressAt >= PROGRESS_INTERVAL_MS) {
      added.lastProgressAt = Date.now();
      logger.info(
        { table: id, rows: copy.rows, total: copy.total, percent: copy.total > 0 ? Math.min(100, Math.round((copy.rows * 100) / copy.total)) : null },
        `snapshot of ${id}: ${copy.rows} of ~${copy.total} rows`,
      );
    }
    return records;
  }

  // -------------------------------------------------------------------------------------------
  // Streaming

  private async pollStream(signal: AbortSignal): Promise<SourceRecord[]> {
    const added = this.added;
    if (added) {
      if (added.failure !== null) {
        const failure = added.failure;
        added.failure = null;
        throw wrapError(failure, `preparing the copy of ${added.ref.id}, a table that joined the publication after the snapshot`);
      }
      if (added.state === 'preparing' && !added.preparing) this.prepareCopy(added);
      if (added.state === 'copying') return this.pollCopy(added);
    }
    if (this.head >= this.queue.length) {
      if (this.streamFailure) {
        const failure = this.streamFailure;
        this.streamFailure = null;
        await this.closeStream();
        await this.checkSlotAfterFailure();
        throw wrapError(failure, 'replication stream');
      }
      if (!this.repl) await this.openStream();
      await this.waitForData(IDLE_POLL_MS, signal);
      if (this.fatal) throw this.fatal;
    }
    const records: SourceRecord[] = [];
    const batch = this.config.batch_size;
    let held = false;
    while (this.head < this.queue.length && records.length < batch) {
      const item = this.queue[this.head]!;
      // Read each time: a Relation message in this very poll may have scheduled a copy.
      const copying = this.added;
      if (copying && 'msg' in item && item.msg.tag === 'begin' && item.msg.finalLsn >= copying.gate) {
        // This transaction may not be in the copy's snapshot: it streams after the copied rows.
        if (copying.state === 'ready') copying.state = 'copying';
        held = true;
        break;
      }
      if (!('msg' in item)) {
        this.consume(item);
        this.idleAcknowledge(item.walEnd);
        continue;
      }
      const msg = item.msg;
      if (msg.tag === 'relation') {
        try {
          await this.onRelation(msg);
        } catch (err) {
          // The message stays queued; what this poll built so far is returned first.
          if (records.length > 0) break;
          throw wrapError(err, `reading the catalog for relation ${msg.schema}.${msg.name}`);
        }
        this.consume(item);
        continue;
      }
      this.consume(item);
      this.onMessage(msg, item.walStart, records);
    }
    if (this.head >= this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 4096) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    if (this.paused && this.queuedBytes < QUEUE_LOW_BYTES) {
      this.paused = false;
      this.repl?.resume();
    }
    this.acknowledge();
    const holding = this.added;
    if (held && holding && records.length === 0) {
      if (holding.state === 'copying') return this.pollCopy(holding);
      await abortableWait(holding.preparing, IDLE_POLL_MS, signal);
    }
    return records;
  }

  private consume(item: Queued): void {
    this.head++;
    this.queuedBytes -= item.size;
  }

  private async openStream(): Promise<void> {
    const logger = this.ctx!.logger;
    // Everything emitted so far is either durable or on its way: never emit it twice.
    if (this.lastEmitted.phase === 1 && (this.skipTo === null || compare(this.lastEmitted, this.skipTo) > 0)) this.skipTo = this.lastEmitted;
    const from = this.skipTo?.phase === 1 ? maxLsn(this.startLsn, this.skipTo.lsn) : this.startLsn;
    let repl: ReplicationConnection | null = null;
    try {
      repl = await ReplicationConnection.connect(this.pgConfig);
    } catch (err) {
      throw wrapError(err, `connecting for replication to ${describeTarget(this.config)}`);
    }
    this.repl = repl;
    this.tx = null;
    this.relations.clear();
    const stream = repl;
    repl.startStream(this.config.slot, from, this.publication, {
      onData: (chunk) => this.onData(stream, chunk),
      onEnd: (err) => {
        if (this.repl !== stream) return;
        this.streamFailure = err ?? new Error('the replication stream ended');
        this.wake?.();
      },
    });
    if (this.acked > 0n) repl.sendStatus(this.acked);
    logger.info({ slot: this.config.slot, from: formatLsn(from), acknowledged: formatLsn(this.acked) }, 'streaming');
  }

  private async closeStream(): Promise<void> {
    const repl = this.repl;
    this.repl = null;
    this.paused = false;
    this.tx = null;
    // Undecoded messages are sent again after reconnecting; keeping them would break the order.
    this.queue = [];
    this.head = 0;
    this.queuedBytes = 0;
    await repl?.close();
    this.ctx!.metrics.count('reconnects');
  }

  /** After a stream failure: a lost or dropped slot is fatal (with the recovery command), anything else is retried. */
  private async checkSlotAfterFailure(): Promise<void> {
    let slot: SlotState | null;
    try {
      slot = await slotState(await this.metaClient(), this.config.slot);
    } catch {
      return; // Postgres is down: the stream error is retried.
    }
    if (!slot) this.fatal = this.needsReset(`replication slot ${this.config.slot} was dropped while streaming`);
    else if (slot.walStatus === 'lost') this.fatal = this.lostSlot();
    if (this.fatal) throw this.fatal;
  }

  /** Called synchronously for each CopyData message of the stream. */
  private onData(stream: ReplicationConnection, chunk: Buffer): void {
    if (this.repl !== stream) return;
    const kind = chunk[0];
    if (kind === XLOG_DATA) {
      let msg: PgOutputMessage;
      try {
        // Row changes keep their values as views of the message (RawText), so the message needs
        // bytes of its own: `chunk` is only valid during this call.
        const tag = chunk[XLOG_DATA_HEADER];
        const row = tag === 0x49 || tag === 0x55 || tag === 0x44;
        msg = row ? decodePgOutput(ownCopy(chunk), XLOG_DATA_HEADER, true) : decodePgOutput(chunk, XLOG_DATA_HEADER);
      } catch (err) {
        this.fatal = new SluiceError('CONNECTOR_FAILED', `undecodable pgoutput message: ${(err as Error).message}`, { cause: err });
        this.wake?.();
        return;
      }
      this.queue.push({ walStart: lsnTextAt(chunk, 1), msg, size: chunk.length });
    } else if (kind === KEEPALIVE) {
      const keepalive = decodeKeepalive(chunk);
      // Answered at once with what is durable, whatever is queued, so the server never times out.
      if (keepalive.replyRequested) stream.sendStatus(this.acked);
      this.queue.push({ walEnd: keepalive.walEnd, size: chunk.length });
    } else {
      return;
    }
    this.queuedBytes += chunk.length;
    if (!this.paused && this.queuedBytes > QUEUE_HIGH_BYTES) {
      this.paused = true;
      stream.pause();
    }
    this.wake?.();
  }

  private onMessage(msg: PgOutputMessage, walStart: string, records: SourceRecord[]): void {
    switch (msg.tag) {
      case 'begin': {
        const commitTs = pgTimeToIso(msg.commitTime);
        this.tx = {
          finalLsn: msg.finalLsn,
          lsnText: formatLsn(msg.finalLsn),
          xid: msg.xid,
          commitTs,
          commitMs: pgTimeToMs(msg.commitTime),
          sourceRest: streamSourceRest(msg.xid, commitTs),
          seq: 0,
          events: 0,
          tables: new Map(),
        };
        if (this.config.include_transaction_markers && !this.skipped(0)) {
          const tx = this.tx;
          records.push(markerRecord(this.partition, this.streamOffset(0), this.markerVars(), { status: 'BEGIN', id: tx.xid, lsn: tx.lsnText, commit_ts: tx.commitTs }, tx.commitMs));
          this.emitted(0);
        }
        return;
      }
      case 'commit': {
        const tx = this.requireTx('commit');
        tx.seq++;
        if (this.config.include_transaction_markers && !this.skipped(tx.seq)) {
          const data_collections = [...tx.tables].map(([data_collection, event_count]) => ({ data_collection, event_count }));
          records.push(
            markerRecord(
              this.partition,
              this.streamOffset(tx.seq),
              this.markerVars(),
              { status: 'END', id: tx.xid, lsn: tx.lsnText, commit_ts: tx.commitTs, event_count: tx.events, data_collections },
              tx.commitMs,
            ),
          );
          this.emitted(tx.seq);
        }
        this.ackPoints.push({ needs: this.lastEmitted, endLsn: msg.endLsn });
        this.tx = null;
        return;
      }
      case 'insert':
      case 'update':
      case 'delete':
      case 'truncate':
      case 'message': {
        // A non-transactional logical message (someone else's pg_logical_emit_message(false, ...)) comes outside any transaction.
        if (msg.tag === 'message' && !this.tx) return;
        const tx = this.requireTx(msg.tag);
        tx.seq++;
        if (this.skipped(tx.seq)) return;
        const before = records.length;
        this.changeRecords(msg, walStart, tx, records);
        if (records.length > before) this.emitted(tx.seq);
        return;
      }
      default:
        return; // type, origin: nothing to write
    }
  }

  private requireTx(what: string): Transaction {
    if (!this.tx) throw new ProtocolError(`pgoutput ${what} outside a transaction`);
    return this.tx;
  }

  /** Whether the change with ordinal `seq` of the current transaction was emitted before. */
  private skipped(seq: number): boolean {
    const skip = this.skipTo;
    if (!skip || skip.phase !== 1) return false;
    const lsn = this.tx!.finalLsn;
    return lsn < skip.lsn || (lsn === skip.lsn && seq <= skip.seq);
  }

  private emitted(seq: number): void {
    this.lastEmitted = { phase: 1, lsn: this.tx!.finalLsn, seq };
  }

  private streamOffset(seq: number): SourceOffset {
    if (this.copied === null) return { system: this.system, phase: 'stream', lsn: this.tx!.lsnText, seq };
    return { system: this.system, phase: 'stream', lsn: this.tx!.lsnText, seq, copied: this.copiedList };
  }

  private markerVars(): Readonly<Record<string, string>> {
    return { prefix: this.config.topic_prefix, database: this.shapeOptions.database.replace(/[^A-Za-z0-9_-]/g, '_'), schema: MARKER_SCHEMA, table: MARKER_TABLE };
  }

  private changeRecords(
    msg: InsertMessage | UpdateMessage | DeleteMessage | TruncateMessage | LogicalMessage,
    walStart: string,
    tx: Transaction,
    records: SourceRecord[],
  ): void {
    if (msg.tag === 'message') {
      if (msg.prefix === HEARTBEAT_PREFIX) this.ctx!.metrics.count('heartbeats_received');
      return;
    }
    const offset = this.streamOffset(tx.seq);
    if (msg.tag === 'truncate') {
      for (const id of msg.relationIds) {
        const shape = this.relations.get(id)?.shape;
        if (shape) this.push(records, tx, offset, walStart, shape, 't', null, null, null, null);
      }
      return;
    }
    const relation = this.relations.get(msg.relationId);
    if (!relation) throw new ProtocolError(`pgoutput ${msg.tag} for relation ${msg.relationId} before its Relation message`);
    const shape = relation.shape;
    if (!shape) return;
    const w = this.bytes;
    if (msg.tag === 'insert') {
      this.push(records, tx, offset, walStart, shape, 'c', shape.keyBytes(w, msg.newTuple), null, null, msg.newTuple);
      return;
    }
    if (msg.tag === 'update') {
      const old = msg.oldTuple ?? msg.keyTuple;
      let next = msg.newTuple;
      if (msg.oldTuple) next = fillUnchanged(next, msg.oldTuple);
      // The old row under FULL; under DEFAULT only the identity columns, sent when the key changed.
      const before = msg.oldTuple ?? msg.keyTuple;
      const beforeIndexes = msg.oldTuple ? null : relation.identity;
      if (old && shape.keyIndexes.length > 0 && keyKnown(old, shape.keyIndexes) && !shape.sameKey(old, next)) {
        // A new key: the old key's row is gone and the new key's row is new.
        this.push(records, tx, offset, walStart, shape, 'd', shape.keyBytes(w, old), before, beforeIndexes, null);
        this.push(records, tx, offset, walStart, shape, 'c', shape.keyBytes(w, next), null, null, next);
        return;
      }
      this.push(records, tx, offset, walStart, shape, 'u', shape.keyBytes(w, next), before, beforeIndexes, next);
      return;
    }
    const old = msg.oldTuple ?? msg.keyTuple!;
    this.push(records, tx, offset, walStart, shape, 'd', shape.keyBytes(w, old), old, msg.oldTuple ? null : relation.identity, null);
  }

  private push(
    records: SourceRecord[],
    tx: Transaction,
    offset: SourceOffset,
    lsn: string,
    shape: TableShape,
    op: 'c' | 'u' | 'd' | 't',
    key: Buffer | null,
    before: readonly TupleValue[] | null,
    beforeIndexes: readonly number[] | null,
    after: readonly TupleValue[] | null,
  ): void {
    tx.events++;
    let extra = '';
    if (this.config.include_transaction_markers) {
      tx.tables.set(shape.id, (tx.tables.get(shape.id) ?? 0) + 1);
      extra = `,"transaction":{"id":${tx.xid},"total_order":${++this.totalOrder}}`;
    }
    records.push(record(this.partition, offset, shape, key, shape.envelopeBytes(this.bytes, op, before, beforeIndexes, after, lsn, tx.sourceRest, extra), tx.commitMs));
  }

  /** A Relation message: the table's shape for the changes that follow (first use, and after every schema change). */
  private async onRelation(msg: RelationMessage): Promise<void> {
    const signature = JSON.stringify([msg.schema, msg.name, msg.replicaIdentity, msg.columns]);
    const known = this.relations.get(msg.relationId);
    if (known?.signature === signature) return;
    const identity = msg.columns.flatMap((c, i) => ((c.flags & 1) === 1 ? [i] : []));
    if (!this.filter.matches(msg.schema, msg.name)) {
      this.relations.set(msg.relationId, { signature, shape: null, identity });
      return;
    }
    await this.types.resolve(msg.columns.map((c) => c.typeOid));
    const meta = await relationMetadata(await this.metaClient(), msg.relationId, msg.columns);
    const shape = new TableShape(
      msg.schema,
      msg.name,
      msg.columns.map((c, i) => ({
        name: c.name,
        type: this.types.get(c.typeOid),
        typeName: meta[i]?.typeName ?? String(c.typeOid),
        nullable: !(meta[i]?.notNull ?? false),
        pkPosition: meta[i]?.pkPosition ?? 0,
        identity: (c.flags & 1) === 1,
      })),
      this.shapeOptions,
    );
    if (known?.shape) this.ctx!.logger.info({ table: shape.id, columns: msg.columns.map((c) => c.name) }, `schema of ${shape.id} changed`);
    this.relations.set(msg.relationId, { signature, shape, identity });
    if (this.copied && !this.copied.has(msg.relationId)) {
      this.scheduleCopy({ oid: msg.relationId, schema: msg.schema, table: msg.name, id: shape.id }, 'its first change arrived in the stream');
    }
  }

  // -------------------------------------------------------------------------------------------
  // Acknowledgements

  /** Moves the acknowledged LSN to the end of every transaction whose records are all durable. */
  private acknowledge(): void {
    let acked = this.acked;
    let n = 0;
    while (n < this.ackPoints.length && compare(this.ackPoints[n]!.needs, this.durable) <= 0) {
      acked = maxLsn(acked, this.ackPoints[n]!.endLsn);
      n++;
    }
    if (n > 0) this.ackPoints.splice(0, n);
    this.report(acked);
  }

  /** A keepalive's WAL end, when nothing is in flight: every transaction before it was sent, handled and is durable. */
  private idleAcknowledge(walEnd: bigint): void {
    if (this.tx || this.ackPoints.length > 0 || compare(this.lastEmitted, this.durable) > 0) return;
    this.report(walEnd);
  }

  private report(lsn: bigint): void {
    if (lsn <= this.acked) return;
    this.acked = lsn;
    this.repl?.sendStatus(lsn);
  }

  // -------------------------------------------------------------------------------------------
  // Timers: status updates, heartbeats, slot checks

  private startTimers(): void {
    const every = (ms: number, fn: () => void): void => {
      const timer = setInterval(fn, ms);
      timer.unref();
      this.timers.push(timer);
    };
    every(STATUS_INTERVAL_MS, () => {
      if (this.acked > 0n) this.repl?.sendStatus(this.acked);
    });
    if (this.heartbeatMs > 0 && this.config.snapshot !== 'initial_only') every(this.heartbeatMs, () => void this.heartbeat());
    if (this.config.snapshot !== 'initial_only') every(this.slotCheckMs, () => void this.checkSlot());
  }

  /** A transactional logical message in the captured database: a transaction the slot streams even when the tables are idle. */
  private async heartbeat(): Promise<void> {
    if (this.phase !== 'stream' || !this.repl || this.heartbeatRunning) return;
    this.heartbeatRunning = true;
    try {
      await (await this.metaClient()).query('SELECT pg_catalog.pg_logical_emit_message(true, $1::text, $2::text)', [HEARTBEAT_PREFIX, this.config.slot]);
      this.ctx!.metrics.count('heartbeats_sent');
    } catch (err) {
      this.warnEvery('heartbeat', { err }, `heartbeat failed: ${(err as Error).message}`);
    } finally {
      this.heartbeatRunning = false;
    }
  }

  private async checkSlot(): Promise<void> {
    if (this.slotCheckRunning || this.phase === 'done') return;
    this.slotCheckRunning = true;
    try {
      const meta = await this.metaClient();
      if (this.copied && this.phase === 'stream') {
        for (const table of await publicationTables(meta, this.publication, this.filter)) this.scheduleCopy(table, 'found in the publication');
      }
      const slot = await slotState(meta, this.config.slot);
      if (!slot) return;
      const metrics = this.ctx!.metrics;
      if (slot.retainedBytes !== null) metrics.gauge('retained_wal_bytes', slot.retainedBytes);
      if (slot.lagBytes !== null) metrics.gauge('confirmed_lag_bytes', slot.lagBytes);
      if (slot.walStatus === 'lost') {
        this.fatal = this.lostSlot();
        this.wake?.();
        return;
      }
      if (slot.retainedBytes !== null && slot.retainedBytes > this.maxLagBytes) {
        this.warnEvery(
          'lag',
          { slot: this.config.slot, retained_wal_bytes: slot.retainedBytes, max_slot_lag_bytes: this.maxLagBytes, wal_status: slot.walStatus },
          `replication slot ${this.config.slot} holds back ${slot.retainedBytes} bytes of WAL, more than max_slot_lag_bytes (${this.maxLagBytes})`,
        );
      }
    } catch (err) {
      this.warnEvery('slot-check', { err }, `reading the slot's state failed: ${(err as Error).message}`);
    } finally {
      this.slotCheckRunning = false;
    }
  }

  private warnEvery(kind: string, fields: object, message: string): void {
    const now = Date.now();
    if (now - (this.lastWarnAt.get(kind) ?? 0) < WARN_INTERVAL_MS) return;
    this.lastWarnAt.set(kind, now);
    this.ctx?.logger.warn(fields, message);
  }

  // -------------------------------------------------------------------------------------------
  // Connections

  /** The normal connection for the catalog, heartbeats and slot checks, reconnected after it broke. */
  private async metaClient(): Promise<pg.Client> {
    if (this.meta && !this.metaBroken) return this.meta;
    const old = this.meta;
    this.meta = null;
    void closeClient(old, 100);
    this.metaBroken = false;
    const client = await connectClient(this.pgConfig, () => {
      if (this.meta === client) this.metaBroken = true;
    });
    client.on('end', () => {
      if (this.meta === client) this.metaBroken = true;
    });
    this.meta = client;
    return client;
  }

  private async lookupTypes(oids: number[]): Promise<PgTypeRow[]> {
    const client = this.snapshot?.client ?? (await this.metaClient());
    const result = await client.query<PgTypeRow>(TYPE_QUERY, [oids]);
    return result.rows;
  }

  /** Resolves after `ms`, on new data, on a stream failure, or when `signal` aborts. */
  private waitForData(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted || this.head < this.queue.length || this.streamFailure || this.fatal) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        if (this.wake === done) this.wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      this.wake = done;
    });
  }

  private async release(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    const repl = this.repl;
    this.repl = null;
    const added = this.added;
    if (added) {
      added.cancelled = true;
      await closeClient(added.client);
      added.client = null;
    }
    const snapshot = this.snapshot?.client;
    const meta = this.meta;
    this.meta = null;
    await Promise.all([repl?.close(), closeClient(snapshot), closeClient(meta)]);
  }
}

let lastLsnHigh = -1;
let lastLsnHighText = '';

/** The LSN at `offset` of a buffer (two big-endian 32-bit halves) as Postgres prints it, without a BigInt. */
function lsnTextAt(buf: Buffer, offset: number): string {
  // The high half changes every 4 GiB of WAL: its text is made once, not per message.
  const high = buf.readUInt32BE(offset);
  if (high !== lastLsnHigh) {
    lastLsnHigh = high;
    lastLsnHighText = `${high.toString(16).toUpperCase()}/`;
  }
  return lastLsnHighText + buf.readUInt32BE(offset + 4).toString(16).toUpperCase();
}

/** A copy of `chunk` (Buffer.from(buffer) copies byte by byte in JS; this is one native copy, pooled when small). */
function ownCopy(chunk: Buffer): Buffer {
  const copy = Buffer.allocUnsafe(chunk.length);
  chunk.copy(copy);
  return copy;
}

/** Under REPLICA IDENTITY FULL the old row is complete: it supplies the unchanged TOAST values of the new one. */
function fillUnchanged(next: TupleValue[], old: readonly TupleValue[]): TupleValue[] {
  if (!next.includes(UNCHANGED_TOAST)) return next;
  return next.map((v, i) => (v === UNCHANGED_TOAST && old[i] !== UNCHANGED_TOAST && old[i] !== undefined ? old[i]! : v));
}

/** Whether a key tuple carries every key column (a DEFAULT identity key tuple has only the identity's). */
function keyKnown(tuple: readonly TupleValue[], indexes: readonly number[]): boolean {
  return indexes.every((i) => tuple[i] !== null && tuple[i] !== UNCHANGED_TOAST && tuple[i] !== undefined);
}

/** Resolves when `promise` settles, after `ms`, or when `signal` aborts, whichever is first. */
async function abortableWait(promise: Promise<void> | null, ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const limit = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    onAbort = resolve;
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    await Promise.race([promise ?? limit, limit]);
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort!);
  }
}

function stringArray(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

function resumeOf(stored: SourceOffset): SnapshotState['resume'] {
  if (typeof stored.table !== 'string') return null;
  const after = Array.isArray(stored.after) ? stored.after.map(String) : null;
  return { table: stored.table, after, rows: typeof stored.table_rows === 'number' ? stored.table_rows : 0 };
}
