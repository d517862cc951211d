/**
 * The file-tail task driven directly, on real files in a temp directory, with a real-object
 * context: formats, splitting, rotation in every form, identity, checkpoints and restarts.
 */
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isSluiceError } from '../../core/connector.ts';
import { Driver, configErrors, configOf, header, text } from './fixtures/driver.ts';
import { HEADERS, fileTail } from './index.ts';

const dirs: string[] = [];
const drivers: Driver[] = [];

afterEach(async () => {
  await Promise.all(drivers.splice(0).map((d) => d.stop().catch(() => undefined)));
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-file-tail-'));
  dirs.push(dir);
  return dir;
}

/** Short timeouts, so the tests wait milliseconds where a deployment waits seconds. */
function fast(dir: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { paths: [`${dir}/*.log`], poll_interval: '100ms', partial_line_timeout: '300ms', rotate_wait: '300ms', ...extra };
}

async function start(config: Record<string, unknown>, committed: Iterable<import('../../core/connector.ts').SourceOffsetEntry> = []): Promise<Driver> {
  const driver = await Driver.start(config, committed);
  drivers.push(driver);
  return driver;
}

const numbered = (prefix: string, from: number, to: number): string[] => Array.from({ length: to - from }, (_, i) => `${prefix}-${String(from + i).padStart(6, '0')}`);
const block = (lines: readonly string[]): string => lines.map((l) => `${l}\n`).join('');
const sorted = (lines: readonly string[]): string[] => [...lines].sort();

describe('file-tail: lines', () => {
  it('follows appends, with path and offset headers, keeping empty lines and dropping a trailing \\r', async () => {
    // Guarantee: every line of a followed file arrives once, in order, with the path and the byte offset of its first byte.
    const dir = tempDir();
    const file = path.join(dir, 'app.log');
    writeFileSync(file, 'one\r\n\ntwo\n');
    const d = await start(fast(dir));
    await d.until((r) => r.length >= 3, 'the first three lines');
    appendFileSync(file, 'three\n');
    await d.until((r) => r.length >= 4, 'the appended line');
    expect(d.lines()).toEqual(['one', '', 'two', 'three']);
    expect(d.delivered.map((r) => header(r, HEADERS.offset))).toEqual(['0', '5', '6', '10']);
    expect(d.delivered.every((r) => header(r, HEADERS.path) === file && r.key === null)).toBe(true);
    expect(d.delivered.map((r) => r.sourceOffset['position'])).toEqual([5, 6, 10, 16]);
    expect(new Set(d.delivered.map((r) => JSON.stringify(r.sourcePartition))).size).toBe(1);
    expect(d.h.counters.get('read_bytes_total')).toBe(16);
  });

  it('holds a last line without newline until its newline arrives, or emits it after partial_line_timeout', async () => {
    // Guarantee: a partially written line is never cut in two by a read: it waits for its newline, and after the timeout it is emitted whole.
    const dir = tempDir();
    const file = path.join(dir, 'app.log');
    writeFileSync(file, 'complete\npart');
    const d = await start(fast(dir, { partial_line_timeout: '1s' }));
    await d.until((r) => r.length >= 1, 'the complete line');
    appendFileSync(file, 'ial\nhalf');
    await d.until((r) => r.length >= 2, 'the completed line');
    expect(d.lines()).toEqual(['complete', 'partial']);
    const before = Date.now();
    await d.until((r) => r.length >= 3, 'the partial line after the timeout');
    expect(Date.now() - before).toBeGreaterThanOrEqual(600);
    expect(d.lines()).toEqual(['complete', 'partial', 'half']);
    expect(d.delivered[2]!.sourceOffset['position']).toBe(21);
  });

  it('cuts a line longer than max_line_bytes into flagged pieces at UTF-8 boundaries, also while it is still being written', async () => {
    // Guarantee: a long line is never dropped: its pieces, each at most max_line_bytes and flagged more…end, concatenate to the line.
    const dir = tempDir();
    const file = path.join(dir, 'app.log');
    const long = 'é'.repeat(50) + 'x'.repeat(33); // 133 bytes; a cut at 32 bytes would split an é
    writeFileSync(file, `short\n${long}\n`);
    const d = await start(fast(dir, { max_line_bytes: 31 }));
    await d.until((r) => r.length > 0 && header(r[r.length - 1]!, HEADERS.split) === 'end', 'the last piece');
    const pieces = d.delivered.slice(1);
    expect(d.lines()[0]).toBe('short');
    expect(pieces.every((r) => r.value!.length <= 31 && !r.value!.toString('utf8').includes('\uFFFD'))).toBe(true);
    expect(pieces.map(text).join('')).toBe(long);
    expect(pieces.map((r) => header(r, HEADERS.split))).toEqual([...pieces.slice(1).map(() => 'more'), 'end']);
    // Each piece's offset is where its bytes start.
    let offset = 6;
    for (const piece of pieces) {
      expect(header(piece, HEADERS.offset)).toBe(String(offset));
      offset += piece.value!.length;
    }
    expect(d.h.counters.get('lines_split_total')).toBe(1);

    // A line still being written is cut as it outgrows the limit, not held without bound.
    appendFileSync(file, 'y'.repeat(70));
    await d.until((r) => r.length >= pieces.length + 1 + 2, 'pieces of the unfinished line');
    appendFileSync(file, 'zz\n');
    await d.until((r) => header(r[r.length - 1]!, HEADERS.split) === 'end' && r.length > pieces.length + 1, 'the end of the second long line');
    const second = d.delivered.slice(1 + pieces.length);
    expect(second.map(text).join('')).toBe('y'.repeat(70) + 'zz');
    expect(second.map((r) => header(r, HEADERS.split))).toEqual(['more', 'more', 'end']);
  });

  it('bounds each batch by batch_records', async () => {
    // Guarantee: a poll never returns more than batch_records records, so the uncommitted window is bounded.
    const dir = tempDir();
    writeFileSync(path.join(dir, 'app.log'), block(numbered('l', 0, 1000)));
    const d = await start(fast(dir, { batch_records: 64 }));
    const sizes: number[] = [];
    while (d.delivered.length < 1000) sizes.push((await d.pollOnce()).length);
    expect(Math.max(...sizes)).toBe(64);
    expect(d.lines()).toEqual(numbered('l', 0, 1000));
  });
});

describe('file-tail: json and multiline', () => {
  it('passes valid JSON lines through, keys them by key_field, wraps invalid lines as JSON strings and skips blank lines', async () => {
    // Guarantee: in json format no line is dropped or altered: invalid JSON arrives as a JSON string flagged file.invalid_json.
    const dir = tempDir();
    writeFileSync(path.join(dir, 'events.log'), '{"user":{"id":"u1"},"n":1}\n\n{"user":{"id":7},"n":2}\nnot json {\n{"n":3}\n');
    const d = await start(fast(dir, { format: 'json', key_field: 'user.id' }));
    await d.until((r) => r.length >= 4, 'four records');
    expect(d.lines()).toEqual(['{"user":{"id":"u1"},"n":1}', '{"user":{"id":7},"n":2}', '"not json {"', '{"n":3}']);
    expect(d.delivered.map((r) => r.key?.toString('utf8') ?? null)).toEqual(['u1', '7', null, null]);
    expect(d.delivered.map((r) => header(r, HEADERS.invalidJson) ?? null)).toEqual([null, null, 'true', null]);
    expect(d.h.counters.get('invalid_json_total')).toBe(1);
  });

  it('joins stack traces into events by start_pattern, emitting the last event after flush_timeout', async () => {
    // Guarantee: a multiline event is emitted whole, once, with the offset of its first line, and the last one is not held forever.
    const dir = tempDir();
    const file = path.join(dir, 'app.log');
    const trace = ['2025-01-01 12:00:01 ERROR boom', 'java.lang.IllegalStateException: x', '    at a.b(C.java:1)', '    at d.e(F.java:2)'];
    writeFileSync(file, block(['2025-01-01 12:00:00 INFO start', ...trace, '2025-01-01 12:00:02 INFO after']));
    const d = await start(fast(dir, { format: 'multiline', multiline: { start_pattern: '^\\d{4}-\\d{2}-\\d{2} ', flush_timeout: '300ms' } }));
    await d.until((r) => r.length >= 2, 'the first two events');
    expect(d.lines()).toEqual(['2025-01-01 12:00:00 INFO start', trace.join('\n')]);
    expect(header(d.delivered[1]!, HEADERS.offset)).toBe('31');
    // The last event is complete only once no byte arrived for flush_timeout; its checkpoint is the end of the file.
    await d.until((r) => r.length >= 3, 'the last event after the flush timeout');
    expect(d.lines()[2]).toBe('2025-01-01 12:00:02 INFO after');
    expect(d.delivered[2]!.sourceOffset['position']).toBe(Buffer.byteLength(block(['2025-01-01 12:00:00 INFO start', ...trace, '2025-01-01 12:00:02 INFO after'])));
  });

  it('joins lines by continuation_pattern, and cuts an event longer than max_line_bytes into flagged pieces', async () => {
    // Guarantee: continuation lines join the event before them, and an oversized event is split, flagged, never dropped.
    const dir = tempDir();
    const file = path.join(dir, 'app.log');
    const big = ['Exception: big', ...Array.from({ length: 20 }, (_, i) => `\tat frame${i}`)];
    writeFileSync(file, block(['first', '\tat x', 'second', ...big, 'tail']));
    const d = await start(fast(dir, { format: 'multiline', multiline: { continuation_pattern: '^\\t', flush_timeout: '200ms' }, max_line_bytes: 100 }));
    await d.until((r) => r.some((x) => text(x) === 'tail'), 'the last event');
    const values = d.lines();
    expect(values.slice(0, 2)).toEqual(['first\n\tat x', 'second']);
    const pieces = d.delivered.slice(2, -1);
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces.every((r) => r.value!.length <= 100)).toBe(true);
    expect(pieces.map((r) => header(r, HEADERS.split))).toEqual([...pieces.slice(1).map(() => 'more'), 'end']);
    expect(pieces.map(text).join('\n')).toBe(big.join('\n'));
  });
});

