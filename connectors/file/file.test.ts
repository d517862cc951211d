import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { afterEach, describe, expect, it } from 'vitest';
import { isSluiceError, type SinkRecord, type TopicPartition } from '../../core/connector.ts';
import { sinkContext } from '../../test/support/task-context.ts';
import { file } from './index.ts';
import type { FileSinkConfig } from './schema.ts';
import { FileSinkTask } from './task.ts';

/** A context for the file sink, as its connector entry 'file-out', owning `assignment`. */
const fileSinkContext = (assignment: readonly TopicPartition[] = []) => sinkContext(file.metrics, { connector: 'file-out', assignment });

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dirs: string[] = [];
const tasks: FileSinkTask[] = [];

afterEach(async () => {
  await Promise.all(tasks.splice(0).map((t) => t.stop()));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sluice-file-'));
  dirs.push(dir);
  return dir;
}

function config(overrides: Partial<FileSinkConfig> & { path: string }): FileSinkConfig {
  return { format: 'value', roll_bytes: '128MiB', max_open_files: 64, ...overrides };
}

async function startTask(cfg: FileSinkConfig, assignment: TopicPartition[] = [{ topic: 'clicks', partition: 0 }]) {
  const task = new FileSinkTask(cfg);
  tasks.push(task);
  const test = fileSinkContext(assignment);
  await task.start(test.ctx);
  await task.open(assignment);
  return { task, ...test };
}

let nextOffset = 0n;
function rec(value: string | Buffer | null, overrides: Partial<SinkRecord> = {}): SinkRecord {
  return {
    topic: 'clicks',
    partition: 0,
    offset: nextOffset++,
    timestamp: Date.UTC(2025, 0, 2, 3, 4, 5),
    key: null,
    value: typeof value === 'string' ? Buffer.from(value) : value,
    headers: {},
    ...overrides,
  };
}

async function lines(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8');
  expect(text.endsWith('\n') || text === '').toBe(true);
  return text === '' ? [] : text.slice(0, -1).split('\n');
}

/** Paths of files this process holds open, from /proc; undefined where /proc is missing. */
async function openFiles(): Promise<string[] | undefined> {
  if (!existsSync('/proc/self/fd')) return undefined;
  const out: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    try {
      out.push(await readlink(`/proc/self/fd/${fd}`));
    } catch {
      // The descriptor readdir itself used is gone by now.
    }
  }
  return out;
}

describe('format: value', () => {
  it('writes one line per record, JSON values byte for byte, readable as soon as put resolves', async () => {
    // A resolved put means the lines are in the file, which is what lets the runtime commit next.
    const dir = await tempDir();
    const out = path.join(dir, 'out.jsonl');
    const { task } = await startTask(config({ path: out }));
    await task.put([rec('{"a":1}'), rec('[1, 2]'), rec('"text"'), rec('{"big":123456789012345678901234567890}')]);
    expect(await lines(out)).toEqual(['{"a":1}', '[1, 2]', '"text"', '{"big":123456789012345678901234567890}']);
    await task.put([rec('{"a":2}')]);
    expect(await lines(out)).toHaveLength(5);
  });

  it('writes a value that is not JSON as a JSON string, and a pretty-printed value on one line', async () => {
    // Every line parses as JSON whatever the bytes, and line breaks never split a record.
    const dir = await tempDir();
    const out = path.join(dir, 'out.jsonl');
    const { task } = await startTask(config({ path: out }));
    const pretty = '{\r\n  "a": [\n    1,\n    2\n  ],\n  "s": "x\\ny"\n}\n';
    await task.put([rec('plain text'), rec('line one\nline two'), rec(''), rec(Buffer.from([0xff, 0x41])), rec(pretty)]);
    const written = await lines(out);
    expect(written).toHaveLength(5);
    expect(written.map((l) => JSON.parse(l))).toEqual(['plain text', 'line one\nline two', '', '\uFFFDA', { a: [1, 2], s: 'x\ny' }]);
  });

  it('writes a tombstone as null', async () => {
    // A delete stays visible downstream and the line count stays equal to the record count.
    const dir = await tempDir();
    const out = path.join(dir, 'out.jsonl');
    const { task } = await startTask(config({ path: out }));
    await task.put([rec('{"id":1}'), rec(null), rec('{"id":2}')]);
    expect(await lines(out)).toEqual(['{"id":1}', 'null', '{"id":2}']);
  });
});

