// What the hardware and Node allow without any log: the yardsticks every log case is divided by.
import { closeSync, fdatasyncSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { MiB, deadlineAfter, nowNs, secondsSince } from './common.ts';

export interface RawResult {
  path: string;
  records: number;
  payloadBytes: number;
  fileBytes: number;
  seconds: number;
}

export interface RawWriteOptions {
  payloads: Buffer[];
  records: number;
  /**
   * Records per write+fdatasync, mirroring one group commit of the case being compared; null
   * writes per full MiB and never syncs, which is the most the disk path can take from Node.
   */
  syncEvery: number | null;
  maxSeconds: number;
}

let rawSeq = 0;

/**
 * Length-prefixes the payloads into a preallocated 1 MiB buffer and hands it to writeSync: the
 * cheapest framing that can still be read back, so the gap to it is what the log's own format,
 * bookkeeping and promises cost.
 */
export function rawWrite(dir: string, opts: RawWriteOptions): RawResult {
  // A new file every time, like a new segment: reopening an old one with O_TRUNC makes ext4 flush
  // it on close (auto_da_alloc), a cost neither side should carry.
  const path = join(dir, `raw-write-${rawSeq++}.bin`);
  const fd = openSync(path, 'wx');
  const buf = Buffer.allocUnsafeSlow(MiB);
  const { payloads, syncEvery } = opts;
  const pool = payloads.length;
  const deadline = deadlineAfter(opts.maxSeconds);
  let pos = 0;
  let fileBytes = 0;
  let payloadBytes = 0;
  let n = 0;
  const start = nowNs();
  try {
    // Checking the clock once per MiB or per group keeps it out of the inner loop.
    outer: while (n < opts.records) {
      const groupEnd = syncEvery === null ? opts.records : Math.min(opts.records, n + syncEvery);
      while (n < groupEnd) {
        const value = payloads[n % pool]!;
        const len = value.length;
        if (pos + 4 + len > MiB) {
          writeSync(fd, buf, 0, pos);
          fileBytes += pos;
          pos = 0;
          if (syncEvery === null && nowNs() > deadline) break outer;
        }
        buf.writeUInt32LE(len, pos);
        buf.set(value, pos + 4);
        pos += 4 + len;
        payloadBytes += len;
        n++;
      }
      if (syncEvery !== null) {
        writeSync(fd, buf, 0, pos);
        fileBytes += pos;
        pos = 0;
        fdatasyncSync(fd);
        if (nowNs() > deadline) break;
      }
    }
    if (pos > 0) {
      writeSync(fd, buf, 0, pos);
      fileBytes += pos;
    }
    return { path, records: n, payloadBytes, fileBytes, seconds: secondsSince(start) };
  } finally {
    closeSync(fd);
  }
}

/** Reads the files whole in 1 MiB chunks: what a reader of the same bytes pays before decoding. */
export function rawRead(files: string[]): { bytes: number; seconds: number } {
  const buf = Buffer.allocUnsafeSlow(MiB);
  let bytes = 0;
  const start = nowNs();
  for (const file of files) {
    const fd = openSync(file, 'r');
    try {
      for (;;) {
        const got = readSync(fd, buf, 0, MiB, null);
        if (got === 0) break;
        bytes += got;
      }
    } finally {
      closeSync(fd);
    }
  }
  return { bytes, seconds: secondsSince(start) };
}