describe('file-tail: discovery', () => {
  it('picks up new files under a ** glob, leaves excluded ones out, and with start_at: end skips only what existed at first start', async () => {
    // Guarantee: start_at: end skips existing content on the first start only; files that appear later are read whole.
    const dir = tempDir();
    mkdirSync(path.join(dir, 'a/b'), { recursive: true });
    writeFileSync(path.join(dir, 'a/old.log'), 'old-1\nold-2\n');
    const d = await start({ ...fast(dir), paths: [`${dir}/**/*.log`], exclude: ['skip-*.log'], start_at: 'end' });
    await d.settle(150);
    appendFileSync(path.join(dir, 'a/old.log'), 'old-3\n');
    writeFileSync(path.join(dir, 'a/b/new.log'), 'new-1\n');
    writeFileSync(path.join(dir, 'a/b/skip-me.log'), 'skipped\n');
    mkdirSync(path.join(dir, 'c'));
    writeFileSync(path.join(dir, 'c/later.log'), 'later-1\n');
    await d.until((r) => r.length >= 3, 'three lines');
    await d.settle(300);
    expect(sorted(d.lines())).toEqual(['later-1', 'new-1', 'old-3']);
  });

  it('follows changes with use_polling, without file system notifications', async () => {
    // Guarantee: the polling fallback alone finds appends and new files.
    const dir = tempDir();
    writeFileSync(path.join(dir, 'a.log'), 'a-1\n');
    const d = await start(fast(dir, { use_polling: true }));
    await d.until((r) => r.length >= 1, 'the first line');
    appendFileSync(path.join(dir, 'a.log'), 'a-2\n');
    writeFileSync(path.join(dir, 'b.log'), 'b-1\n');
    await d.until((r) => r.length >= 3, 'the append and the new file');
    expect(sorted(d.lines())).toEqual(['a-1', 'a-2', 'b-1']);
  });

  it('starts after the files created while it was waiting for a missing directory', async () => {
    // Guarantee: a log directory created after the start is watched once it exists, and its files are read whole.
    const dir = tempDir();
    const d = await start({ ...fast(dir), paths: [`${dir}/later/*.log`] });
    await d.settle(150);
    mkdirSync(path.join(dir, 'later'));
    writeFileSync(path.join(dir, 'later/x.log'), 'x-1\n');
    await d.until((r) => r.length >= 1, 'the line in the new directory');
    appendFileSync(path.join(dir, 'later/x.log'), 'x-2\n');
    await d.until((r) => r.length >= 2, 'the append');
    expect(d.lines()).toEqual(['x-1', 'x-2']);
  });
});