describe('format: envelope', () => {
  it('writes topic, partition, offset, timestamp, key, value and headers', async () => {
    // The envelope carries the record's coordinates, so a reader can deduplicate the at-least-once repeats.
    const dir = await tempDir();
    const out = path.join(dir, 'out.jsonl');
    const { task } = await startTask(config({ path: out, format: 'envelope' }));
    await task.put([
      rec('{"n":1}', { offset: 7n, key: Buffer.from('"user-1"'), headers: { trace: Buffer.from('abc'), 'content-type': Buffer.from('application/json') } }),
      rec('not json', { offset: 2n ** 53n + 1n, key: Buffer.from('raw key'), timestamp: 1000 }),
      rec(null, { offset: 9n, key: null }),
    ]);
    const [first, second, third] = (await lines(out)).map((l) => JSON.parse(l));
    expect(first).toEqual({
      topic: 'clicks',
      partition: 0,
      offset: 7,
      timestamp: Date.UTC(2025, 0, 2, 3, 4, 5),
      key: 'user-1',
      value: { n: 1 },
      headers: { trace: 'abc', 'content-type': 'application/json' },
    });
    expect(second).toMatchObject({ offset: '9007199254740993', key: 'raw key', value: 'not json', timestamp: 1000, headers: {} });
    expect(third).toMatchObject({ offset: 9, key: null, value: null });
  });
});

