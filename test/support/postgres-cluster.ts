/**
 * A private, throwaway Postgres cluster for tests that need logical replication. The machine's own
 * Postgres runs with wal_level=replica, and changing it means restarting a server other things may
 * use; a cluster of our own costs under a second (initdb plus start) and is removed afterwards.
 *
 * `initdb` and `pg_ctl` refuse to run as root, so when the tests run as root they run as the
 * `postgres` OS user (runuser), in a temp directory owned by it. The server listens on 127.0.0.1
 * on a free port, with trust authentication, and its socket in the same temp directory.
 *
 * fsync is off: these tests kill sluice, never the machine, and restart Postgres with `pg_ctl
 * restart` (a clean shutdown that writes everything out), so durability across a power loss is
 * not what they exercise, while fsync on doubles the time of the bulk loads on a 2-core VM.
 * synchronous_commit stays on, so a commit is in WAL (and visible to walsenders) when it returns.
 *
 * Failing to start fails every test of the file (see {@link postgresClusterForFile}): under CI=true
 * nothing may be skipped, and outside CI a loud failure is clearer than a skip.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { freePort } from './free-port.ts';

const run = promisify(execFile);

/** Clusters not destroyed yet: stopped when the process exits (a failed or interrupted test file). */
const live = new Map<string, () => void>();
process.once('exit', () => {
  for (const stop of live.values()) stop();
});

export interface PostgresCluster {
  readonly host: string;
  readonly port: number;
  /** The temp directory holding the data directory, the socket and the server log. */
  readonly dir: string;
  /** A connection URL for `database` (default postgres), as the superuser postgres. */
  url(database?: string): string;
  /** Runs one SQL statement (or several, without parameters) on `database`. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[], database?: string): Promise<pg.QueryResult<R>>;
  /** A connected client; the caller ends it. */
  client(database?: string): Promise<pg.Client>;
  /** `pg_ctl restart -m fast`: every connection is dropped, the data stays. */
  restart(): Promise<void>;
  /** Stops the server and removes the directory. Safe to call twice. */
  destroy(): Promise<void>;
  /** The server log, for failure messages. */
  log(): string;
}

/** The newest installed Postgres' bin directory, e.g. /usr/lib/postgresql/15/bin. */
export function postgresBinDir(): string {
  if (process.env['PG_BIN_DIR']) return process.env['PG_BIN_DIR'];
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => /^\d+$/.test(v) && existsSync(path.join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) throw new Error(`no Postgres server found under ${root} (install postgresql, or set PG_BIN_DIR to the directory holding initdb and pg_ctl)`);
  return path.join(root, versions[0]!, 'bin');
}

/** Runs a server binary, as the postgres OS user when we are root. */
async function asPostgres(bin: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  const isRoot = process.getuid?.() === 0;
  const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  try {
    return await run(file, argv, { timeout: 60_000 });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${path.basename(bin)} ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

async function postgresUid(): Promise<{ uid: number; gid: number }> {
  const { stdout: uid } = await run('id', ['-u', 'postgres']);
  const { stdout: gid } = await run('id', ['-g', 'postgres']);
  return { uid: Number(uid.trim()), gid: Number(gid.trim()) };
}

/**
 * Creates and starts a cluster with wal_level=logical. `settings` adds or overrides `-c` server
 * settings (e.g. `{ max_slot_wal_keep_size: '64MB' }`).
 */
export async function startPostgresCluster(settings: Record<string, string> = {}): Promise<PostgresCluster> {
  const bin = postgresBinDir();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-pg-'));
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'server.log');
  let started = false;
  try {
    if (process.getuid?.() === 0) {
      const { uid, gid } = await postgresUid();
      chownSync(dir, uid, gid);
    }
    await asPostgres(path.join(bin, 'initdb'), ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync']);
    const port = await freePort();
    const all: Record<string, string> = {
      wal_level: 'logical',
      port: String(port),
      listen_addresses: '127.0.0.1',
      unix_socket_directories: dir,
      max_replication_slots: '20',
      max_wal_senders: '20',
      max_connections: '100',
      fsync: 'off',
      full_page_writes: 'off',
      shared_buffers: '64MB',
      max_wal_size: '2GB',
      ...settings,
    };
    const options = Object.entries(all)
      .map(([k, v]) => `-c ${k}=${v}`)
      .join(' ');
    const ctl = path.join(bin, 'pg_ctl');
    await asPostgres(ctl, ['-D', dataDir, '-l', logFile, '-w', '-t', '60', '-o', options, 'start']);
    started = true;
    live.set(dir, () => {
      const [file, argv] = process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', ctl, '-D', dataDir, '-m', 'immediate', 'stop']] : [ctl, ['-D', dataDir, '-m', 'immediate', 'stop']];
      try {
        execFileSync(file, argv, { stdio: 'ignore', timeout: 10_000 });
      } catch {
        // Already stopped.
      }
      rmSync(dir, { recursive: true, force: true });
    });
    const host = '127.0.0.1';
    const url = (database = 'postgres'): string => `postgres://postgres@${host}:${port}/${database}`;
    const client = async (database = 'postgres'): Promise<pg.Client> => {
      const c = new pg.Client({ connectionString: url(database) });
      c.on('error', () => {});
      await c.connect();
      return c;
    };
    let destroyed = false;
    return {
      host,
      port,
      dir,
      url,
      client,
      async query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[], database = 'postgres'): Promise<pg.QueryResult<R>> {
        const c = await client(database);
        try {
          return await c.query<R>(sql, params);
        } finally {
          await c.end().catch(() => undefined);
        }
      },
      async restart(): Promise<void> {
        await asPostgres(ctl, ['-D', dataDir, '-l', logFile, '-w', '-t', '60', '-m', 'fast', '-o', options, 'restart']);
      },
      async destroy(): Promise<void> {
        if (destroyed) return;
        destroyed = true;
        live.delete(dir);
        await asPostgres(ctl, ['-D', dataDir, '-w', '-t', '30', '-m', 'immediate', 'stop']).catch(() => undefined);
        rmSync(dir, { recursive: true, force: true });
      },
      log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
    };
  } catch (err) {
    if (started) await asPostgres(path.join(bin, 'pg_ctl'), ['-D', dataDir, '-m', 'immediate', 'stop']).catch(() => undefined);
    const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-2000) : '';
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`could not start a private Postgres cluster for the CDC tests: ${(err as Error).message}${log ? `\nserver log:\n${log}` : ''}`, { cause: err });
  }
}

/**
 * One cluster for a test file: started in `beforeAll`, destroyed in `afterAll`, and assigned to the
 * returned holder's `cluster` before each test. When it cannot start, every test of the file fails
 * with the reason (a failing `beforeAll` alone would report them as skipped).
 */
export function postgresClusterForFile(settings: Record<string, string> = {}): { cluster: PostgresCluster } {
  const holder = {} as { cluster: PostgresCluster };
  let started: PostgresCluster | undefined;
  let failure: Error | undefined;
  beforeAll(async () => {
    try {
      started = await startPostgresCluster(settings);
    } catch (err) {
      failure = err as Error;
    }
  }, 120_000);
  beforeEach(() => {
    if (failure) throw failure;
    holder.cluster = started!;
  });
  afterAll(async () => {
    await started?.destroy();
  });
  return holder;
}