describe('file-tail: rotation while running', () => {
  it('rename and create: the renamed file is read to its end, including late appends, and the new file from its start', async () => {
    // Guarantee: a rotation by rename loses no line of the old file and reads the new one whole; the old file is released after rotate_wait.
    const dir = tempDir();
    const file = path.join(dir, 'app.log');
    writeFileSync(file, block(numbered('a', 0, 100)));
    const d = await start(fast(dir));
    await d.until((r) => r.length >= 100, 'the first lines');
    appendFileSync(file, block(numbered('a', 100, 150)));
    renameSync(file, path.join(dir, 'app.log.1'));
    // The writer still has the old file open for a moment.
    appendFileSync(path.join(dir, 'app.log.1'), block(numbered('a', 150, 160)));
    writeFileSync(file, block(numbered('b', 0, 40)));
    await d.until((r) => r.length >= 200, 'both files');
    await d.until(() => (d.h.counters.get('files_released_total') ?? 0) >= 1, 'the release of the rotated file');
    expect(sorted(d.lines())).toEqual(sorted([...numbered('a', 0, 160), ...numbered('b', 0, 40)]));
    expect(d.h.gauges.get('files_tracked')).toBe(1);
    // The old file's records kept one identity across the rename, and their headers name the path they were read under.
    const old = d.delivered.filter((r) => text(r).startsWith('a-'));
    expect(new Set(old.map((r) => r.sourcePartition['file'])).size).toBe(1);
  });

  it('rename to a name the globs match: the file keeps its identity and is not read again', async () => {
    // Guarantee: a file renamed within the globs is the same file: no line is delivered twice.
    const dir = tempDir();
    const file = path.join(dir, 'app.log');
    writeFileSync(file, block(numbered('a', 0, 50)));
    const d = await start({ ...fast(dir), paths: [`${dir}/app.log*`] });
    await d.until((r) => r.length >= 50, 'the first lines');
    renameSync(file, `${file}.1`);
    appendFileSync(`${file}.1`, block(numbered('a', 50, 60)));
    writeFileSync(file, block(numbered('b', 0, 10)));
    await d.until((r) => r.length >= 70, 'both files');
    await d.settle(300);
    // Once the rename was seen, records name the new path.
    appendFileSync(`${file}.1`, block(numbered('a', 60, 65)));
    await d.until((r) => r.length >= 75, 'the append to the renamed file');
    await d.settle(300);
    expect(sorted(d.lines())).toEqual(sorted([...numbered('a', 0, 65), ...numbered('b', 0, 10)]));
    expect(header(d.delivered.find((r) => text(r) === 'a-000062')!, HEADERS.path)).toBe(`${file}.1`);
  });

  it('copytruncate with the copy under the globs: the copy delivers what the truncation took, and nothing twice', async () => {
    // Guarantee: copytruncate loses no line and duplicates none: unread lines come from the copy, the truncated file restarts at 0.
    const dir = tempDir();
    const file = path.join(dir, 'app.log');
    writeFileSync(file, block(numbered('a', 0, 100)));
    const d = await start({ ...fast(dir), paths: [`${dir}/app.log*`] });
    await d.until((r) => r.length >= 100, 'the first lines');
    // Lines the task has not read yet when the copy and the truncation happen.
    appendFileSync(file, block(numbered('a', 100, 300)));
    copyFileSync(file, `${file}.1`);
    truncateSync(file, 0);
    appendFileSync(file, block(numbered('b', 0, 50)));
    await d.until((r) => r.length >= 350, 'every line');
    await d.settle(400);
    expect(sorted(d.lines())).toEqual(sorted([...numbered('a', 0, 300), ...numbered('b', 0, 50)]));
    expect(d.h.counters.get('truncations_total')).toBe(1);
    expect(d.h.counters.get('copies_detected_total')).toBe(1);
  });

  it('copytruncate with the copy seen before the truncation: the copy is read through the original, then only its unread part', async () => {
    // Guarantee: a copy noticed while its original is intact delivers nothing twice, and its unread tail once the original is truncated.
    const dir = tempDir();
    const file = path.join(dir, 'app.log');
    writeFileSync(file, block(numbered('a', 0, 100)));
    const d = await start({ ...fast(dir), paths: [`${dir}/app.log*`], batch_records: 10 });
    d.background();
    await waitFor(() => d.delivered.length >= 100);
    appendFileSync(file, block(numbered('a', 100, 400)));
    copyFileSync(file, `${file}.1`);
    // Long enough for a scan to see the copy while the original is still whole.
    await sleep(250);
    truncateSync(file, 0);
    appendFileSync(file, block(numbered('b', 0, 20)));
    await waitFor(() => d.delivered.length >= 420);
    await sleep(400);
    await d.stop();
    expect(sorted(d.lines())).toEqual(sorted([...numbered('a', 0, 400), ...numbered('b', 0, 20)]));
    expect(d.h.lines.some((l) => l.message?.includes('reading it through the original'))).toBe(true);
  });

  it('copytruncate with the copy outside the globs: the truncated file restarts at 0', async () => {
    // Guarantee: when a file shrinks below the read position, reading restarts at 0 and every new line arrives.
    const dir = tempDir();
    const file = path.join(dir, 'app.log');
    writeFileSync(file, block(numbered('a', 0, 100)));
    const d = await start(fast(dir));
    await d.until((r) => r.length >= 100, 'the first lines');
    copyFileSync(file, path.join(dir, 'app.log.1'));
    truncateSync(file, 0);
    appendFileSync(file, block(numbered('b', 0, 30)));
    await d.until((r) => r.length >= 130, 'the lines after the truncation');
    expect(d.lines().slice(100)).toEqual(numbered('b', 0, 30));
    expect(d.delivered[100]!.sourcePartition).not.toEqual(d.delivered[0]!.sourcePartition);
  });

  it('delete and recreate: the deleted file is read to its end and released, the new one read whole', async () => {
    // Guarantee: lines written just before a delete still arrive, the deleted file is released, and a file recreated under the name is new.
    const dir = tempDir();
    const file = path.join(dir, 'app.log');
    writeFileSync(file, block(numbered('a', 0, 10)));
    const d = await start(fast(dir));
    await d.until((r) => r.length >= 10, 'the first lines');
    appendFileSync(file, block(numbered('a', 10, 20)));
    unlinkSync(file);
    writeFileSync(file, block(numbered('b', 0, 10)));
    await d.until((r) => r.length >= 30, 'both files');
    await d.until(() => (d.h.counters.get('files_released_total') ?? 0) >= 1, 'the release');
    expect(sorted(d.lines())).toEqual(sorted([...numbered('a', 0, 20), ...numbered('b', 0, 10)]));
    expect(d.h.gauges.get('files_tracked')).toBe(1);
  });
});

