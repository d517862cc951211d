/**
 * How topic and group names become JetStream names. Stream and bucket names may not contain `.`
 * and subjects use it as a separator, while topic names may contain both `.` and `-`, so names
 * are hex-encoded: unambiguous, reversible, and valid everywhere NATS takes a token.
 */
import { createHash } from 'node:crypto';

export function hex(s: string): string {
  return Buffer.from(s, 'utf8').toString('hex');
}

export function unhex(s: string): string {
  return Buffer.from(s, 'hex').toString('utf8');
}

/** The subject token of a compacted record: equal keys share it, so the stream keeps only the newest. */
export function keyToken(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 32);
}
