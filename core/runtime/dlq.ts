/**
 * The dead-letter queue: records a connector could not process, set aside in the topic
 * `__dlq.<pipeline>.<connector>` with the original key, value and headers, and the failure in
 * `sluice.*` headers, so they can be inspected and re-injected after a fix (`sluice dlq redrive`).
 */
import type { Headers, Log } from '../log/types.ts';

export const DLQ_PREFIX = '__dlq.';

export function dlqTopic(pipeline: string, connector: string): string {
  return `${DLQ_PREFIX}${pipeline}.${connector}`;
}

/** Where a record failed: in a transform, in the sink's put, or while routing a source record. */
export type FailureStage = 'transform' | 'put' | 'route';

export interface DeadLetter {
  key: Buffer | null;
  value: Buffer | null;
  headers: Headers;
  timestamp: number;
  error: Error;
  stage: FailureStage;
  /** The topic the record came from (sinks) or was headed for (sources). */
  topic: string;
  partition: number | null;
  offset: bigint | null;
  attempts: number;
}

export const DLQ_HEADERS = {
  error: 'sluice.error',
  errorCode: 'sluice.error.code',
  stage: 'sluice.stage',
  topic: 'sluice.original.topic',
  partition: 'sluice.original.partition',
  offset: 'sluice.original.offset',
  attempts: 'sluice.attempts',
  failedAt: 'sluice.failed_at',
} as const;

/** Appends dead letters to the connector's DLQ topic, creating it on first use. */
export async function sendToDlq(log: Log, pipeline: string, connector: string, letters: readonly DeadLetter[]): Promise<void> {
  if (letters.length === 0) return;
  const topic = dlqTopic(pipeline, connector);
  await log.createTopic(topic, { partitions: 1 }, { ifNotExists: true });
  const now = new Date().toISOString();
  await log.append(
    topic,
    letters.map((l) => {
      const headers: Headers = { ...l.headers };
      headers[DLQ_HEADERS.error] = Buffer.from(l.error.message.slice(0, 4096));
      const code = (l.error as { code?: unknown }).code;
      if (typeof code === 'string') headers[DLQ_HEADERS.errorCode] = Buffer.from(code);
      headers[DLQ_HEADERS.stage] = Buffer.from(l.stage);
      headers[DLQ_HEADERS.topic] = Buffer.from(l.topic);
      if (l.partition !== null) headers[DLQ_HEADERS.partition] = Buffer.from(String(l.partition));
      if (l.offset !== null) headers[DLQ_HEADERS.offset] = Buffer.from(l.offset.toString());
      headers[DLQ_HEADERS.attempts] = Buffer.from(String(l.attempts));
      headers[DLQ_HEADERS.failedAt] = Buffer.from(now);
      return { key: l.key, value: l.value, headers, timestamp: l.timestamp };
    }),
  );
}

/** Headers of a dead letter without the `sluice.*` failure headers: what the record had originally. */
export function originalHeaders(headers: Headers): Headers {
  const out: Headers = {};
  for (const name in headers) if (!name.startsWith('sluice.')) out[name] = headers[name]!;
  return out;
}