describe('file-tail: checkpoints and restarts', () => {
  it('resumes each file by identity: a file renamed while stopped continues at its checkpoint, the new file starts at 0', async () => {
    // Guarantee: a rotation while stopped loses nothing and repeats nothing when the rotated name matches the globs.
    const dir = tempDir();
    const file = path.join(dir, 'app.log');
    writeFileSync(file, block(numbered('a', 0, 50)));
    const config = { ...fast(dir), paths: [`${dir}/app.log*`] };
    const first = await start(config);
    await first.until((r) => r.length >= 50, 'the first run');
    await first.stop();
    appendFileSync(file, block(numbered('a', 50, 70)));
    renameSync(file, `${file}.1`);
    writeFileSync(file, block(numbered('b', 0, 10)));
    const second = await start(config, first.committed.values());
    await second.until((r) => r.length >= 30, 'the second run');
    await second.settle(200);
    expect(sorted(second.lines())).toEqual(sorted([...numbered('a', 50, 70), ...numbered('b', 0, 10)]));
    expect(second.h.lines.some((l) => l.message === 'resuming file' && l.fields['was'] === file && l.fields['path'] === `${file}.1`)).toBe(true);
  });

  it('finds a file rotated out of the globs while stopped in the directory it was last seen in', async () => {
    // Guarantee: a file renamed to a name the globs miss while sluice was stopped is still read to its end after the restart.
    const dir = tempDir();
    const file = path.join(dir, 'app.log');
    writeFileSync(file, block(numbered('a', 0, 20)));
    const first = await start(fast(dir));
    await first.until((r) => r.length >= 20, 'the first run');
    await first.stop();
    appendFileSync(file, block(numbered('a', 20, 30)));
    renameSync(file, path.join(dir, 'app.log-20250101'));
    writeFileSync(file, block(numbered('b', 0, 5)));
    const second = await start(fast(dir), first.committed.values());
    await second.until((r) => r.length >= 15, 'the second run');
    await second.until(() => (second.h.counters.get('files_released_total') ?? 0) >= 1, 'the release of the rotated file');
    expect(sorted(second.lines())).toEqual(sorted([...numbered('a', 20, 30), ...numbered('b', 0, 5)]));
  });

  it('after a crash re-delivers exactly the uncommitted batch', async () => {
    // Guarantee: duplicates after a crash are only the records whose offsets were never committed, and nothing is lost.
    const dir = tempDir();
    const file = path.join(dir, 'app.log');
    writeFileSync(file, block(numbered('a', 0, 500)));
    const config = { ...fast(dir), batch_records: 100 };
    const first = await start(config);
    await first.until((r) => r.length >= 300, 'three batches');
    const committed = await first.crash(new Map());
    const second = await start(config, committed.values());
    await second.until((r) => r.length >= 300, 'the rest');
    await second.settle(200);
    expect(second.lines()).toEqual(numbered('a', 200, 500));
  });

  it('restarts a file truncated while stopped at 0, and reads its copy from the checkpoint', async () => {
    // Guarantee: copytruncate while stopped loses no line: the copy resumes at the original's checkpoint, the truncated file restarts.
    const dir = tempDir();
    const file = path.join(dir, 'app.log');
    writeFileSync(file, block(numbered('a', 0, 40)));
    const config = { ...fast(dir), paths: [`${dir}/app.log*`] };
    const first = await start(config);
    await first.until((r) => r.length >= 40, 'the first run');
    await first.stop();
    appendFileSync(file, block(numbered('a', 40, 60)));
    copyFileSync(file, `${file}.1`);
    truncateSync(file, 0);
    appendFileSync(file, block(numbered('b', 0, 5)));
    const second = await start(config, first.committed.values());
    await second.until((r) => r.length >= 25, 'the second run');
    await second.settle(200);
    expect(sorted(second.lines())).toEqual(sorted([...numbered('a', 40, 60), ...numbered('b', 0, 5)]));
  });

  it('keeps the identity of a file first seen shorter than the fingerprint as it grows, across restarts', async () => {
    // Guarantee: a file shorter than 256 bytes when first read keeps one identity (the fingerprint length is part of it) and resumes after a restart.
    const dir = tempDir();
    const file = path.join(dir, 'app.log');
    writeFileSync(file, 'x1\n');
    const config = fast(dir);
    const first = await start(config);
    await first.until((r) => r.length >= 1, 'the first line');
    appendFileSync(file, block(numbered('y', 0, 30)));
    await first.until((r) => r.length >= 31, 'the appended lines');
    expect(first.delivered[0]!.sourcePartition['file']).toMatch(/^\d+:\d+:3:[0-9a-f]{16}$/);
    expect(new Set(first.delivered.map((r) => r.sourcePartition['file'])).size).toBe(1);
    await first.stop();
    appendFileSync(file, 'z1\n');
    const second = await start(config, first.committed.values());
    await second.until((r) => r.length >= 1, 'the line after the restart');
    await second.settle(200);
    expect(second.lines()).toEqual(['z1']);
    expect(second.delivered[0]!.sourcePartition).toEqual(first.delivered[0]!.sourcePartition);
  });

  it('with start_at: end, a restart reads files changed while stopped whole and skips unchanged ones', async () => {
    // Guarantee: start_at: end never skips lines written while sluice was stopped.
    const dir = tempDir();
    writeFileSync(path.join(dir, 'busy.log'), 'old\n');
    writeFileSync(path.join(dir, 'idle.log'), 'idle-old\n');
    const config = fast(dir, { start_at: 'end' });
    const first = await start(config);
    await first.settle(150);
    appendFileSync(path.join(dir, 'busy.log'), 'new-1\n');
    await first.until((r) => r.length >= 1, 'the append');
    await first.stop();
    await sleep(20);
    writeFileSync(path.join(dir, 'rotated-in.log'), 'fresh\n');
    const second = await start(config, first.committed.values());
    await second.until((r) => r.length >= 1, 'the new file');
    await second.settle(200);
    expect(second.lines()).toEqual(['fresh']);
  });
});

