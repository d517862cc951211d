/**
 * End-to-end crash test of the embedded log: a real child process appends to real files under
 * `fsync: always` and is killed with SIGKILL at a random moment, over and over on one data directory;
 * after every kill the parent recovers the directory and checks it against what the child acknowledged.
 */
import { spawn } from 'node:child_process';
import { crc32c } from '@node-rs/crc32';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { type LogEvent, openLog } from '../core/log/embedded-log.ts';
import { partitionForKey } from '../core/log/partitioner.ts';
import type { LogRecord } from '../core/log/types.ts';
import { CRASH_PARTITIONS, CRASH_TOPIC, crashRecord } from './fixtures/crash-records.ts';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const APPENDER = fileURLToPath(new URL('./fixtures/crash-appender.ts', import.meta.url));
const ROUNDS = 20;

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-crash-test-'));
  dirs.push(dir);
  return dir;
}

/** xorshift32, so a failing run can be replayed from the seed in the failure message. */
function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s % n;
  };
}

interface Acked {
  writer: string;
  seq: number;
  keyed: boolean;
}

interface ChildRun {
  /** Complete lines only: a line the kill cut short (no trailing newline) is dropped. */
  lines: string[];
  signal: NodeJS.Signals | null;
  code: number | null;
  stderr: string;
  killedAfterMs: number;
}

/** Runs the appender and SIGKILLs it `delayMs` after its first acknowledgement. */
function runAndKill(dataDir: string, writer: string, seed: number, delayMs: number): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', APPENDER, dataDir, writer, String(seed)], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let firstAckAt = -1;
    let killedAt = -1;
    const kill = (): void => {
      if (killedAt < 0) killedAt = Date.now();
      child.kill('SIGKILL');
    };
    // Never wait forever for a child that does not start acknowledging.
    const watchdog = setTimeout(kill, 20_000);
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk;
      if (firstAckAt < 0 && /(^|\n)ack /.test(stdout)) {
        firstAckAt = Date.now();
        setTimeout(kill, delayMs);
      }
    });
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    // 'close' fires after the process exited and its pipes are drained: we have every byte it wrote.
    child.on('close', (code, signal) => {
      clearTimeout(watchdog);
      const lines = stdout.split('\n');
      lines.pop(); // the part after the last newline: empty, or a line cut short by the kill
      resolve({ lines, signal, code, stderr, killedAfterMs: firstAckAt < 0 || killedAt < 0 ? -1 : killedAt - firstAckAt });
    });
  });
}

function sameBuffer(actual: Buffer | null, expected: Buffer | null | undefined): boolean {
  if (actual === null || expected == null) return actual === null && expected == null;
  return actual.equals(expected);
}

function sameHeaders(actual: Record<string, Buffer>, expected: Record<string, Buffer> | undefined): boolean {
  const e = expected ?? {};
  const keys = Object.keys(actual);
  if (keys.length !== Object.keys(e).length) return false;
  return keys.every((k) => e[k] !== undefined && actual[k]!.equals(e[k]!));
}

/** Whether `record` is exactly the record `writer` appended as `seq`. */
function isRecordOf(record: LogRecord, writer: string, seq: number, keyed: boolean): boolean {
  const expected = crashRecord(writer, seq, keyed);
  return sameBuffer(record.key, expected.key) && sameBuffer(record.value, expected.value) && sameHeaders(record.headers, expected.headers);
}

/** CRC32C of a record's key and value: cheap to recheck on every round. */
function fingerprint(record: LogRecord): number {
  const keyed = record.key === null ? crc32c('no key') : crc32c(record.key);
  return record.value === null ? keyed : crc32c(record.value, keyed);
}

/** Reads a whole partition, checking offsets are dense from 0; read errors (corruption) propagate. */
async function readAll(log: Awaited<ReturnType<typeof openLog>>, partition: number): Promise<LogRecord[]> {
  expect(await log.offsetFor(CRASH_TOPIC, partition, { kind: 'earliest' })).toBe(0n);
  const end = await log.offsetFor(CRASH_TOPIC, partition, { kind: 'latest' });
  const out: LogRecord[] = [];
  let offset = 0n;
  while (offset < end) {
    const result = await log.read(CRASH_TOPIC, partition, offset);
    if (result.records.length === 0) throw new Error(`partition ${partition}: empty read at ${offset} below the end ${end}`);
    for (const r of result.records) {
      if (r.offset !== BigInt(out.length)) throw new Error(`partition ${partition}: offset ${r.offset} where ${out.length} was expected (offsets must be dense)`);
      out.push(r);
    }
    offset = result.nextOffset;
  }
  expect(out.length).toBe(Number(end));
  return out;
}

