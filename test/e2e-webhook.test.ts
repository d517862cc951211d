/**
 * End to end: the webhook source in `sluice run` as a child process, with `kill -9` right after
 * 2xx answers. A 2xx means durable: after every crash and restart on the same data directory, each
 * acknowledged event is in the topic, in the partition its user_id hashes to.
 */
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanUp, sluiceOk, start, tempDir, type Running } from './e2e-helpers.ts';

afterEach(cleanUp);

const SPEC = `name: clickstream
topics:
  - name: clicks
    partitions: 4
sources:
  - name: collector
    connector: webhook
    config:
      port: 0
      routes:
        - path: /collect
          topic: clicks
          key_field: user_id
sinks:
  - name: archive
    connector: file
    topics: [clicks]
    config: { path: out/clicks.jsonl }
`;

/** Requests in flight at once: enough that several share one append. */
const CONCURRENCY = 16;
/** Crash-and-restart rounds. */
const ROUNDS = 6;

interface Sent {
  ids: string[];
  body: string;
}

let nextId = 0;
/** A batch of 1 to 4 click events with fresh ids, spread over 8 users. */
function batch(): Sent {
  const n = 1 + (nextId % 4);
  const events = Array.from({ length: n }, () => {
    const id = `e${nextId++}`;
    return { id, user_id: `u${nextId % 8}`, event: 'click', url: `/p/${nextId % 13}` };
  });
  return { ids: events.map((e) => e.id), body: JSON.stringify(n === 1 ? events[0] : events) };
}

function post(url: string, body: string, onReply: (status: number) => void): void {
  const req = http.request(`${url}/collect`, { method: 'POST', agent: false, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
    res.resume();
    onReply(res.statusCode ?? 0);
  });
  // The process is killed under the request: no answer, so nothing was promised.
  req.on('error', () => onReply(0));
  req.end(body);
}

/**
 * Posts from CONCURRENCY loops until `killAfter` requests got a 2xx, then SIGKILLs sluice from
 * inside that response's callback. Returns the ids of every event acknowledged before it died.
 */
async function postUntilKilled(run: Running, url: string, killAfter: number): Promise<{ acked: string[]; sent: number; unexpected: number[] }> {
  const acked: string[] = [];
  const unexpected: number[] = [];
  let ok = 0;
  let sent = 0;
  let killed = false;
  await new Promise<void>((resolve) => {
    let loops = CONCURRENCY;
    const loop = (): void => {
      if (killed) {
        if (--loops === 0) resolve();
        return;
      }
      const request = batch();
      sent++;
      post(url, request.body, (status) => {
        if (status >= 200 && status < 300) {
          acked.push(...request.ids);
          if (++ok >= killAfter && !killed) {
            killed = true;
            run.child.kill('SIGKILL');
          }
        } else if (status !== 0) {
          unexpected.push(status);
        }
        loop();
      });
    };
    for (let i = 0; i < CONCURRENCY; i++) loop();
  });
  await run.exited;
  return { acked, sent, unexpected };
}

describe('webhook end to end', () => {
  it('loses no acknowledged event to kill -9 right after the 2xx, across restarts', async () => {
    // Guarantee: a 2xx from the webhook means durable: SIGKILL right after it, restart, and every acknowledged event is in the topic.
    const dir = await tempDir('webhook-durable');
    await writeFile(path.join(dir, 'spec.yaml'), SPEC);
    const acked = new Set<string>();
    let sent = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const run = start(['run', 'spec.yaml', '--data-dir', 'data', '--api', '127.0.0.1:0', '--status-interval', '0'], { cwd: dir });
      const line = await run.waitForLog((l) => typeof l['url'] === 'string' && String(l.msg).startsWith('webhook listening'), 'the webhook listening line');
      // Kill after the first 2xx in the first round, after more of them later: the crash lands at
      // different points of the group commit each time.
      const result = await postUntilKilled(run, line['url'] as string, 1 + ((round * 7) % 20));
      expect(result.acked.length, `round ${round}: acknowledged events`).toBeGreaterThan(0);
      expect(result.unexpected, `round ${round}: answers other than 2xx`).toEqual([]);
      for (const id of result.acked) acked.add(id);
      sent += result.sent;
    }

    const { stdout } = await sluiceOk(['consume', 'clicks', '--from-beginning', '--data-dir', 'data'], { cwd: dir });
    const records = stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { partition: number; key: string; value: { id: string; user_id: string }; headers: Record<string, string> });
    const stored = new Set(records.map((r) => r.value.id));
    const missing = [...acked].filter((id) => !stored.has(id));
    expect(missing, `acknowledged events missing after ${ROUNDS} kill -9 rounds (${acked.size} acknowledged of ${sent} requests)`).toEqual([]);
    // Keyed by user_id: one user's events are all in one partition.
    const partitionOf = new Map<string, number>();
    for (const r of records) {
      expect(r.key).toBe(r.value.user_id);
      expect(partitionOf.get(r.key) ?? r.partition, `user ${r.key}`).toBe(r.partition);
      partitionOf.set(r.key, r.partition);
      expect(Object.keys(r.headers).sort()).toEqual(['received_at', 'remote_addr', 'request_id']);
    }
  });
});
