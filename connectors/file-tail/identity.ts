/**
 * File identity and checkpoints.
 *
 * A file is identified by `<dev>:<ino>:<length>:<hash>`: its device and inode, and a fingerprint,
 * the SHA-256 (first 64 bits) of its first `length` bytes. `length` is {@link FINGERPRINT_BYTES},
 * or the whole file when it was shorter when first read; the prefix of a file never changes while it
 * grows, so the identity stays the same, and storing the length lets a restart hash exactly the
 * bytes the identity was made from. A rename keeps device, inode and content, hence the identity;
 * a new file reusing a freed inode has other first bytes, hence another identity. An empty file has
 * no identity until its first byte arrives.
 *
 * The checkpoint of a file is its source offset: `{ position, path }`, where position is the byte
 * after the last record emitted, plus on the last record of each batch `tail` (the hash of up to
 * {@link TAIL_BYTES} bytes before position) and `time` (when the batch was read). `tail` recognises
 * a copy of the file (copytruncate) after a restart; `time` tells `start_at: end` whether a file
 * changed since.
 */
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import type { JsonValue, SourceOffset } from '../../core/connector.ts';

/** How many leading bytes the fingerprint covers. */
export const FINGERPRINT_BYTES = 256;

/** How many bytes before a position the tail hash covers. */
export const TAIL_BYTES = 256;

/** The parts of an identity. */
export interface Identity {
  /** Decimal, since 64-bit device and inode numbers do not fit a double. */
  readonly dev: string;
  readonly ino: string;
  /** Bytes the fingerprint covers: FINGERPRINT_BYTES, or fewer for a file that was shorter when first read. */
  readonly length: number;
  readonly hash: string;
}

/** A 16-hex-digit SHA-256 prefix: enough to tell files apart, short enough for offset keys. */
export function shortHash(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}

export function formatIdentity(id: Identity): string {
  return `${id.dev}:${id.ino}:${id.length}:${id.hash}`;
}

/** Parses an identity string, or returns undefined for anything else (an offset of another connector version). */
export function parseIdentity(text: unknown): Identity | undefined {
  if (typeof text !== 'string') return undefined;
  const match = /^(\d+):(\d+):(\d+):([0-9a-f]{16})$/.exec(text);
  if (!match) return undefined;
  return { dev: match[1]!, ino: match[2]!, length: Number(match[3]), hash: match[4]! };
}

/** Reads up to `length` bytes at `position`; fewer when the file is shorter. */
export async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled === length ? buffer : buffer.subarray(0, filled);
}

/** The fingerprint hash of the first `length` bytes, or undefined when the file holds fewer. */
export async function fingerprintOf(handle: FileHandle, length: number): Promise<string | undefined> {
  const bytes = await readAt(handle, 0, length);
  return bytes.length === length ? shortHash(bytes) : undefined;
}

/** The hash of the bytes before `position` (up to TAIL_BYTES), or undefined when the file is shorter than position. */
export async function tailOf(handle: FileHandle, position: number): Promise<string | undefined> {
  const length = Math.min(position, TAIL_BYTES);
  const bytes = await readAt(handle, position - length, length);
  return bytes.length === length ? shortHash(bytes) : undefined;
}

/** A checkpoint as stored in a source offset. */
export interface Checkpoint {
  readonly position: number;
  readonly path: string;
  /** The position is inside a line being cut at max_line_bytes. */
  readonly cut?: boolean;
  readonly tail?: string;
  readonly time?: number;
}

/** Reads a source offset of this connector, or undefined when it is not one. */
export function parseCheckpoint(offset: SourceOffset | undefined): Checkpoint | undefined {
  if (!offset) return undefined;
  const { position, path, cut, tail, time } = offset as Record<string, JsonValue | undefined>;
  if (typeof position !== 'number' || !Number.isSafeInteger(position) || position < 0 || typeof path !== 'string') return undefined;
  return {
    position,
    path,
    ...(cut === true ? { cut } : {}),
    ...(typeof tail === 'string' ? { tail } : {}),
    ...(typeof time === 'number' ? { time } : {}),
  };
}
