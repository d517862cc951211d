/**
 * The webhook source against the connector conformance suite: its examples and docs, a restart
 * mid-stream, and a timely stop, in a real runtime on a real log. A webhook generates nothing
 * itself, so the fixture is a sender that posts numbered events at a steady pace and, like a real
 * webhook sender, re-sends whatever was not answered 2xx. When the server goes away it parks, and
 * the next run's `feed` wakes it.
 */
import http from 'node:http';
import { describeSourceConformance } from '../../test/conformance/suite.ts';
import { webhook } from './index.ts';
import { freePort } from '../../test/support/free-port.ts';

const TOTAL = 1000;
const LOOPS = 4;
const EVENTS_PER_REQUEST = 2;
/** Each loop's pause between requests: about 4 * 2 / 10ms = 800 events/s, so the stream lasts over a second. */
const PACE_MS = 10;

/** Posts ids 0..TOTAL-1 from LOOPS concurrent loops to one port, re-sending what was not acknowledged. */
class Sender {
  private readonly todo: number[] = Array.from({ length: TOTAL }, (_, i) => i);
  private running = 0;
  /** Until then an unreachable server is retried: a run's listener may open just after `feed`. */
  private retryUntil = 0;

  constructor(readonly port: number) {}

  /** Starts the loops that are not running; each parks when the server stays unreachable. */
  resume(): void {
    this.retryUntil = Date.now() + 3000;
    while (this.running < LOOPS) {
      this.running++;
      void this.loop();
    }
  }

  private async loop(): Promise<void> {
    try {
      while (this.todo.length > 0) {
        const ids = this.todo.splice(0, EVENTS_PER_REQUEST);
        const status = await this.post(ids);
        if (status === null) {
          this.todo.push(...ids);
          if (Date.now() < this.retryUntil) {
            await new Promise((resolve) => setTimeout(resolve, 20));
            continue;
          }
          // The server is gone (stopped between runs): hold the events for the next run.
          return;
        }
        if (status < 200 || status >= 300) this.todo.push(...ids);
        await new Promise((resolve) => setTimeout(resolve, PACE_MS));
      }
    } finally {
      this.running--;
    }
  }

  /** One request without keep-alive, so no socket outlives it; null when no answer came. */
  private post(ids: number[]): Promise<number | null> {
    const body = JSON.stringify(ids.map((id) => ({ id, user_id: `u${id % 7}` })));
    return new Promise((resolve) => {
      const req = http.request(
        { host: '127.0.0.1', port: this.port, path: '/in', method: 'POST', agent: false, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
          res.on('error', () => resolve(null));
        },
      );
      req.on('error', () => resolve(null));
      req.end(body);
    });
  }
}

describeSourceConformance(webhook, {
  setup: async () => new Sender(await freePort()),
  configFor: ({ fixture }) => ({ host: '127.0.0.1', port: fixture.port, routes: [{ path: '/in', topic: 'conformance.records', format: 'json', key_field: 'user_id', auth: { type: 'none' } }] }),
  feed: async ({ fixture }) => fixture.resume(),
  expected: () => Array.from({ length: TOTAL }, (_, i) => String(i)),
  recordId: (record) => String((JSON.parse(record.value!.toString('utf8')) as { id: number }).id),
  // Only a request whose 200 was lost as the server closed can be re-sent after being stored.
  maxDuplicates: LOOPS * EVENTS_PER_REQUEST,
});
