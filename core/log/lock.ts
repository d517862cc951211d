/**
 * One process per data directory. Two logs appending to the same segment files interleave bytes
 * and corrupt both, so the second opener must fail fast with an error that says who holds the
 * directory, and a crashed holder must never leave the directory locked.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { SluiceError } from '../errors.ts';

/** An acquired data-directory lock, held until {@link DataDirLock.release} or process exit. */
export interface DataDirLock {
  readonly dir: string;
  /** Releases the lock so another process may open the directory. Idempotent; never throws. */
  release(): Promise<void>;
}

interface LockInfo {
  pid: number;
  hostname: string;
  startedAt: string;
}

const LOCK_FILE = 'LOCK';

/**
 * Takes the exclusive lock on `dir`. Called by the embedded log when it opens a data directory,
 * before it reads or writes anything in it; the log releases it in `close()`.
 *
 * Throws `DATA_DIR_LOCKED` when another process (or another open log in this process) holds the
 * directory: the caller should surface the message, which names the holder's pid, and not retry.
 * Throws `IO_ERROR` when `dir` cannot be inspected or the lock cannot be set up (e.g. the directory
 * does not exist).
 */
export async function lockDataDir(dir: string): Promise<DataDirLock> {
  const absDir = path.resolve(dir);
  return process.platform === 'linux' ? lockWithAbstractSocket(absDir) : lockWithPidFile(absDir);
}

/**
 * A bound socket is owned by the kernel, which unbinds it the moment the process dies however it
 * dies (kill -9, OOM killer), so a restart right after a crash never finds a stale lock and there
 * is nothing to clean up. The abstract namespace (leading NUL) has no file on disk, so nothing is
 * left behind either. Naming it by device and inode rather than by path makes symlinks, bind mounts
 * and relative paths to the same directory collide, as they must.
 *
 * Limits: abstract names are per network namespace, so two containers with separate network
 * namespaces sharing a volume do not see each other's lock; and any local user can squat the name.
 * libuv opens sockets with CLOEXEC, so connector processes we spawn do not inherit (and prolong)
 * the lock.
 */
async function lockWithAbstractSocket(dir: string): Promise<DataDirLock> {
  let stat: fs.BigIntStats;
  try {
    // bigint: inode numbers on XFS/btrfs can exceed 2^53, and a rounded inode could collide.
    stat = await fsp.stat(dir, { bigint: true });
  } catch (err) {
    throw ioError(dir, `cannot stat data directory ${dir}`, err);
  }
  if (!stat.isDirectory()) {
    throw new SluiceError('IO_ERROR', `data directory ${dir} is not a directory`, { context: { dir } });
  }

  const server = net.createServer((socket) => socket.destroy());
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(`\0sluice-lock-${stat.dev}-${stat.ino}`, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw await lockedError(dir);
    throw ioError(dir, `cannot create the lock socket for data directory ${dir}`, err);
  }
  // The lock must never be the only thing keeping a process alive, e.g. after a CLI command that
  // forgot to close its log.
  server.unref();

  try {
    await writeLockInfo(dir);
  } catch (err) {
    await closeServer(server);
    throw ioError(dir, `cannot write ${path.join(dir, LOCK_FILE)}`, err);
  }

  let released = false;
  return {
    dir,
    async release() {
      if (released) return;
      released = true;
      // Remove the info file while still holding the lock, so it can never delete the next holder's.
      await fsp.rm(path.join(dir, LOCK_FILE), { force: true }).catch(() => undefined);
      await closeServer(server);
    },
  };
}

/**
 * Fallback for macOS, Windows and the BSDs, which have no abstract sockets. Weaker than the socket
 * lock: after a crash the pid in the file may have been reused by an unrelated process, which makes
 * the stale lock look live until someone deletes LOCK by hand; two processes that find the same
 * stale file at once can both remove it and race to recreate it; and liveness cannot be checked
 * for a holder on another host sharing the directory over a network filesystem, so that is
 * treated as held.
 */
async function lockWithPidFile(dir: string): Promise<DataDirLock> {
  const file = path.join(dir, LOCK_FILE);
  const info = currentInfo();
  for (let attempt = 0; ; attempt++) {
    try {
      await fsp.writeFile(file, JSON.stringify(info), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError(dir, `cannot create ${file}`, err);
    }
    const holder = await readLockInfo(dir);
    const stale = holder !== null && holder.hostname === info.hostname && !isAlive(holder.pid);
    if (!stale || attempt > 0) throw await lockedError(dir);
    await fsp.rm(file, { force: true });
  }

  let released = false;
  return {
    dir,
    async release() {
      if (released) return;
      released = true;
      await fsp.rm(file, { force: true }).catch(() => undefined);
    },
  };
}

function currentInfo(): LockInfo {
  return { pid: process.pid, hostname: os.hostname(), startedAt: new Date().toISOString() };
}

/** Write-then-rename so that a conflicting opener reading LOCK never sees a half-written file. */
async function writeLockInfo(dir: string): Promise<void> {
  const tmp = path.join(dir, `${LOCK_FILE}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await fsp.writeFile(tmp, JSON.stringify(currentInfo()) + '\n');
    await fsp.rename(tmp, path.join(dir, LOCK_FILE));
  } catch (err) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/**
 * Null when LOCK is missing or unreadable: the holder may not have written it yet, or may be
 * something other than sluice squatting the socket name. The lock itself never depends on it.
 */
async function readLockInfo(dir: string): Promise<LockInfo | null> {
  try {
    const parsed: unknown = JSON.parse(await fsp.readFile(path.join(dir, LOCK_FILE), 'utf8'));
    if (typeof parsed !== 'object' || parsed === null) return null;
    const { pid, hostname, startedAt } = parsed as Record<string, unknown>;
    if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0) return null;
    return {
      pid,
      hostname: typeof hostname === 'string' ? hostname : '',
      startedAt: typeof startedAt === 'string' ? startedAt : 'unknown time',
    };
  } catch {
    return null;
  }
}

async function lockedError(dir: string): Promise<SluiceError> {
  const holder = await readLockInfo(dir);
  const who = holder === null ? 'pid unknown' : `pid ${holder.pid}, since ${holder.startedAt}`;
  return new SluiceError(
    'DATA_DIR_LOCKED',
    `data directory ${dir} is locked by another sluice process (${who}); stop it first`,
    { context: { dir, pid: holder?.pid ?? null } },
  );
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function ioError(dir: string, what: string, cause: unknown): SluiceError {
  const detail = cause instanceof Error ? `: ${cause.message}` : '';
  return new SluiceError('IO_ERROR', `${what}${detail}`, { context: { dir }, cause });
}