describe('path templates', () => {
  it('sends each record to the file its topic, partition and UTC timestamp name, one file per combination', async () => {
    // Placeholders partition the output as documented, in UTC whatever the machine's time zone.
    const dir = await tempDir();
    const { task } = await startTask(config({ path: path.join(dir, '{topic}/{date}/{hh}/p{partition}.jsonl') }), [
      { topic: 'clicks', partition: 0 },
      { topic: 'clicks', partition: 1 },
      { topic: 'orders', partition: 0 },
    ]);
    const day1 = Date.UTC(2025, 11, 31, 23, 59, 59);
    const day2 = Date.UTC(2026, 0, 1, 0, 0, 1);
    await task.put([
      rec('1', { timestamp: day1 }),
      rec('2', { timestamp: day2 }),
      rec('3', { partition: 1, timestamp: day1 }),
      rec('4', { topic: 'orders', timestamp: day1 }),
      rec('5', { timestamp: day1 }),
    ]);
    expect(await lines(path.join(dir, 'clicks/2025-12-31/23/p0.jsonl'))).toEqual(['1', '5']);
    expect(await lines(path.join(dir, 'clicks/2026-01-01/00/p0.jsonl'))).toEqual(['2']);
    expect(await lines(path.join(dir, 'clicks/2025-12-31/23/p1.jsonl'))).toEqual(['3']);
    expect(await lines(path.join(dir, 'orders/2025-12-31/23/p0.jsonl'))).toEqual(['4']);
  });

  it('fills {yyyy}, {mm} and {dd} separately', async () => {
    // The split date placeholders give Hive-style layouts.
    const dir = await tempDir();
    const { task } = await startTask(config({ path: path.join(dir, 'y={yyyy}/m={mm}/d={dd}/{topic}.jsonl') }));
    await task.put([rec('1', { timestamp: Date.UTC(2025, 2, 9, 12) })]);
    expect(await lines(path.join(dir, 'y=2025/m=03/d=09/clicks.jsonl'))).toEqual(['1']);
  });

  it('resolves a relative path against the working directory', async () => {
    // The quickstart's data/out/clicks.jsonl lands under the directory sluice runs in.
    const dir = await tempDir();
    const task = new FileSinkTask(config({ path: path.relative(process.cwd(), path.join(dir, 'rel/out.jsonl')) }));
    tasks.push(task);
    await task.start(fileSinkContext().ctx);
    await task.put([rec('1')]);
    expect(await lines(path.join(dir, 'rel/out.jsonl'))).toEqual(['1']);
  });

  it('refuses a topic that would climb out of the template directories', async () => {
    // A topic named .. cannot make the sink write outside its directory.
    const dir = await tempDir();
    const { task } = await startTask(config({ path: path.join(dir, '{topic}/out.jsonl') }));
    const err = await task.put([rec('1', { topic: '..' })]).catch((e: unknown) => e);
    expect(isSluiceError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('rolling', () => {
  it('rolls by size into sequence-named files that sort in write order, each within roll_bytes', async () => {
    // Rolled names sort before the active file and in age order, so concatenating them in name order restores the stream.
    const dir = await tempDir();
    const out = path.join(dir, 'clicks.jsonl');
    const { task, counters } = await startTask(config({ path: out, roll_bytes: 64 }));
    const values = Array.from({ length: 40 }, (_, i) => JSON.stringify({ i }));
    for (let i = 0; i < values.length; i += 7) await task.put(values.slice(i, i + 7).map((v) => rec(v)));
    // A line larger than roll_bytes still lands, in a file of its own.
    const huge = JSON.stringify({ huge: 'y'.repeat(200) });
    await task.put([rec(huge), rec('{"after":1}')]);

    const names = (await readdir(dir)).sort();
    expect(names.at(-1)).toBe('clicks.jsonl');
    expect(names.slice(0, -1).every((n, i) => n === `clicks.${String(i + 1).padStart(6, '0')}.jsonl`)).toBe(true);
    const all: string[] = [];
    for (const name of names) {
      const size = (await stat(path.join(dir, name))).size;
      const content = await lines(path.join(dir, name));
      if (!content.includes(huge)) expect(size).toBeLessThanOrEqual(64);
      else expect(content).toEqual([huge]);
      all.push(...content);
    }
    expect(all).toEqual([...values, huge, '{"after":1}']);
    expect(counters.get('rolls_total')).toBe(names.length - 1);
  });

  it('continues the sequence after a restart and never overwrites a rolled file', async () => {
    // A roll picks a number above every existing one, so no earlier output is ever replaced.
    const dir = await tempDir();
    const out = path.join(dir, 'clicks.jsonl');
    await writeFile(path.join(dir, 'clicks.000007.jsonl'), 'keep\n');
    const first = await startTask(config({ path: out, roll_bytes: 10 }));
    await first.task.put([rec('"aaaa"'), rec('"bbbb"')]);
    await first.task.stop();
    const second = await startTask(config({ path: out, roll_bytes: 10 }));
    await second.task.put([rec('"cccc"')]);
    expect((await readdir(dir)).sort()).toEqual(['clicks.000007.jsonl', 'clicks.000008.jsonl', 'clicks.000009.jsonl', 'clicks.jsonl']);
    expect(await readFile(path.join(dir, 'clicks.000007.jsonl'), 'utf8')).toBe('keep\n');
    expect(await lines(path.join(dir, 'clicks.000008.jsonl'))).toEqual(['"aaaa"']);
    expect(await lines(path.join(dir, 'clicks.000009.jsonl'))).toEqual(['"bbbb"']);
    expect(await lines(out)).toEqual(['"cccc"']);
  });

  it('rolls by age even when no batch arrives, and the next batch starts a new file', async () => {
    // roll_interval closes idle files on time, so downstream jobs can pick them up.
    const dir = await tempDir();
    const out = path.join(dir, 'clicks.jsonl');
    const { task } = await startTask(config({ path: out, roll_interval: '100ms' }));
    await task.put([rec('1'), rec('2')]);
    const rolled = path.join(dir, 'clicks.000001.jsonl');
    const deadline = Date.now() + 5000;
    while (!existsSync(rolled) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(await lines(rolled)).toEqual(['1', '2']);
    expect(existsSync(out)).toBe(false);
    await task.put([rec('3')]);
    expect(await lines(out)).toEqual(['3']);
  });

  it('rolls an idle file once and creates no empty files while idle', async () => {
    // An idle sink does not litter the directory: after a time roll the next file waits for the next record.
    const dir = await tempDir();
    const { task } = await startTask(config({ path: path.join(dir, 'clicks.jsonl'), roll_interval: '20ms' }));
    await task.put([rec('1')]);
    await new Promise((r) => setTimeout(r, 300));
    expect(await readdir(dir)).toEqual(['clicks.000001.jsonl']);
  });
});

describe('crash safety', () => {
  it('cuts a torn last line before appending, so the file holds whole lines only', async () => {
    // After a crash mid-write the restarted sink removes the partial line instead of gluing the next record to it.
    const dir = await tempDir();
    const out = path.join(dir, 'clicks.jsonl');
    await writeFile(out, '{"n":1}\n{"n":2}\n{"n":3,"pa');
    const { task, counters, lines: log } = await startTask(config({ path: out }));
    expect(await readFile(out, 'utf8')).toBe('{"n":1}\n{"n":2}\n');
    expect(counters.get('torn_bytes_cut_total')).toBe('{"n":3,"pa'.length);
    expect(log.some((l) => l.level === 'warn' && l.fields['file'] === out)).toBe(true);
    await task.put([rec('{"n":3}')]);
    expect(await lines(out)).toEqual(['{"n":1}', '{"n":2}', '{"n":3}']);
  });

  it('cuts the torn line on the first put when open was not called', async () => {
    // The cut does not depend on the runtime calling open: the first append to a file checks it.
    const dir = await tempDir();
    const out = path.join(dir, 'clicks.jsonl');
    await writeFile(out, '"whole"\n"torn');
    const task = new FileSinkTask(config({ path: out }));
    tasks.push(task);
    await task.start(fileSinkContext().ctx);
    await task.put([rec('"next"')]);
    expect(await lines(out)).toEqual(['"whole"', '"next"']);
  });

  it('cuts the torn lines of files the restart will not append to, such as a past date', async () => {
    // Files a crash left behind are whole after restart even when no record goes to them again.
    const dir = await tempDir();
    const template = path.join(dir, '{topic}-{date}-{partition}.jsonl');
    await writeFile(path.join(dir, 'clicks-2024-01-01-0.jsonl'), '1\n2');
    await writeFile(path.join(dir, 'clicks-2024-01-02-0.jsonl'), 'torn only');
    await writeFile(path.join(dir, 'clicks-2024-01-01-1.jsonl'), '1\n2');
    await writeFile(path.join(dir, 'clicks-2024-01-01-0.000001.jsonl'), 'rolled files are never torn, nor touched');
    await startTask(config({ path: template }), [{ topic: 'clicks', partition: 0 }]);
    expect(await readFile(path.join(dir, 'clicks-2024-01-01-0.jsonl'), 'utf8')).toBe('1\n');
    expect(await readFile(path.join(dir, 'clicks-2024-01-02-0.jsonl'), 'utf8')).toBe('');
    // Partition 1 is not this task's: another task may be writing it.
    expect(await readFile(path.join(dir, 'clicks-2024-01-01-1.jsonl'), 'utf8')).toBe('1\n2');
    expect(await readFile(path.join(dir, 'clicks-2024-01-01-0.000001.jsonl'), 'utf8')).toBe('rolled files are never torn, nor touched');
  });

  it('cuts a torn line longer than the backward scan chunk', async () => {
    // A crash in the middle of a large value still leaves only whole lines.
    const dir = await tempDir();
    const out = path.join(dir, 'clicks.jsonl');
    await writeFile(out, `"a"\n${'z'.repeat(200_000)}`);
    await startTask(config({ path: out }));
    expect(await readFile(out, 'utf8')).toBe('"a"\n');
  });

  it('leaves only whole lines, and every acknowledged record, after kill -9 of a process writing in a loop', async () => {
    // A process killed mid-write loses no acknowledged line, and the restart cut leaves a gapless run of whole lines.
    const dir = await tempDir();
    const template = path.join(dir, 'crash.jsonl');
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'connectors/file/fixtures/crash-writer.ts'), template], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let acked = 0;
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      let buffered = '';
      child.stdout.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        for (const match of buffered.matchAll(/acked (\d+)\n/g)) acked = Math.max(acked, Number(match[1]));
        buffered = buffered.slice(buffered.lastIndexOf('\n') + 1);
        // Past a few rolls, at a random point of a batch's cycle (encode, write, fdatasync, roll).
        if (acked >= 12_000) setTimeout(resolve, Math.random() * 100);
      });
      child.on('exit', (code) => reject(new Error(`crash writer exited early with ${code}: ${stderr}`)));
    });
    child.kill('SIGKILL');
    await exited;
    const ackedAtKill = acked;

    const { counters } = await startTask(config({ path: template }), [{ topic: 'crash', partition: 0 }]);
    const names = (await readdir(dir)).sort();
    let expected = 0;
    for (const name of names) {
      for (const line of await lines(path.join(dir, name))) {
        expect((JSON.parse(line) as { seq: number }).seq).toBe(expected++);
      }
    }
    expect(expected).toBeGreaterThanOrEqual(ackedAtKill);
    console.info(`kill -9 after ${ackedAtKill} acked: ${expected} whole lines in ${names.length} files, ${counters.get('torn_bytes_cut_total') ?? 0} torn bytes cut`);
  });
});

