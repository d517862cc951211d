/**
 * End to end: the main job. `npm start` runs pipelines/quickstart.yaml with no external service,
 * tells the user where the output goes and how to look at it, logs status lines, can be inspected
 * while it runs, stops cleanly on Ctrl-C and continues where it stopped.
 */
import { cp, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, cleanUp, completeLines, seqs, sluiceOk, start, tempDir, waitFor, type Running } from './e2e-helpers.ts';

afterEach(cleanUp);

describe('quickstart', () => {
  // npm start runs the quickstart pipeline with no external service, and a second run after Ctrl-C continues without duplicates.
  it('runs pipelines/quickstart.yaml as npm start does, and continues after Ctrl-C', { timeout: 60_000 }, async () => {
    const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    const script = pkg.scripts['start']!.split(' ');
    expect(script.slice(0, 2)).toEqual(['node', 'core/cli/bin.js']);
    const args = script.slice(2);
    expect(args).toEqual(['run', 'pipelines/quickstart.yaml', '--banner']);

    const cwd = await tempDir('quickstart');
    await cp(path.join(ROOT, 'pipelines'), path.join(cwd, 'pipelines'), { recursive: true });
    const output = path.join(cwd, 'data/out/clicks.jsonl');
    // The API gets a free port rather than 8083, so the test does not collide with a sluice the
    // developer is running; --status-interval 1 makes the status lines come quickly.
    const run = (): Running => start([...args, '--api', '127.0.0.1:0', '--status-interval', '1'], { cwd });

    const first = run();
    await first.apiUrl();
    expect(first.stdout).toMatch(/^sluice is starting\. What goes where:\n/);
    expect(first.stdout).toContain('  sink   archive (file) <- clicks, writing data/out/clicks.jsonl\n');
    expect(first.stdout).toContain('  npx sluice consume clicks --from-beginning --max 5\n');
    expect(first.stdout).toContain('Stop with Ctrl-C');

    // The output grows.
    await waitFor(() => completeLines(output).length > 0, { what: 'data/out/clicks.jsonl to be written' });
    const early = completeLines(output).length;
    await waitFor(() => completeLines(output).length > early + 50, { what: 'data/out/clicks.jsonl to grow' });

    // The command the banner suggests works while the run holds the data directory.
    const consumed = await sluiceOk(['consume', 'clicks', '--from-beginning', '--max', '5'], { cwd });
    const records = consumed.stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { topic: string; value: { seq: number; user_id: string } });
    expect(records).toHaveLength(5);
    for (const r of records) expect(r).toMatchObject({ topic: 'clicks', value: { seq: expect.any(Number), user_id: expect.stringMatching(/^u_/) } });

    // A status line per connector: state, records in and out, rate, and lag for the sink.
    const status = await first.waitForLog((l) => l['connector'] === 'archive' && typeof l['msg'] === 'string' && l['msg'].startsWith('status archive: RUNNING'), 'a status line of archive');
    expect(status).toMatchObject({ state: 'RUNNING', records_in: expect.any(Number), records_out: expect.any(Number), rate_per_s: expect.any(Number), lag: expect.any(Number) });
    await first.waitForLog((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('status fake-clicks: RUNNING'), 'a status line of fake-clicks');

    // Ctrl-C stops it cleanly.
    expect(await first.stop('SIGINT')).toEqual({ code: 0, signal: null });
    expect(first.logLines().map((l) => l.msg)).toContain('stopped');
    expect(first.stderr).toBe('');
    const afterFirst = seqs(output);

    // The second run reopens the log and continues where the first stopped.
    const second = run();
    await second.apiUrl();
    await waitFor(() => completeLines(output).length > afterFirst.length + 100, { what: 'the second run to add output' });
    expect(await second.stop('SIGINT')).toEqual({ code: 0, signal: null });
    const all = seqs(output);
    expect(all.slice(0, afterFirst.length)).toEqual(afterFirst);
    // Both stops were graceful, so every record was committed once it was written: no duplicates.
    expect(all.length - new Set(all).size).toBe(0);
    // Exactly what the sink committed was written, each record once: the records of the topic below
    // the group's committed offsets are the lines of the output. (A graceful stop stops the source
    // first and lets the sink finish its batch, so records appended after its last poll wait in the
    // topic for the next run.)
    const committed = JSON.parse((await sluiceOk(['groups', 'describe', 'quickstart.archive', '--json'], { cwd })).stdout) as Array<{ partition: number; committed: number }>;
    const below = new Map(committed.map((p) => [p.partition, p.committed]));
    const topic = (await sluiceOk(['consume', 'clicks', '--from-beginning'], { cwd })).stdout.split('\n').filter((l) => l !== '');
    const delivered = topic.map((l) => JSON.parse(l) as { partition: number; offset: number; value: { seq: number } }).filter((r) => r.offset < below.get(r.partition)!);
    expect(new Set(all)).toEqual(new Set(delivered.map((r) => r.value.seq)));
    const description = await sluiceOk(['topics', 'describe', 'clicks'], { cwd });
    expect(description.stdout).toMatch(/partitions\s+4\n/);
    expect(description.stdout).toMatch(/retention\s+7d/);
  });
});