describe('file-tail: health check', () => {
  it('accepts a readable or not yet existing log directory and refuses a path whose base is a file', async () => {
    // Guarantee: the health check fails only on a misconfiguration, never on a log directory that will appear later.
    const dir = tempDir();
    writeFileSync(path.join(dir, 'plain'), 'x');
    const options = { signal: new AbortController().signal, logger: Driver.silentLogger };
    await expect(fileTail.healthCheck!(configOf({ paths: [`${dir}/*.log`, `${dir}/missing/*.log`] }), options)).resolves.toBeUndefined();
    const err = await fileTail.healthCheck!(configOf({ paths: [`${dir}/plain/*.log`] }), options).catch((e: unknown) => e);
    expect(isSluiceError(err, 'CONFIG_INVALID')).toBe(true);
    expect((err as Error).message).toContain('paths[0]');
  });
});

describe('file-tail: config', () => {
  it.each(fileTail.examples!.map((e) => [e.title, e.config] as const))('example %s validates and makes a task', (_title, config) => {
    // Guarantee: every example in the reference doc is a working config.
    expect(configErrors(config as unknown as Record<string, unknown>)).toEqual([]);
    expect(fileTail.taskConfigs!(configOf(config as unknown as Record<string, unknown>), 4)).toHaveLength(1);
  });

  it.each([
    [{ paths: [] }, '/paths', 'must NOT have fewer than 1 items'],
    [{ paths: ['a'], key_field: 'id' }, '/key_field', 'boolean schema is false'],
    [{ paths: ['a'], format: 'multiline' }, '', "must have required property 'multiline'"],
    [{ paths: ['a'], format: 'multiline', multiline: { start_pattern: 'a', continuation_pattern: 'b' } }, '/multiline', 'must match exactly one schema in oneOf'],
    [{ paths: ['a'], multiline: { start_pattern: 'a' } }, '/multiline', 'boolean schema is false'],
    [{ paths: ['a'], poll_interval: '5' }, '/poll_interval', 'must match pattern'],
    [{ paths: ['a'], start_at: 'middle' }, '/start_at', 'must be equal to one of the allowed values'],
  ])('rejects %j', (config, at, message) => {
    // Guarantee: rules across fields live in the schema, so a bad config fails validation with the JSON path of the field.
    expect(configErrors(config)).toContainEqual([at, expect.stringContaining(message)]);
  });

  it.each([
    [{ paths: ['/var/log/[abc.log'] }, 'paths[0]'],
    [{ paths: ['a'], exclude: ['{a,b'] }, 'exclude[0]'],
    [{ paths: ['a'], format: 'multiline', multiline: { start_pattern: '(' } }, 'multiline.start_pattern'],
    [{ paths: ['a'], max_line_bytes: 4 }, 'max_line_bytes'],
  ])('fails %j before any task starts', (config, field) => {
    // Guarantee: globs and patterns the schema cannot check fail taskConfigs with CONFIG_INVALID naming the field.
    let error: unknown;
    try {
      fileTail.taskConfigs!(configOf(config), 1);
    } catch (err) {
      error = err;
    }
    expect(isSluiceError(error, 'CONFIG_INVALID')).toBe(true);
    expect((error as Error).message).toContain(field);
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(condition: () => boolean, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await sleep(10);
  }
}
