/**
 * End to end: `sluice run` as a child process tails real files through every kind of rotation
 * while the test writes them, and the exact multiset of lines in the topic (read back with
 * `sluice consume`) and in the file sink's output is checked: no line lost, and duplicates only
 * within the last uncommitted batch of each kill -9.
 */
import { appendFileSync, copyFileSync, mkdirSync, renameSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanUp, completeLines, sleep, sluiceOk, start, tempDir, waitFor, type Running } from './e2e-helpers.ts';

afterEach(cleanUp);

const TOPIC = 'lines';

/** A pipeline: file-tail of `paths` (relative to the test's directory) → topic `lines` → file sink. */
function spec(paths: readonly string[], config: Record<string, unknown> = {}): string {
  const source = { paths, poll_interval: '100ms', rotate_wait: '500ms', partial_line_timeout: '500ms', ...config };
  return `name: tail
topics:
  - name: ${TOPIC}
    partitions: 2
sources:
  - name: tail
    connector: file-tail
    topic: ${TOPIC}
    config: ${JSON.stringify(source)}
sinks:
  - name: out
    connector: file
    topics: [${TOPIC}]
    config: { path: out/lines.jsonl }
`;
}

/** A test directory with `logs/` and the spec. */
async function setUp(prefix: string, paths: readonly string[], config: Record<string, unknown> = {}): Promise<string> {
  const cwd = await tempDir(`tail-${prefix}`);
  mkdirSync(path.join(cwd, 'logs'));
  await writeFile(path.join(cwd, 'spec.yaml'), spec(paths, config));
  return cwd;
}

function run(cwd: string): Running {
  return start(['run', 'spec.yaml', '--data-dir', 'data', '--api', '127.0.0.1:0', '--status-interval', '0'], { cwd });
}

/** The values of every record of the topic, read by `sluice consume` (read-only, while running or after). */
async function topicLines(cwd: string): Promise<string[]> {
  const { stdout } = await sluiceOk(['consume', TOPIC, '--from-beginning', '--data-dir', 'data'], { cwd });
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (JSON.parse(l) as { value: string }).value);
}

/** The lines the file sink wrote (each a JSON string holding a log line). */
function sinkLines(cwd: string): string[] {
  return completeLines(path.join(cwd, 'out/lines.jsonl')).map((l) => JSON.parse(l) as string);
}

/** Waits until the sink wrote every one of `expected` at least once. */
async function delivered(cwd: string, expected: readonly string[], child: Running, timeoutMs = 20_000): Promise<void> {
  const want = new Set(expected);
  await waitFor(
    () => {
      if (!child.running) throw new Error(`sluice exited early\nstdout: ${child.stdout.slice(-2000)}\nstderr: ${child.stderr}`);
      const got = new Set(sinkLines(cwd));
      return [...want].every((l) => got.has(l));
    },
    { timeoutMs, intervalMs: 100, what: `all ${want.size} lines in the sink output` },
  );
}

/** Compares multisets: every expected line present, duplicates counted; a short message instead of megabytes of diff. */
function tally(got: readonly string[], expected: readonly string[]): { missing: string[]; unexpected: string[]; duplicates: number } {
  const counts = new Map<string, number>();
  for (const line of got) counts.set(line, (counts.get(line) ?? 0) + 1);
  const missing = expected.filter((l) => !counts.has(l));
  const want = new Set(expected);
  const unexpected = [...counts.keys()].filter((l) => !want.has(l));
  let duplicates = 0;
  for (const n of counts.values()) duplicates += n - 1;
  return { missing: missing.slice(0, 10), unexpected: unexpected.slice(0, 10), duplicates };
}

function expectExactly(got: readonly string[], expected: readonly string[], what: string): void {
  expect(tally(got, expected), what).toEqual({ missing: [], unexpected: [], duplicates: 0 });
  expect(got.length, what).toBe(expected.length);
}

async function stopOk(child: Running): Promise<void> {
  expect(await child.stop('SIGTERM')).toEqual({ code: 0, signal: null });
}

/** Writes numbered lines to files in bursts, as a busy application does, remembering every line. */
class Writer {
  readonly written: string[] = [];
  #n = 0;

  constructor(private readonly prefix: string) {}

  /** Appends `count` lines to `file` in bursts of `burst`, sleeping `pauseMs` between bursts. */
  async write(file: string, count: number, burst = 50, pauseMs = 5): Promise<void> {
    for (let done = 0; done < count; done += burst) {
      const lines: string[] = [];
      for (let i = 0; i < Math.min(burst, count - done); i++) lines.push(`${this.prefix}-${String(this.#n++).padStart(7, '0')} ${'x'.repeat(40)}`);
      appendFileSync(file, lines.map((l) => `${l}\n`).join(''));
      this.written.push(...lines);
      if (pauseMs > 0) await sleep(pauseMs);
    }
  }
}

