/**
 * A replication connection (`replication=database`) through `pg`: replication commands as simple
 * queries, and the CopyBoth stream of START_REPLICATION driven through `pg`'s Submittable hook.
 *
 * `pg` has no public CopyBoth API, but routes every CopyData message of the active query to its
 * `handleCopyData`, and lets a query be any object with a `submit(connection)` method. So the
 * stream is such an object: it sends START_REPLICATION as a simple query, receives CopyData for as
 * long as the stream lasts, and writes standby status updates back with the connection's
 * `sendCopyFromChunk`. Flow control pauses the socket itself.
 */
import type pg from 'pg';
import { closeClient, connectClient, ident, literal } from './connection.ts';
import { formatLsn, parseLsn } from './lsn.ts';
import { encodeStandbyStatus } from './pgoutput.ts';

/** What IDENTIFY_SYSTEM reports. */
export interface SystemIdentity {
  /** The cluster's unique id: offsets stored for one cluster mean nothing on another. */
  readonly systemId: string;
  readonly timeline: number;
  readonly xlogpos: bigint;
  readonly database: string;
}

/** What CREATE_REPLICATION_SLOT reports. */
export interface CreatedSlot {
  /** Changes committed after this LSN are streamed; the exported snapshot sees everything before. */
  readonly consistentPoint: bigint;
  /** The exported snapshot, valid while this connection runs no other command. */
  readonly snapshotName: string | null;
}

/** Callbacks of a running stream; called synchronously from socket events. */
export interface StreamHandlers {
  /** One CopyData message: XLogData ('w') or a keepalive ('k'). The buffer is only valid during the call. */
  onData(chunk: Buffer): void;
  /** The stream ended: `err` null when it ended on request. Called once. */
  onEnd(err: Error | null): void;
}

interface PgConnection {
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  stream: { pause(): void; resume(): void; destroy(): void };
}

/** A replication-mode connection. Not reusable after {@link close} or after its stream ended with an error. */
export class ReplicationConnection {
  private stream: CopyBothQuery | null = null;
  private closed = false;
  private failure: Error | null = null;

  private constructor(private readonly client: pg.Client) {}

  /** Connects in logical replication mode. `onError` hears socket errors outside any command. */
  static async connect(config: pg.ClientConfig): Promise<ReplicationConnection> {
    let conn: ReplicationConnection | undefined;
    const client = await connectClient({ ...config, replication: 'database' } as pg.ClientConfig, (err) => conn?.onSocketError(err));
    conn = new ReplicationConnection(client);
    return conn;
  }

  private onSocketError(err: Error): void {
    this.failure ??= err;
    this.stream?.fail(err);
  }

  /** The socket error that broke this connection, if any. */
  get error(): Error | null {
    return this.failure;
  }

  async identifySystem(): Promise<SystemIdentity> {
    const result = await this.client.query('IDENTIFY_SYSTEM');
    const row = result.rows[0] as { systemid: string; timeline: string | number; xlogpos: string; dbname: string | null };
    return { systemId: String(row.systemid), timeline: Number(row.timeline), xlogpos: parseLsn(row.xlogpos), database: row.dbname ?? '' };
  }

  /**
   * Creates a logical slot with pgoutput. With `exportSnapshot`, the connection holds the exported
   * snapshot until its next command: keep it idle while the snapshot is read elsewhere. A
   * `temporary` slot is dropped when this connection closes; it serves only to obtain a snapshot
   * that matches an LSN exactly.
   */
  async createSlot(slot: string, exportSnapshot: boolean, temporary = false): Promise<CreatedSlot> {
    const result = await this.client.query(
      `CREATE_REPLICATION_SLOT ${ident(slot)}${temporary ? ' TEMPORARY' : ''} LOGICAL pgoutput ${exportSnapshot ? 'EXPORT_SNAPSHOT' : 'NOEXPORT_SNAPSHOT'}`,
    );
    const row = result.rows[0] as { consistent_point: string; snapshot_name: string | null };
    return { consistentPoint: parseLsn(row.consistent_point), snapshotName: row.snapshot_name ?? null };
  }

  /** Drops a slot; fails when another connection is streaming from it. */
  async dropSlot(slot: string): Promise<void> {
    await this.client.query(`DROP_REPLICATION_SLOT ${ident(slot)}`);
  }

  /**
   * Starts streaming pgoutput protocol 1 changes of `publication` from `startLsn` (Postgres starts at
   * the slot's confirmed position when that is later). Transactional logical messages are included,
   * for heartbeats. Data flows to `handlers` until {@link endStream}, {@link close} or an error.
   */
  startStream(slot: string, startLsn: bigint, publication: string, handlers: StreamHandlers): void {
    if (this.stream) throw new Error('a stream is already running on this connection');
    const text =
      `START_REPLICATION SLOT ${ident(slot)} LOGICAL ${formatLsn(startLsn)} ` +
      `(proto_version '1', publication_names ${literal(ident(publication))}, messages 'true')`;
    this.stream = new CopyBothQuery(text, handlers);
    this.client.query(this.stream as unknown as pg.Submittable);
  }

  /** Sends a standby status update: `lsn` written, flushed and applied. No-op without a running stream. */
  sendStatus(lsn: bigint, replyRequested = false): void {
    const connection = this.connection();
    if (!this.stream?.running || !connection) return;
    connection.sendCopyFromChunk(encodeStandbyStatus(lsn, Date.now(), replyRequested));
  }

  /** Stops reading from the socket: the server blocks once the TCP buffers fill. */
  pause(): void {
    this.connection()?.stream.pause();
  }

  resume(): void {
    this.connection()?.stream.resume();
  }

  /** Ends the copy (CopyDone); the server answers with its own CopyDone and the stream's onEnd(null). */
  endStream(): void {
    const connection = this.connection();
    if (this.stream?.running && connection) {
      this.stream.ending = true;
      connection.endCopyFrom();
    }
  }

  /** Closes the connection (ending a running stream first); never throws. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stream?.finish(null);
    await closeClient(this.client);
  }

  private connection(): PgConnection | null {
    return (this.client as unknown as { connection?: PgConnection }).connection ?? null;
  }
}

/**
 * The START_REPLICATION command as a `pg` Submittable. `pg` calls these handlers for the messages
 * of the active query; a replication stream only ever sees CopyBothResponse (ignored by `pg`),
 * CopyData, then CopyDone, CommandComplete and ReadyForQuery, or an ErrorResponse.
 */
class CopyBothQuery {
  running = true;
  ending = false;
  private done = false;
  /** `pg` sets this to settle the promise `client.query` returned. */
  callback: ((err: Error | null) => void) | undefined;

  constructor(
    private readonly text: string,
    private readonly handlers: StreamHandlers,
  ) {}

  submit(connection: PgConnection): void {
    connection.query(this.text);
  }

  handleCopyData(msg: { chunk: Buffer }): void {
    if (this.done) return;
    this.handlers.onData(msg.chunk);
  }

  handleError(err: Error): void {
    this.fail(err);
    this.callback?.(err);
  }

  fail(err: Error): void {
    this.finish(err);
  }

  finish(err: Error | null): void {
    if (this.done) return;
    this.done = true;
    this.running = false;
    this.handlers.onEnd(err);
  }

  handleReadyForQuery(): void {
    this.finish(this.ending ? null : new Error('the server ended the replication stream'));
    this.callback?.(null);
  }

  handleCommandComplete(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}
}
