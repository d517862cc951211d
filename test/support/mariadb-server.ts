/**
 * A private, throwaway MariaDB server for tests that restart the database under a running sink.
 * Restarting the machine's own MariaDB would break every other test using it at that moment, so
 * such a test gets a server of its own: `mariadb-install-db` into a temp directory (about 2 s),
 * then the machine's mariadbd on a free port, started and stopped with start-stop-daemon as the
 * machine's service is, but by this server's pid file, so no other mariadbd is touched.
 *
 * Runs as the `mysql` OS user when the tests run as root. Failing to start throws, so `beforeAll`
 * fails every test of the file.
 */
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import mysql2 from 'mysql2/promise';
import { freePort } from './free-port.ts';

const run = promisify(execFile);

const MARIADBD = process.env['MARIADBD'] ?? '/usr/sbin/mariadbd';

export interface MariadbServer {
  readonly port: number;
  readonly dir: string;
  /** A connection URL for `database` as root (no password). */
  url(database: string): string;
  /** A connected admin connection on `database` (default none); the caller ends it. */
  connect(database?: string): Promise<mysql2.Connection>;
  /** Stops the server (start-stop-daemon --stop), waits for it to exit, starts it again and waits until it accepts connections. */
  restart(): Promise<void>;
  /** Stops the server and removes its directory. Safe to call twice. */
  destroy(): Promise<void>;
  /** The server's error log, for failure messages. */
  log(): string;
}

async function userIds(name: string): Promise<{ uid: number; gid: number }> {
  const { stdout } = await run('id', ['-u', name]);
  const { stdout: group } = await run('id', ['-g', name]);
  return { uid: Number(stdout.trim()), gid: Number(group.trim()) };
}

export async function startMariadbServer(): Promise<MariadbServer> {
  if (!existsSync(MARIADBD)) throw new Error(`no MariaDB server at ${MARIADBD} (install mariadb-server, or set MARIADBD)`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-mariadb-'));
  const dataDir = path.join(dir, 'data');
  const pidFile = path.join(dir, 'mariadbd.pid');
  const errorLog = path.join(dir, 'error.log');
  const port = await freePort();
  const isRoot = process.getuid?.() === 0;
  if (isRoot) {
    const { uid, gid } = await userIds('mysql');
    chownSync(dir, uid, gid);
  }
  await run('mariadb-install-db', [...(isRoot ? ['--user=mysql'] : []), `--datadir=${dataDir}`, '--auth-root-authentication-method=normal', '--skip-test-db'], { timeout: 60_000 });
  const args = [
    '--no-defaults',
    ...(isRoot ? ['--user=mysql'] : []),
    `--datadir=${dataDir}`,
    `--port=${port}`,
    '--bind-address=127.0.0.1',
    `--socket=${path.join(dir, 'mariadbd.sock')}`,
    `--pid-file=${pidFile}`,
    `--log-error=${errorLog}`,
    '--skip-log-bin',
    '--innodb-buffer-pool-size=128M',
    '--max-connections=200',
  ];
  const url = (database: string): string => `mysql://root@127.0.0.1:${port}/${database}`;
  const connect = async (database?: string): Promise<mysql2.Connection> => {
    const c = await mysql2.createConnection({ host: '127.0.0.1', port, user: 'root', ...(database ? { database } : {}), supportBigNumbers: true, bigNumberStrings: true, dateStrings: true, timezone: 'Z' });
    c.on('error', () => {});
    return c;
  };
  const waitReady = async (): Promise<void> => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        const c = await connect();
        await c.end();
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`MariaDB on port ${port} did not accept connections: ${(err as Error).message}\n${readLog()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  const readLog = (): string => (existsSync(errorLog) ? readFileSync(errorLog, 'utf8').slice(-4000) : '');
  const startServer = async (): Promise<void> => {
    await run('start-stop-daemon', ['--start', '--oknodo', '--background', '--pidfile', pidFile, '--exec', MARIADBD, '--', ...args], { timeout: 30_000 });
    await waitReady();
  };
  const stopServer = async (): Promise<void> => {
    if (!existsSync(pidFile)) return;
    // --retry TERM/30/KILL/5: SIGTERM, wait up to 30 s for the exit, then SIGKILL.
    await run('start-stop-daemon', ['--stop', '--oknodo', '--pidfile', pidFile, '--exec', MARIADBD, '--retry', 'TERM/30/KILL/5'], { timeout: 60_000 });
  };
  await startServer();
  let destroyed = false;
  return {
    port,
    dir,
    url,
    connect,
    async restart() {
      await stopServer();
      await startServer();
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      await stopServer().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
    log: readLog,
  };
}
