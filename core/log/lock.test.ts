import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isSluiceError, type SluiceError } from '../errors.ts';
import { type DataDirLock, lockDataDir } from './lock.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const LOCK_MODULE = pathToFileURL(fileURLToPath(new URL('./lock.ts', import.meta.url))).href;

let scratch: string;
let holderScript: string;
const children = new Set<ChildProcess>();
const locks: DataDirLock[] = [];

beforeAll(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-lock-test-'));
  // .mts: the temp dir has no package.json saying "type": "module", and the script uses top-level await.
  holderScript = path.join(scratch, 'holder.mts');
  // The interval keeps the child alive: the lock's server is unref'd on purpose.
  fs.writeFileSync(
    holderScript,
    [
      `import { lockDataDir } from ${JSON.stringify(LOCK_MODULE)};`,
      `await lockDataDir(process.argv[2]!);`,
      `process.stdout.write('locked\\n');`,
      `setInterval(() => {}, 1 << 30);`,
    ].join('\n'),
  );
});

afterEach(async () => {
  for (const child of children) child.kill('SIGKILL');
  await Promise.all([...children].map(waitForExit));
  children.clear();
  await Promise.all(locks.splice(0).map((l) => l.release()));
});

afterAll(() => {
  fs.rmSync(scratch, { recursive: true, force: true });
});

function newDataDir(): string {
  return fs.mkdtempSync(path.join(scratch, 'data-'));
}

async function lock(dir: string): Promise<DataDirLock> {
  const l = await lockDataDir(dir);
  locks.push(l);
  return l;
}

/** Starts a separate node process that takes the lock on `dir`; resolves once it holds it. */
function spawnHolder(dir: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', holderScript, dir], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.includes('locked\n')) resolve(child);
    });
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('exit', (code, signal) => reject(new Error(`holder exited (${code ?? signal}) before locking: ${stderr}`)));
    child.once('error', reject);
  });
}

function waitForExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function expectLocked(dir: string): Promise<SluiceError> {
  const err: unknown = await lockDataDir(dir).then(
    (l) => {
      locks.push(l);
      throw new Error(`expected ${dir} to be locked`);
    },
    (e: unknown) => e,
  );
  expect(isSluiceError(err, 'DATA_DIR_LOCKED')).toBe(true);
  return err as SluiceError;
}

describe('lockDataDir', () => {
  // Pins that a second process opening a held data directory is refused with an error naming the holder.
  it('refuses a directory held by another process and names its pid', async () => {
    const dir = newDataDir();
    const child = await spawnHolder(dir);

    const err = await expectLocked(dir);
    expect(err.message).toContain(`pid ${child.pid}`);
    expect(err.message).toContain(dir);
    expect(err.message).toMatch(/since \d{4}-\d\d-\d\dT/);
    expect(err.context).toEqual({ dir, pid: child.pid });
  });

  // Pins that kill -9 of the holder frees the directory at once, with no stale-lock cleanup or wait.
  it('is free immediately after the holder is SIGKILLed, every time', async () => {
    const dir = newDataDir();
    for (let i = 0; i < 5; i++) {
      const child = await spawnHolder(dir);
      await expectLocked(dir);
      child.kill('SIGKILL');
      await waitForExit(child);
      const l = await lockDataDir(dir);
      await l.release();
    }
  });

  // Pins that release() really frees the directory, including for a second lock in the same process.
  it('can be released and re-acquired in the same process', async () => {
    const dir = newDataDir();
    const first = await lock(dir);
    await expectLocked(dir);
    await first.release();
    await first.release();

    const second = await lock(dir);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'LOCK'), 'utf8'))).toMatchObject({ pid: process.pid });
    await second.release();
    expect(fs.existsSync(path.join(dir, 'LOCK'))).toBe(false);
  });

  // Pins that locks are per directory: holding one never blocks another.
  it('locks different directories independently', async () => {
    const a = newDataDir();
    const b = newDataDir();
    await spawnHolder(a);
    await lock(b);
    await expectLocked(a);
    await expectLocked(b);
  });

  // Pins that the lock follows the directory itself, not the path used to reach it.
  it('treats a symlink to a held directory as the same directory', async () => {
    const dir = newDataDir();
    const link = path.join(scratch, `link-${path.basename(dir)}`);
    fs.symlinkSync(dir, link);
    await lock(dir);
    await expectLocked(link);
  });

  // Pins that a missing or garbled LOCK info file degrades the message, never the lock.
  it('still refuses when the LOCK info file is garbled or missing', async () => {
    const dir = newDataDir();
    await spawnHolder(dir);
    fs.writeFileSync(path.join(dir, 'LOCK'), '{not json');
    expect((await expectLocked(dir)).message).toContain('pid unknown');
    fs.rmSync(path.join(dir, 'LOCK'));
    expect((await expectLocked(dir)).context).toEqual({ dir, pid: null });
  });

  // Pins that a directory that cannot be locked for another reason is reported as IO_ERROR, not as locked.
  it('reports a missing directory as IO_ERROR', async () => {
    const missing = path.join(scratch, 'does-not-exist');
    await expect(lockDataDir(missing)).rejects.toMatchObject({ code: 'IO_ERROR' });
  });
});