describe('crash safety under fsync: always', () => {
  it(`keeps every acknowledged record, exactly, across ${ROUNDS} kill -9 rounds of a busy writer`, async () => {
    // Guarantee: an append acknowledged under `fsync: always` survives kill -9 of the writer at any
    // moment, at the offset it was acknowledged with and with its exact content, and recovery leaves a
    // dense, uncorrupted log that accepts appends again.
    const dataDir = tempDir();
    const seed = (Date.now() ^ (process.pid << 8)) >>> 0;
    const random = rng(seed);
    const context = `seed ${seed}, data dir ${dataDir}`;
    /** Every acknowledgement of every round, by `${partition}:${offset}`. */
    const acked = new Map<string, Acked>();
    let recoveredEvents = 0;
    let maxDelayMs = 0;
    const perRound: number[] = [];
    /** Per partition, the fingerprint of every record verified so far, by offset. */
    const verified: number[][] = Array.from({ length: CRASH_PARTITIONS }, () => []);
    /** The (writer, seq) of every record verified so far: none may be stored twice. */
    const identities = new Set<string>();
    let childMs = 0;
    let verifyMs = 0;

    for (let round = 0; round < ROUNDS; round++) {
      const writer = `r${round}`;
      const delayMs = 50 + random(351);
      maxDelayMs = Math.max(maxDelayMs, delayMs);
      const runStarted = Date.now();
      const run = await runAndKill(dataDir, writer, random(0x7fffffff) + 1, delayMs);
      childMs += Date.now() - runStarted;
      const verifyStarted = Date.now();
      const where = `round ${round} (${context}, kill ${delayMs} ms after the first ack)`;
      if (run.signal !== 'SIGKILL') throw new Error(`${where}: the appender exited by itself (code ${run.code}, signal ${run.signal}): ${run.stderr}`);
      if (run.killedAfterMs < 0) throw new Error(`${where}: the appender never acknowledged anything: ${run.stderr}`);

      let acksThisRound = 0;
      const roundAcks: Array<[string, Acked]> = [];
      for (const line of run.lines) {
        if (line === 'ready') continue;
        const m = /^ack (\d+) (\d+) (\d+) ([KN])$/.exec(line);
        if (!m) throw new Error(`${where}: unexpected appender output ${JSON.stringify(line)}`);
        const key = `${m[1]}:${m[2]}`;
        const ack: Acked = { writer, seq: Number(m[3]), keyed: m[4] === 'K' };
        const previous = acked.get(key);
        if (previous) {
          throw new Error(`${where}: offset ${key} acknowledged twice, to ${previous.writer}/${previous.seq} and then ${writer}/${ack.seq}: an acknowledged record was overwritten`);
        }
        acked.set(key, ack);
        roundAcks.push([key, ack]);
        acksThisRound++;
      }
      perRound.push(acksThisRound);

      // Recovery must not throw, whatever state the kill left the files in.
      const events: LogEvent[] = [];
      const log = await openLog(dataDir, { maintenanceIntervalMs: 0, onEvent: (e) => events.push(e) });
      try {
        recoveredEvents += events.filter((e) => e.type === 'recovered').length;
        const stored: LogRecord[][] = [];
        for (let p = 0; p < CRASH_PARTITIONS; p++) {
          const records = await readAll(log, p);
          stored.push(records);
          const known = verified[p]!;
          // What an earlier round verified was then closed cleanly (fsync'ed): it must all still be
          // there, byte for byte. Checked by fingerprint, to keep rounds cheap as the log grows.
          if (records.length < known.length) throw new Error(`${where}: partition ${p} shrank from ${known.length} to ${records.length} records`);
          for (let i = 0; i < known.length; i++) {
            if (fingerprint(records[i]!) !== known[i]) throw new Error(`${where}: record ${p}:${i}, verified in an earlier round, changed`);
          }
          // Every new record, acknowledged or not, is one the writer really appended, whole, once.
          for (let i = known.length; i < records.length; i++) {
            const r = records[i]!;
            const parsed = JSON.parse(r.value!.toString('utf8')) as { w: string; seq: number };
            const identity = `${parsed.w}/${parsed.seq}`;
            if (!isRecordOf(r, parsed.w, parsed.seq, r.key !== null)) throw new Error(`${where}: record ${p}:${r.offset} (${identity}) does not match what was appended`);
            if (r.key !== null && partitionForKey(r.key, CRASH_PARTITIONS) !== p) throw new Error(`${where}: keyed record ${identity} is in partition ${p}, not its key's`);
            if (identities.has(identity)) throw new Error(`${where}: record ${identity} is stored twice`);
            identities.add(identity);
            known.push(fingerprint(r));
          }
        }
        // Every record acknowledged in this round is where it was acknowledged, exactly. (Those of
        // earlier rounds were checked then, and are covered by the fingerprints since.)
        for (const [key, ack] of roundAcks) {
          const [p, offset] = key.split(':').map(Number) as [number, number];
          const record = stored[p]![offset];
          if (!record) throw new Error(`${where}: acknowledged record ${ack.writer}/${ack.seq} at ${key} is lost (partition end ${stored[p]!.length})`);
          if (!isRecordOf(record, ack.writer, ack.seq, ack.keyed)) {
            throw new Error(`${where}: ${key} holds ${record.value?.toString('utf8').slice(0, 60)}, not the acknowledged ${ack.writer}/${ack.seq}`);
          }
        }
        // The recovered log accepts appends again, at the end, on every partition.
        for (let p = 0; p < CRASH_PARTITIONS; p++) {
          const probe = { ...crashRecord(`probe${round}`, p, false), partition: p };
          const result = await log.append(CRASH_TOPIC, [probe]);
          expect(result.offsetOf(0), where).toBe(BigInt(stored[p]!.length));
          const back = await log.read(CRASH_TOPIC, p, result.offsetOf(0));
          expect(back.records.length, where).toBe(1);
          expect(isRecordOf(back.records[0]!, `probe${round}`, p, false), where).toBe(true);
          identities.add(`probe${round}/${p}`);
          verified[p]!.push(fingerprint(back.records[0]!));
        }
      } finally {
        await log.close();
      }
      verifyMs += Date.now() - verifyStarted;
    }

    // The test must have exercised something: acknowledged appends, in (nearly) every round.
    expect(acked.size).toBeGreaterThan(0);
    expect(perRound.filter((n) => n > 0).length).toBeGreaterThanOrEqual(ROUNDS - 2);
    console.log(
      `crash test: ${ROUNDS} kill -9 rounds, ${acked.size} acknowledged records verified (per round ${perRound.join(' ')}), ` +
        `${recoveredEvents} recovered events, max kill delay ${maxDelayMs} ms; ${childMs} ms in children, ${verifyMs} ms verifying; ${context}`,
    );
  }, 180_000);
});
