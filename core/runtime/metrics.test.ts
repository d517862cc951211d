/**
 * The metrics a task reports, read back in the Prometheus text format the admin API serves. Each
 * test opens with one sentence naming the guarantee it pins.
 */
import { describe, expect, it } from 'vitest';
import type { MetricSpec } from '../connector.ts';
import { isSluiceError } from '../errors.ts';
import { RuntimeMetrics } from './metrics.ts';

const declared: Record<string, MetricSpec> = {
  ack_seconds: { type: 'histogram', help: 'Time to answer.', labels: ['route'] },
  requests_total: { type: 'counter', help: 'Requests.', labels: ['route', 'status'] },
};

/** The samples of one metric family: `name{labels} value` lines, labels as written. */
function samples(text: string, family: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(family)) continue;
    const space = line.lastIndexOf(' ');
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

describe('task metrics', () => {
  it('exports a declared histogram with cumulative buckets, sum and count per label set, like the runtime histograms', async () => {
    // Guarantee: a task's histogram samples reach /metrics in Prometheus' histogram layout, each label set apart, and its help and type are declared.
    const metrics = new RuntimeMetrics();
    const task = metrics.taskMetrics('webhook', declared, { pipeline: 'p', connector: 'c', task: 0 });
    for (const v of [0.0004, 0.0005, 0.003, 0.003, 20]) task.observe('ack_seconds', v, { route: '/a' });
    task.observe('ack_seconds', 0.2, { route: '/b' });
    const text = await metrics.registry.metrics();
    expect(text).toContain('# HELP sluice_webhook_ack_seconds Time to answer.');
    expect(text).toContain('# TYPE sluice_webhook_ack_seconds histogram');
    const a = 'pipeline="p",connector="c",task="0",route="/a"';
    const got = samples(text, 'sluice_webhook_ack_seconds');
    // Bounds are inclusive upper limits, as in prom-client: 0.0005 falls in le="0.0005".
    expect(got.get(`sluice_webhook_ack_seconds_bucket{le="0.0005",${a}}`)).toBe(2);
    expect(got.get(`sluice_webhook_ack_seconds_bucket{le="0.001",${a}}`)).toBe(2);
    expect(got.get(`sluice_webhook_ack_seconds_bucket{le="0.005",${a}}`)).toBe(4);
    expect(got.get(`sluice_webhook_ack_seconds_bucket{le="10",${a}}`)).toBe(4);
    expect(got.get(`sluice_webhook_ack_seconds_bucket{le="+Inf",${a}}`)).toBe(5);
    expect(got.get(`sluice_webhook_ack_seconds_sum{${a}}`)).toBeCloseTo(20.0069, 10);
    expect(got.get(`sluice_webhook_ack_seconds_count{${a}}`)).toBe(5);
    const b = 'pipeline="p",connector="c",task="0",route="/b"';
    expect(got.get(`sluice_webhook_ack_seconds_bucket{le="0.1",${b}}`)).toBe(0);
    expect(got.get(`sluice_webhook_ack_seconds_bucket{le="0.25",${b}}`)).toBe(1);
    expect(got.get(`sluice_webhook_ack_seconds_count{${b}}`)).toBe(1);
    // Every bucket line of a label set, +Inf included: 14 bounds plus one.
    expect([...got.keys()].filter((k) => k.startsWith('sluice_webhook_ack_seconds_bucket') && k.includes(a))).toHaveLength(15);
  });

  it('keeps the series of two tasks of one connector apart, and refuses an undeclared label or a sample that is not a number', async () => {
    // Guarantee: tasks share one metric family without mixing their samples, and a programming error is reported, not exported.
    const metrics = new RuntimeMetrics();
    const t0 = metrics.taskMetrics('webhook', declared, { pipeline: 'p', connector: 'c', task: 0 });
    const t1 = metrics.taskMetrics('webhook', declared, { pipeline: 'p', connector: 'c', task: 1 });
    t0.observe('ack_seconds', 0.01, { route: '/a' });
    t1.observe('ack_seconds', 0.01, { route: '/a' });
    t1.observe('ack_seconds', 0.01, { route: '/a' });
    const got = samples(await metrics.registry.metrics(), 'sluice_webhook_ack_seconds_count');
    expect(got.get('sluice_webhook_ack_seconds_count{pipeline="p",connector="c",task="0",route="/a"}')).toBe(1);
    expect(got.get('sluice_webhook_ack_seconds_count{pipeline="p",connector="c",task="1",route="/a"}')).toBe(2);
    const codeOf = (fn: () => void): string | undefined => {
      try {
        fn();
      } catch (err) {
        return isSluiceError(err) ? err.code : 'not a SluiceError';
      }
      return undefined;
    };
    expect(codeOf(() => t0.observe('ack_seconds', 1, { route: '/new', colour: 'red' }))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => t0.observe('ack_seconds', Number.NaN, { route: '/a' }))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => t0.observe('nope', 1))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => t0.observe('requests_total', 1))).toBe('INVALID_ARGUMENT');
  });
});
