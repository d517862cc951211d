/**
 * The file-system steps that make the sink crash-safe: cutting a torn last line, fsyncing a
 * directory after its entries change, and sorting I/O errors into retriable and fatal.
 */
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { RetriableError, SluiceError, type ErrorContext } from '../../core/connector.ts';
import { isCode } from './paths.ts';

const NEWLINE = 0x0a;
const SCAN_CHUNK = 64 * 1024;

/**
 * Truncates the file after its last '\n', removing the part of a line that a crash left behind,
 * and fdatasyncs when it cut anything. `size` is the file's current size. Returns the bytes cut.
 * A file of one torn line becomes empty. The handle must be open for reading and writing.
 */
export async function cutTornTail(handle: FileHandle, size: number): Promise<number> {
  if (size === 0) return 0;
  const buffer = Buffer.allocUnsafe(Math.min(SCAN_CHUNK, size));
  let end = size;
  let keep = 0;
  // Reads backwards: the torn part is at most one line, usually the start of the last batch's write.
  scan: while (end > 0) {
    const start = Math.max(0, end - buffer.length);
    const length = end - start;
    const { bytesRead } = await handle.read(buffer, 0, length, start);
    for (let i = bytesRead - 1; i >= 0; i--) {
      if (buffer[i] === NEWLINE) {
        keep = start + i + 1;
        break scan;
      }
    }
    end = start;
  }
  if (keep === size) return 0;
  await handle.truncate(keep);
  await handle.datasync();
  return size - keep;
}

/**
 * Cuts the torn tail of the file at `file`, if it exists, through a handle of its own. Returns the
 * bytes cut, 0 when the file is whole or absent.
 */
export async function cutTornTailAt(file: string): Promise<number> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r+');
  } catch (err) {
    if (isCode(err, 'ENOENT')) return 0;
    throw err;
  }
  try {
    return await cutTornTail(handle, (await handle.stat()).size);
  } finally {
    await handle.close();
  }
}

/**
 * Fsyncs a directory, which makes a file created or renamed in it survive a machine crash;
 * fdatasync on the file alone persists its data but not its name. Platforms that cannot open a
 * directory for fsync (Windows) skip it.
 */
export async function fsyncDir(dir: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(dir, 'r');
  } catch (err) {
    if (isCode(err, 'EISDIR') || isCode(err, 'EPERM') || isCode(err, 'EACCES')) return;
    throw err;
  }
  try {
    await handle.sync();
  } catch (err) {
    if (!isCode(err, 'EINVAL') && !isCode(err, 'EPERM')) throw err;
  } finally {
    await handle.close();
  }
}

// Conditions that an operator or time may clear while the runtime retries: a full disk being
// cleaned, a quota raised, descriptors released, a flaky device.
const RETRIABLE_CODES: ReadonlySet<string> = new Set(['ENOSPC', 'EDQUOT', 'EMFILE', 'ENFILE', 'EAGAIN', 'EBUSY', 'EIO', 'EINTR', 'ETIMEDOUT', 'ESTALE']);

/**
 * Wraps an I/O failure for the runtime: a {@link RetriableError} for conditions that may clear
 * (ENOSPC, EIO...), else `IO_ERROR` (permissions, a directory where a file should be), which
 * fails the connector under `tolerance: none`. A SluiceError passes through unchanged.
 */
export function sinkError(err: unknown, action: string, context: ErrorContext): SluiceError {
  if (err instanceof SluiceError) return err;
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  const reason = err instanceof Error ? err.message : String(err);
  const message = `${action}: ${reason}`;
  if (typeof code === 'string' && RETRIABLE_CODES.has(code)) return new RetriableError(message, { context, cause: err });
  return new SluiceError('IO_ERROR', message, { context, cause: err });
}
