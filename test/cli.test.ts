/**
 * End-to-end tests of the `sluice` CLI: every command runs as a child process through the real
 * bin, against a real data directory in a fresh temp dir.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { openLog } from '../core/log/embedded-log.ts';
import { partitionForKey } from '../core/log/partitioner.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = path.join(ROOT, 'core/cli/bin.js');

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface ConsumedRecord {
  topic: string;
  partition: number;
  offset: number;
  timestamp: number;
  key: string | null;
  value: unknown;
  headers: Record<string, string>;
}

const dirs: string[] = [];

afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function tempDataDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-cli-'));
  dirs.push(dir);
  return path.join(dir, 'data');
}

function sluice(args: string[], input?: string): Promise<RunResult> {
  const env = { ...process.env };
  delete env['SLUICE_DATA_DIR'];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

/** Runs a command that must succeed, failing the test with its stderr otherwise. */
async function ok(args: string[], input?: string): Promise<RunResult> {
  const result = await sluice(args, input);
  if (result.code !== 0) throw new Error(`sluice ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result;
}

function records(stdout: string): ConsumedRecord[] {
  return stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as ConsumedRecord);
}

function jsonLines(values: unknown[]): string {
  return values.map((v) => JSON.stringify(v)).join('\n') + '\n';
}

function expectOneLineError(result: RunResult, pattern: RegExp): void {
  expect(result.code).not.toBe(0);
  const lines = result.stderr.split('\n').filter((line) => line.startsWith('sluice: '));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(result.stderr).not.toMatch(/^\s+at /m);
}

interface GroupStatusJson {
  topic: string;
  partition: number;
  committed: number | null;
  endOffset: number;
  lag: number;
}

async function totalLag(dataDir: string, group: string): Promise<number> {
  const { stdout } = await ok(['groups', 'describe', group, '--json', '--data-dir', dataDir]);
  return (JSON.parse(stdout) as GroupStatusJson[]).reduce((sum, s) => sum + s.lag, 0);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('sluice CLI', () => {
  it('prints help with examples for the program and for each command', async () => {
    // Guarantees `--help` exits 0 and documents commands with an example, at every level.
    const top = await ok(['--help']);
    for (const command of ['topics', 'produce', 'consume', 'groups', 'demo']) expect(top.stdout).toContain(command);
    const create = await ok(['topics', 'create', '--help']);
    expect(create.stdout).toContain('--partitions');
    expect(create.stdout).toContain('--data-dir');
    expect(create.stdout).toMatch(/Example/);
    const consume = await ok(['consume', '--help']);
    expect(consume.stdout).toContain('--from-beginning');
  });

  it('creates, lists and describes topics, and rejects a bad flag value with one line', async () => {
    // Guarantees topic admin round-trips through the data dir and a bad value is a usage error, not a trace.
    const dataDir = await tempDataDir();
    const created = await ok(['topics', 'create', 'orders', '--partitions', '3', '--retention-ms', '3600000', '--data-dir', dataDir]);
    expect(created.stdout).toMatch(/created topic orders: 3 partitions/);

    const list = await ok(['topics', 'list', '--data-dir', dataDir]);
    expect(list.stdout).toMatch(/^orders\s+3\s+delete\s+0\s/m);

    await ok(['produce', 'orders', '--data-dir', dataDir], jsonLines([{ n: 1 }, { n: 2 }]));
    const described = await ok(['topics', 'describe', 'orders', '--data-dir', dataDir]);
    expect(described.stdout).toMatch(/PARTITION\s+START\s+END\s+RECORDS\s+SEGMENTS\s+SIZE/);
    expect(described.stdout).toMatch(/retention\s+1h/);
    const json = JSON.parse((await ok(['topics', 'describe', 'orders', '--json', '--data-dir', dataDir])).stdout) as {
      config: { partitions: number; retentionMs: number };
      partitions: Array<{ startOffset: number; endOffset: number; sizeBytes: number }>;
    };
    expect(json.config).toMatchObject({ partitions: 3, retentionMs: 3_600_000 });
    expect(json.partitions).toHaveLength(3);
    expect(json.partitions.reduce((sum, p) => sum + p.endOffset - p.startOffset, 0)).toBe(2);
    expect(json.partitions.some((p) => p.sizeBytes > 0)).toBe(true);

    expectOneLineError(await sluice(['topics', 'create', 'bad', '--partitions', 'abc', '--data-dir', dataDir]), /partitions.*abc/);
  });

  it('produces keyed JSON lines and consumes them back from the beginning on murmur2 partitions', async () => {
    // Guarantees a line round-trips as key + value, and one key always lands on Kafka's partition for it.
    const dataDir = await tempDataDir();
    await ok(['topics', 'create', 'orders', '--partitions', '4', '--data-dir', dataDir]);
    const input = Array.from({ length: 40 }, (_, i) => ({ id: i, customer: `c${i % 7}`, total: i * 1.5 }));
    const produced = await ok(
      ['produce', 'orders', '--key-field', 'customer', '--data-dir', dataDir],
      jsonLines(input.slice(0, 20)) + '\n   \n' + jsonLines(input.slice(20)),
    );
    expect(produced.stderr).toContain('produced 40 records to orders (acknowledged)');

    const latest = await ok(['consume', 'orders', '--data-dir', dataDir]);
    expect(records(latest.stdout)).toHaveLength(0);

    const out = records((await ok(['consume', 'orders', '--from-beginning', '--data-dir', dataDir])).stdout);
    expect(out).toHaveLength(40);
    expect(out.map((r) => r.value).sort((a, b) => (a as { id: number }).id - (b as { id: number }).id)).toEqual(input);
    const partitionsByKey = new Map<string, Set<number>>();
    for (const r of out) {
      expect(r).toMatchObject({ topic: 'orders', headers: {} });
      expect(typeof r.offset).toBe('number');
      expect(r.key).toBe((r.value as { customer: string }).customer);
      expect(r.partition).toBe(partitionForKey(Buffer.from(r.key ?? ''), 4));
      partitionsByKey.set(r.key ?? '', (partitionsByKey.get(r.key ?? '') ?? new Set()).add(r.partition));
    }
    for (const partitions of partitionsByKey.values()) expect(partitions.size).toBe(1);
  });

  it('continues a consumer group across runs, reports its lag, and replays after a reset', async () => {
    // Guarantees --group commits exactly what it printed, so runs resume, lag is exact, and reset rewinds.
    const dataDir = await tempDataDir();
    await ok(['topics', 'create', 'events', '--partitions', '2', '--data-dir', dataDir]);
    await ok(['produce', 'events', '--key-field', 'k', '--data-dir', dataDir], jsonLines(Array.from({ length: 10 }, (_, i) => ({ k: `k${i}`, i }))));

    const first = records((await ok(['consume', 'events', '--group', 'g', '--max', '4', '--data-dir', dataDir])).stdout);
    expect(first).toHaveLength(4);
    const second = records((await ok(['consume', 'events', '--group', 'g', '--data-dir', dataDir])).stdout);
    expect(second).toHaveLength(6);
    const seen = [...first, ...second].map((r) => (r.value as { i: number }).i).sort((a, b) => a - b);
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);

    expect((await ok(['groups', 'list', '--data-dir', dataDir])).stdout).toMatch(/^g$/m);
    expect(await totalLag(dataDir, 'g')).toBe(0);
    await ok(['produce', 'events', '--key-field', 'k', '--data-dir', dataDir], jsonLines(Array.from({ length: 5 }, (_, i) => ({ k: `n${i}`, i: 10 + i }))));
    expect(await totalLag(dataDir, 'g')).toBe(5);
    expect((await ok(['groups', 'describe', 'g', '--data-dir', dataDir])).stdout).toMatch(/total lag 5/);

    await ok(['groups', 'reset', 'g', '--topic', 'events', '--to-earliest', '--data-dir', dataDir]);
    const replay = records((await ok(['consume', 'events', '--group', 'g', '--data-dir', dataDir])).stdout);
    expect(replay).toHaveLength(15);
    expect(await totalLag(dataDir, 'g')).toBe(0);
  });

  it('starts reading at a timestamp or at an explicit partition offset', async () => {
    // Guarantees --from-timestamp and --offset P:O position the read exactly, without a group.
    const dataDir = await tempDataDir();
    await ok(['topics', 'create', 'ticks', '--partitions', '1', '--data-dir', dataDir]);
    await ok(['produce', 'ticks', '--data-dir', dataDir], jsonLines([0, 1, 2, 3, 4].map((n) => ({ n }))));
    await sleep(30);
    const cutoff = new Date().toISOString();
    await sleep(30);
    await ok(['produce', 'ticks', '--data-dir', dataDir], jsonLines([5, 6, 7].map((n) => ({ n }))));

    const since = records((await ok(['consume', 'ticks', '--from-timestamp', cutoff, '--data-dir', dataDir])).stdout);
    expect(since.map((r) => r.offset)).toEqual([5, 6, 7]);
    expect(since.map((r) => r.value)).toEqual([{ n: 5 }, { n: 6 }, { n: 7 }]);

    const fromOffset = records((await ok(['consume', 'ticks', '--offset', '0:6', '--data-dir', dataDir])).stdout);
    expect(fromOffset.map((r) => r.offset)).toEqual([6, 7]);
    expectOneLineError(await sluice(['consume', 'ticks', '--offset', '3:0', '--data-dir', dataDir]), /partition 3/);
  });

  it('stops at a bad JSON line with its line number after acknowledging the lines before it', async () => {
    // Guarantees a bad line fails the command with `stdin:LINE` while earlier lines are stored and reported.
    const dataDir = await tempDataDir();
    await ok(['topics', 'create', 'orders', '--partitions', '2', '--data-dir', dataDir]);
    const result = await sluice(['produce', 'orders', '--data-dir', dataDir], '{"a":1}\n{"a":2}\n\n{bad json\n{"a":5}\n');
    expectOneLineError(result, /^sluice: stdin:4: invalid JSON: /);
    expect(result.stderr).toContain('produced 2 records to orders (acknowledged)');
    const stored = records((await ok(['consume', 'orders', '--from-beginning', '--data-dir', dataDir])).stdout);
    expect(stored.map((r) => r.value).sort((a, b) => (a as { a: number }).a - (b as { a: number }).a)).toEqual([{ a: 1 }, { a: 2 }]);
  });

  it('reports an unknown topic as one line and a non-zero exit', async () => {
    // Guarantees TOPIC_NOT_FOUND reaches the user as a message naming the topic, not a stack trace.
    const dataDir = await tempDataDir();
    await ok(['topics', 'create', 'orders', '--partitions', '1', '--data-dir', dataDir]);
    expectOneLineError(await sluice(['consume', 'nope', '--from-beginning', '--data-dir', dataDir]), /nope/);
    expectOneLineError(await sluice(['produce', 'nope', '--data-dir', dataDir], '{"a":1}\n'), /nope/);
    expectOneLineError(await sluice(['topics', 'describe', 'nope', '--data-dir', dataDir]), /nope/);
  });

  it('refuses to write to a locked data dir but still reads it read-only', async () => {
    // Guarantees a second writer gets a one-line "locked" error while inspection commands keep working.
    const dataDir = await tempDataDir();
    await ok(['topics', 'create', 'orders', '--partitions', '2', '--data-dir', dataDir]);
    await ok(['produce', 'orders', '--data-dir', dataDir], jsonLines([{ a: 1 }, { a: 2 }, { a: 3 }]));
    const holder = await openLog(dataDir);
    try {
      expectOneLineError(await sluice(['produce', 'orders', '--data-dir', dataDir], '{"a":4}\n'), /locked/i);
      expectOneLineError(await sluice(['consume', 'orders', '--group', 'g', '--data-dir', dataDir]), /locked/i);
      const read = records((await ok(['consume', 'orders', '--from-beginning', '--data-dir', dataDir])).stdout);
      expect(read).toHaveLength(3);
      expect((await ok(['topics', 'list', '--data-dir', dataDir])).stdout).toContain('orders');
    } finally {
      await holder.close();
    }
  });

  it('runs the demo twice, appending more and reading only the new events the second time', async () => {
    // Guarantees `npm start` works on an empty dir and is idempotent across runs.
    const dataDir = await tempDataDir();
    const first = await ok(['demo', '--data-dir', dataDir]);
    expect(first.stdout).toMatch(/created topic demo-orders/);
    expect(first.stdout).toContain('npx sluice consume demo-orders --from-beginning --max 5');
    const second = await ok(['demo', '--data-dir', dataDir]);
    expect(second.stdout).toMatch(/already exists/);
    expect(second.stdout).toMatch(/read 5000 new events/);
    expect(await totalLag(dataDir, 'demo-reader')).toBe(0);
  });
});