describe('batches and handles', () => {
  it('writes 10k records in one put quickly', async () => {
    // One write and one fdatasync per file per batch keeps large batches cheap.
    const dir = await tempDir();
    const out = path.join(dir, 'big.jsonl');
    const { task } = await startTask(config({ path: out }));
    const records = Array.from({ length: 10_000 }, (_, i) => rec(JSON.stringify({ i, user: `u${i % 97}`, url: `/page/${i}` })));
    const started = performance.now();
    await task.put(records);
    const ms = performance.now() - started;
    console.info(`10k records in ${ms.toFixed(1)} ms`);
    expect(ms).toBeLessThan(5000);
    const written = await lines(out);
    expect(written).toHaveLength(10_000);
    expect(JSON.parse(written[9999]!)).toEqual({ i: 9999, user: 'u8', url: '/page/9999' });
  });

  it('keeps files open between batches and closes them on close and stop', async (context) => {
    // Handles are reused across batches, and a revoked partition or a stopped task holds no descriptor.
    const fds = await openFiles();
    if (fds === undefined) context.skip();
    const dir = await tempDir();
    const { task } = await startTask(config({ path: path.join(dir, 'p{partition}.jsonl') }), [
      { topic: 'clicks', partition: 0 },
      { topic: 'clicks', partition: 1 },
    ]);
    const held = async () => (await openFiles())!.filter((f) => f.startsWith(dir)).sort();
    await task.put([rec('1'), rec('2', { partition: 1 })]);
    await task.put([rec('3'), rec('4', { partition: 1 })]);
    expect(await held()).toEqual([path.join(dir, 'p0.jsonl'), path.join(dir, 'p1.jsonl')]);
    await task.close([{ topic: 'clicks', partition: 0 }]);
    expect(await held()).toEqual([path.join(dir, 'p1.jsonl')]);
    await task.stop();
    expect(await held()).toEqual([]);
  });

  it('closes the least recently written files past max_open_files', async (context) => {
    // Date templates cannot leak descriptors: old files close after the batch.
    if ((await openFiles()) === undefined) context.skip();
    const dir = await tempDir();
    const { task } = await startTask(config({ path: path.join(dir, 'p{partition}.jsonl'), max_open_files: 2 }));
    await task.put([0, 1, 2, 3, 4].map((p) => rec(String(p), { partition: p })));
    await task.put([rec('again', { partition: 0 })]);
    const held = (await openFiles())!.filter((f) => f.startsWith(dir)).sort();
    expect(held).toEqual([path.join(dir, 'p0.jsonl'), path.join(dir, 'p4.jsonl')]);
    expect(await lines(path.join(dir, 'p0.jsonl'))).toEqual(['0', '"again"']);
  });

  it('reports a path it can never write as a fatal IO_ERROR, not a retriable one', async () => {
    // Retrying cannot fix a file standing where a directory must be, so the connector fails instead.
    const dir = await tempDir();
    await writeFile(path.join(dir, 'blocker'), 'x');
    const { task } = await startTask(config({ path: path.join(dir, 'blocker/out.jsonl') }));
    const err = await task.put([rec('1')]).catch((e: unknown) => e);
    expect(isSluiceError(err, 'IO_ERROR')).toBe(true);
    expect((err as Error).message).toContain('blocker');
  });
});