describe('file-tail end to end', () => {
  it('rename and create: the renamed file is read to its end, late appends included, and the new file whole', async () => {
    // Guarantee: a rename rotation while sluice runs delivers every line of the old and the new file exactly once, though the old name leaves the globs.
    const cwd = await setUp('rename', ['logs/app.log']);
    const log = path.join(cwd, 'logs/app.log');
    const writer = new Writer('r');
    await writer.write(log, 500, 100, 0);
    const child = run(cwd);
    await child.waitForLog((l) => l.msg === 'tailing files', 'the source started');
    await writer.write(log, 1000);
    renameSync(log, `${log}.1`);
    // The application still writes to the file it has open until it reopens its log.
    await writer.write(`${log}.1`, 200);
    await writer.write(log, 1000);
    await delivered(cwd, writer.written, child);
    await sleep(300);
    await stopOk(child);
    expectExactly(await topicLines(cwd), writer.written, 'topic');
    expectExactly(sinkLines(cwd), writer.written, 'sink output');
  });

  it('copytruncate: lines the truncation took come from the copy, and none twice', async () => {
    // Guarantee: copytruncate with the copy under the globs loses no line and duplicates none, even with unread lines at the moment of the copy.
    const cwd = await setUp('copytruncate', ['logs/app.log*']);
    const log = path.join(cwd, 'logs/app.log');
    const writer = new Writer('c');
    const child = run(cwd);
    await child.waitForLog((l) => l.msg === 'tailing files', 'the source started');
    for (let round = 0; round < 3; round++) {
      await writer.write(log, 600);
      // A burst sluice has not read yet, then copy and truncate at once, as logrotate does.
      await writer.write(log, 2000, 2000, 0);
      copyFileSync(log, `${log}.${round + 1}`);
      truncateSync(log, 0);
    }
    await writer.write(log, 500);
    await delivered(cwd, writer.written, child);
    await sleep(300);
    await stopOk(child);
    expectExactly(await topicLines(cwd), writer.written, 'topic');
    expectExactly(sinkLines(cwd), writer.written, 'sink output');
  });

  it('delete and recreate: lines written before the delete still arrive, and the recreated file is read whole', async () => {
    // Guarantee: deleting a followed file loses none of its unread lines, and a new file under the same name is a new file.
    const cwd = await setUp('delete', ['logs/*.log']);
    const log = path.join(cwd, 'logs/app.log');
    const writer = new Writer('d');
    const child = run(cwd);
    await child.waitForLog((l) => l.msg === 'tailing files', 'the source started');
    for (let round = 0; round < 3; round++) {
      await writer.write(log, 500);
      // A file deleted before sluice ever saw it is beyond any reader; this one has been seen.
      await delivered(cwd, writer.written.slice(-1), child);
      await writer.write(log, 1000, 1000, 0);
      unlinkSync(log);
    }
    await writer.write(log, 300);
    await delivered(cwd, writer.written, child);
    await child.waitForLog((l) => l.msg === 'released file', 'a deleted file to be released');
    await stopOk(child);
    expectExactly(await topicLines(cwd), writer.written, 'topic');
  });

  it('fifty files under a ** glob, half of them created while running, some rotated', async () => {
    // Guarantee: every file a glob matches is followed, whether it existed at start or appeared later, and every line of all of them arrives once.
    const cwd = await setUp('fifty', ['logs/**/*.log'], { batch_records: 500 });
    const writer = new Writer('f');
    const files = Array.from({ length: 50 }, (_, i) => path.join(cwd, `logs/svc-${i % 5}/${i % 2 ? 'deep/' : ''}f${i}.log`));
    for (const file of files) mkdirSync(path.dirname(file), { recursive: true });
    for (const file of files.slice(0, 25)) await writer.write(file, 40, 40, 0);
    const child = run(cwd);
    await child.waitForLog((l) => l.msg === 'tailing files', 'the source started');
    for (let round = 0; round < 4; round++) {
      for (const file of files.slice(0, 25 + round * 8)) await writer.write(file, 30, 30, 0);
      if (round === 2) for (const file of files.slice(0, 10)) renameSync(file, `${file}.old`);
      await sleep(50);
    }
    for (const file of files) await writer.write(file, 20, 20, 0);
    await delivered(cwd, writer.written, child);
    await sleep(300);
    await stopOk(child);
    expectExactly(await topicLines(cwd), writer.written, 'topic');
  });

  it('a rotation while sluice is stopped: the rotated file resumes at its checkpoint and the new file is read whole', async () => {
    // Guarantee: lines written and rotated away while sluice was stopped arrive after the restart, and nothing delivered before arrives again.
    const cwd = await setUp('stopped', ['logs/app.log*']);
    const log = path.join(cwd, 'logs/app.log');
    const writer = new Writer('s');
    const first = run(cwd);
    await first.waitForLog((l) => l.msg === 'tailing files', 'the source started');
    await writer.write(log, 1500);
    await delivered(cwd, writer.written, first);
    await stopOk(first);
    await writer.write(log, 700, 700, 0);
    renameSync(log, `${log}.1`);
    await writer.write(log, 800, 800, 0);
    // A second rotation while stopped, with a partial last line completed later.
    renameSync(`${log}.1`, `${log}.2`);
    renameSync(log, `${log}.1`);
    appendFileSync(log, 's-tail-part');
    const second = run(cwd);
    await second.waitForLog((l) => l.msg === 'tailing files', 'the restarted source');
    appendFileSync(log, 'ial\n');
    writer.written.push('s-tail-partial');
    await writer.write(log, 300);
    await delivered(cwd, writer.written, second);
    await sleep(300);
    await stopOk(second);
    expectExactly(await topicLines(cwd), writer.written, 'topic');
    expectExactly(sinkLines(cwd), writer.written, 'sink output');
  });

  it('kill -9 during rotations: every line arrives, duplicates only within the batch uncommitted at each kill', async () => {
    // Guarantee: a crash at any moment of a rotation loses nothing; each kill repeats at most one batch (batch_records).
    const BATCH = 100;
    const KILLS = 3;
    const cwd = await setUp('kill', ['logs/app.log*'], { batch_records: BATCH });
    const log = path.join(cwd, 'logs/app.log');
    const writer = new Writer('k');
    let writing = true;
    let rotations = 0;
    // The application: writes steadily and rotates by rename every few hundred lines, whether sluice runs or not.
    const app = (async () => {
      while (writing) {
        await writer.write(log, 300, 30, 10);
        renameSync(log, `${log}.${++rotations}`);
      }
    })();
    for (let kill = 0; kill < KILLS; kill++) {
      const child = run(cwd);
      const before = sinkLines(cwd).length;
      await waitFor(() => sinkLines(cwd).length > before + 200, { timeoutMs: 20_000, what: `run ${kill + 1} to deliver lines; stderr: ${child.stderr}` });
      await sleep(100 + Math.floor(Math.random() * 500));
      expect((await child.kill('SIGKILL')).signal).toBe('SIGKILL');
    }
    const last = run(cwd);
    await sleep(800);
    writing = false;
    await app;
    await delivered(cwd, writer.written, last, 30_000);
    await sleep(300);
    await stopOk(last);
    expect(rotations).toBeGreaterThanOrEqual(3);
    const got = tally(await topicLines(cwd), writer.written);
    expect({ missing: got.missing, unexpected: got.unexpected }).toEqual({ missing: [], unexpected: [] });
    expect(got.duplicates).toBeLessThanOrEqual(KILLS * BATCH);
  });

  it('pipelines/app-logs.yaml joins multiline events from APP_LOG_DIR into the sink output', async () => {
    // Guarantee: the shipped example pipeline runs as documented: stack traces arrive as one event each.
    const cwd = await tempDir('tail-app-logs');
    const logs = path.join(cwd, 'app-logs');
    mkdirSync(logs);
    const specFile = path.join(cwd, 'app-logs.yaml');
    copyFileSync(path.join(import.meta.dirname, '../pipelines/app-logs.yaml'), specFile);
    const events = [
      '2025-01-01T12:00:00.000Z INFO  started',
      '2025-01-01T12:00:01.000Z ERROR request failed\njava.lang.IllegalStateException: boom\n\tat com.example.A.run(A.java:10)\n\tat java.base/java.lang.Thread.run(Thread.java:833)',
      '2025-01-01T12:00:02.000Z WARN  slow response',
    ];
    writeFileSync(path.join(logs, 'api.log'), events.map((e) => `${e}\n`).join(''));
    const child = start(['run', 'app-logs.yaml', '--data-dir', 'data', '--api', '127.0.0.1:0', '--status-interval', '0'], { cwd, env: { APP_LOG_DIR: logs } });
    const out = path.join(cwd, 'data/out/app-logs.jsonl');
    await waitFor(() => completeLines(out).length >= 3, { timeoutMs: 20_000, what: `three events in ${out}; stderr: ${child.stderr}` });
    await stopOk(child);
    expect(completeLines(out).map((l) => JSON.parse(l) as string)).toEqual(events);
  });
});
