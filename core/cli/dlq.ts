/**
 * `sluice dlq list | show | redrive`: inspect the records connectors set aside in their dead-letter
 * topics, and re-inject them after a fix.
 *
 * Redrive appends each dead letter, with its original key, value and headers, to the topic it came
 * from (`sluice.original.topic`), where the sink reads it again. Progress is kept in the consumer
 * group `__redrive.<pipeline>.<connector>`, so running redrive twice re-injects nothing twice.
 * Dead letters of a source (a transform failed before the record reached a topic) go to the topic
 * the record was headed for, without passing the source's transforms again.
 */
import type { Command } from 'commander';
import { DLQ_HEADERS, DLQ_PREFIX, dlqTopic, originalHeaders } from '../runtime/dlq.ts';
import type { Log, LogRecord } from '../log/types.ts';
import { addDataDirOption, formatRecord, invalidArgument, parsePositiveInt, renderTable, withLog, type DataDirOptions } from './common.ts';

function header(record: LogRecord, name: string): string | null {
  return record.headers[name]?.toString('utf8') ?? null;
}

/** Reads every record of a single-partition topic from `from` to its current end. */
async function readAll(log: Log, topic: string, from: bigint | null, each: (record: LogRecord) => Promise<boolean | void> | boolean | void): Promise<bigint> {
  let offset = from ?? (await log.offsetFor(topic, 0, { kind: 'earliest' }));
  const end = await log.offsetFor(topic, 0, { kind: 'latest' });
  while (offset < end) {
    const result = await log.read(topic, 0, offset, { maxBytes: 1 << 20 });
    for (const record of result.records) {
      if (record.offset >= end) return end;
      if ((await each(record)) === false) return record.offset + 1n;
    }
    offset = result.nextOffset;
  }
  return end;
}

async function requireDlq(log: Log, pipeline: string, connector: string): Promise<string> {
  const topic = dlqTopic(pipeline, connector);
  if (!(await log.listTopics()).includes(topic)) {
    invalidArgument(`no dead letters for ${pipeline}/${connector}: topic ${topic} does not exist (see sluice dlq list)`);
  }
  return topic;
}

/** Registers the `dlq` commands on the program. */
export function registerDlqCommands(program: Command): void {
  const dlq = program.command('dlq').description('inspect and re-inject records that connectors set aside');

  addDataDirOption(
    dlq
      .command('list')
      .description('list dead-letter topics with their record counts')
      .action(async (opts: DataDirOptions) => {
        await withLog(opts.dataDir, 'read', async (log) => {
          const rows: string[][] = [];
          for (const topic of await log.listTopics()) {
            if (!topic.startsWith(DLQ_PREFIX)) continue;
            const p = (await log.describeTopic(topic)).partitions[0]!;
            const [pipeline, ...rest] = topic.slice(DLQ_PREFIX.length).split('.');
            rows.push([pipeline ?? '', rest.join('.'), String(p.endOffset - p.startOffset), topic]);
          }
          if (rows.length === 0) process.stdout.write('no dead letters\n');
          else process.stdout.write(renderTable(['PIPELINE', 'CONNECTOR', 'RECORDS', 'TOPIC'], rows, new Set(['RECORDS'])) + '\n');
        });
      }),
  );

  addDataDirOption(
    dlq
      .command('show')
      .description('print dead letters as JSON lines, with the error and where the record came from')
      .argument('<pipeline>')
      .argument('<connector>')
      .option('--max <n>', 'print at most N records', parsePositiveInt)
      .addHelpText('after', '\nExample:\n  $ sluice dlq show quickstart archive --max 10')
      .action(async (pipeline: string, connector: string, opts: DataDirOptions & { max?: number }) => {
        await withLog(opts.dataDir, 'read', async (log) => {
          const topic = await requireDlq(log, pipeline, connector);
          let shown = 0;
          await readAll(log, topic, null, (record) => {
            const base = JSON.parse(formatRecord({ ...record, headers: originalHeaders(record.headers) })) as Record<string, unknown>;
            const line = {
              error: header(record, DLQ_HEADERS.error),
              error_code: header(record, DLQ_HEADERS.errorCode),
              stage: header(record, DLQ_HEADERS.stage),
              original: {
                topic: header(record, DLQ_HEADERS.topic),
                partition: header(record, DLQ_HEADERS.partition) === null ? null : Number(header(record, DLQ_HEADERS.partition)),
                offset: header(record, DLQ_HEADERS.offset),
              },
              attempts: Number(header(record, DLQ_HEADERS.attempts) ?? '1'),
              failed_at: header(record, DLQ_HEADERS.failedAt),
              dlq_offset: base['offset'],
              key: base['key'],
              value: base['value'],
              headers: base['headers'],
            };
            process.stdout.write(JSON.stringify(line) + '\n');
            shown++;
            return opts.max === undefined || shown < opts.max;
          });
          if (shown === 0) process.stderr.write('no dead letters\n');
        });
      }),
  );

  addDataDirOption(
    dlq
      .command('redrive')
      .description('re-inject dead letters into the topics they came from, once each')
      .argument('<pipeline>')
      .argument('<connector>')
      .addHelpText('after', '\nRun it after fixing the cause (a transform, the target). It needs the data directory, so stop\nthe pipeline first; its sink then reads the records again when it restarts.\n\nExample:\n  $ sluice dlq redrive quickstart archive')
      .action(async (pipeline: string, connector: string, opts: DataDirOptions) => {
        await withLog(opts.dataDir, 'write', async (log) => {
          const topic = await requireDlq(log, pipeline, connector);
          const group = `__redrive.${pipeline}.${connector}`;
          const committed = (await log.committedOffsets(group)).find((o) => o.topic === topic)?.offset ?? null;
          const counts = new Map<string, number>();
          let batch: Array<{ topic: string; record: LogRecord }> = [];
          const flush = async (upTo: bigint): Promise<void> => {
            const byTopic = new Map<string, LogRecord[]>();
            for (const { topic: target, record } of batch) {
              const list = byTopic.get(target) ?? [];
              list.push(record);
              byTopic.set(target, list);
            }
            for (const [target, records] of byTopic) {
              await log.createTopic(target, {}, { ifNotExists: true });
              await log.append(target, records.map((r) => ({ key: r.key, value: r.value, headers: originalHeaders(r.headers), timestamp: r.timestamp })));
              counts.set(target, (counts.get(target) ?? 0) + records.length);
            }
            // Re-injected records are durable before the progress mark moves past them.
            await log.commitOffsets(group, [{ topic, partition: 0, offset: upTo }]);
            batch = [];
          };
          let last = committed;
          const end = await readAll(log, topic, committed, async (record) => {
            const target = header(record, DLQ_HEADERS.topic);
            if (target === null) return;
            batch.push({ topic: target, record });
            last = record.offset + 1n;
            if (batch.length >= 1000) await flush(last);
          });
          if (batch.length > 0 || (last ?? 0n) < end) await flush(end);
          const total = [...counts.values()].reduce((a, b) => a + b, 0);
          if (total === 0) process.stdout.write(`nothing to redrive for ${pipeline}/${connector}: every dead letter was re-injected already\n`);
          for (const [target, n] of counts) process.stdout.write(`re-injected ${n} records into ${target}\n`);
        });
      }),
  );
}