describe('definition', () => {
  const ajv = new Ajv({ allErrors: true, useDefaults: true, verbose: true, allowUnionTypes: true, strict: true, strictRequired: false });
  const validate = ajv.compile(file.configSchema);

  it('validates its examples, fills defaults and rejects unknown placeholders and properties', () => {
    // The schema the loader runs accepts the documented examples and catches typos before a run.
    for (const example of file.examples ?? []) expect(validate(structuredClone(example.config)), example.title).toBe(true);
    const minimal: Record<string, unknown> = { path: 'data/out/clicks.jsonl' };
    expect(validate(minimal)).toBe(true);
    expect(minimal).toEqual({ path: 'data/out/clicks.jsonl', format: 'value', roll_bytes: '128MiB', max_open_files: 64 });
    expect(validate({ path: 'out/{table}.jsonl' })).toBe(false);
    expect(validate({ path: 'out.jsonl', rol_bytes: 5 })).toBe(false);
    expect(validate({ path: 'out.jsonl', roll_interval: '5' })).toBe(false);
  });

  it('describes every property', () => {
    // The generated reference doc has a sentence for every setting.
    for (const [name, property] of Object.entries(file.configSchema.properties)) {
      expect((property as { description?: string }).description, name).toMatch(/\w/);
    }
  });

  it('runs several tasks only when each partition has its own files', () => {
    // Two tasks never append to one file, which would interleave batches and cut each other's lines.
    const shared = config({ path: 'out/{topic}.jsonl' });
    expect(file.taskConfigs!(shared, 1)).toEqual([shared]);
    expect(() => file.taskConfigs!(shared, 3)).toThrow(/tasks: 3 needs \{partition\}/);
    expect(file.taskConfigs!(config({ path: 'out/{topic}-{partition}.jsonl' }), 3)).toHaveLength(3);
  });

  it('health check passes for a writable directory without creating anything', async () => {
    // The check proves writability but leaves the file system as it found it.
    const dir = await tempDir();
    const { ctx } = fileSinkContext();
    await file.healthCheck!(config({ path: path.join(dir, 'not/yet/{topic}.jsonl') }), { signal: ctx.signal, logger: ctx.logger });
    expect(await readdir(dir)).toEqual([]);
  });

  it('health check fails as a misconfiguration when the path cannot be a file', async () => {
    // A directory or a file in the way is reported before any task starts, naming the path.
    const dir = await tempDir();
    const { ctx } = fileSinkContext();
    await mkdir(path.join(dir, 'is-a-dir'));
    await writeFile(path.join(dir, 'blocker'), 'x');
    for (const bad of [path.join(dir, 'is-a-dir'), path.join(dir, 'blocker/out.jsonl')]) {
      const err = await file.healthCheck!(config({ path: bad }), { signal: ctx.signal, logger: ctx.logger }).catch((e: unknown) => e);
      expect(isSluiceError(err, 'CONFIG_INVALID'), String(err)).toBe(true);
      expect((err as Error).message).toContain(bad);
    }
    expect((await readdir(dir)).sort()).toEqual(['blocker', 'is-a-dir']);
  });
});
