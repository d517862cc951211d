/**
 * `sluice consume`: prints a topic's records as JSON lines, with `kafka-console-consumer`
 * semantics. Without `--group` it only reads, so it opens the log read-only and works next to a
 * running pipeline; with `--group` it commits what it printed, so the next run continues after it.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { Consumer, Log, LogRecord, OffsetSpec } from '../log/types.ts';
import {
  abortOnInterrupt,
  addDataDirOption,
  formatRecord,
  invalidArgument,
  isAbortError,
  Output,
  parsePositiveInt,
  parseTimestamp,
  sleep,
  withLog,
  type DataDirOptions,
} from './common.ts';

interface ConsumeOptions extends DataDirOptions {
  group?: string;
  fromBeginning?: boolean;
  fromTimestamp?: number;
  offset?: PartitionOffset[];
  max?: number;
  follow?: boolean;
}

interface PartitionOffset {
  partition: number;
  offset: bigint;
}

/** How long one read waits for new records with `--follow`; bounds how late Ctrl-C is noticed too. */
const FOLLOW_WAIT_MS = 1000;
/**
 * A read that comes back empty much sooner than it was allowed to wait gets this pause before the
 * next one, so following a log another process appends to polls instead of spinning.
 */
const EMPTY_READ_BACKOFF_MS = 200;

/** Registers the `consume` command on the program. */
export function registerConsumeCommand(program: Command): void {
  addDataDirOption(
    program
      .command('consume')
      .description('print records of a topic as JSON lines: {topic, partition, offset, timestamp, key, value, headers}')
      .argument('<topic>', 'topic to read')
      .option('--group <group>', 'read as this consumer group: start at its committed offsets and commit what was printed')
      .addOption(
        new Option('--from-beginning', 'start at the earliest offset (with --group: only where the group has not committed)').conflicts([
          'fromTimestamp',
          'offset',
        ]),
      )
      .addOption(
        new Option('--from-timestamp <time>', 'start at the first record at or after this ISO 8601 time (or epoch ms)')
          .argParser(parseTimestamp)
          .conflicts(['offset']),
      )
      .addOption(
        new Option('--offset <partition:offset>', 'read only this partition, starting at this offset; repeatable')
          .argParser(collectPartitionOffset)
          .conflicts(['group']),
      )
      .option('--max <n>', 'stop after printing this many records', parsePositiveInt)
      .option('--follow', 'keep waiting for new records until Ctrl-C (or --max)')
      .addHelpText(
        'after',
        '\nWithout --follow, stops at the end offsets the topic had when the command started. Without --group\n' +
          'and a start option, starts at the end, so only --follow prints anything.\n\n' +
          'Examples:\n' +
          '  $ sluice consume orders --from-beginning --max 5\n' +
          '  $ sluice consume orders --group audit            # continues where the last run of "audit" stopped\n' +
          '  $ sluice consume orders --from-timestamp 2024-05-01T12:00:00Z\n' +
          '  $ sluice consume orders --offset 2:1000 --follow',
      )
      .action(async (topic: string, opts: ConsumeOptions) => {
        const controller = new AbortController();
        const removeHandlers = abortOnInterrupt(controller);
        const output = new Output(process.stdout, () => controller.abort());
        try {
          const mode = opts.group === undefined ? 'read' : 'write';
          const printed = await withLog(opts.dataDir, mode, (log) =>
            opts.group === undefined
              ? consumeWithoutGroup(log, topic, opts, output, controller)
              : consumeWithGroup(log, topic, opts.group, opts, output, controller),
          );
          reportCount(printed, topic, opts);
        } finally {
          removeHandlers();
        }
      }),
  );
}

function collectPartitionOffset(value: string, previous: PartitionOffset[] | undefined): PartitionOffset[] {
  const match = /^(\d+):(\d+)$/.exec(value);
  if (match === null) throw new InvalidArgumentError('expected PARTITION:OFFSET, e.g. 0:42.');
  const partition = Number(match[1]);
  if (!Number.isSafeInteger(partition)) throw new InvalidArgumentError('partition out of range.');
  return [...(previous ?? []), { partition, offset: BigInt(match[2] ?? '0') }];
}

function reportCount(printed: number, topic: string, opts: ConsumeOptions): void {
  const startsAtEnd =
    opts.group === undefined && opts.fromBeginning !== true && opts.fromTimestamp === undefined && opts.offset === undefined;
  const hint =
    printed === 0 && startsAtEnd && opts.follow !== true
      ? ' (reading starts at the end of the topic: add --from-beginning to read stored records, or --follow to wait for new ones)'
      : '';
  process.stderr.write(`consumed ${printed} record${printed === 1 ? '' : 's'} from ${topic}${hint}\n`);
}

/** Counts printed records against `--max` and stops everything once it is reached. */
class Budget {
  private printed = 0;

  constructor(
    private readonly max: number | undefined,
    private readonly controller: AbortController,
  ) {}

  get count(): number {
    return this.printed;
  }

  /** Formats as many of `records` as the budget allows, and calls `onTaken` for each. */
  take(records: LogRecord[], onTaken: (record: LogRecord) => void = () => undefined): string {
    let text = '';
    for (const record of records) {
      if (this.max !== undefined && this.printed >= this.max) break;
      text += formatRecord(record) + '\n';
      this.printed++;
      onTaken(record);
    }
    if (this.max !== undefined && this.printed >= this.max) this.controller.abort();
    return text;
  }
}

async function consumeWithoutGroup(
  log: Log,
  topic: string,
  opts: ConsumeOptions,
  output: Output,
  controller: AbortController,
): Promise<number> {
  const description = await log.describeTopic(topic);
  const partitionCount = description.partitions.length;
  for (const { partition } of opts.offset ?? []) {
    if (partition >= partitionCount) {
      invalidArgument(`partition ${partition} does not exist: topic ${topic} has ${partitionCount} partition${partitionCount === 1 ? '' : 's'}`, {
        topic,
        partition,
      });
    }
  }

  const starts = new Map<number, bigint>();
  if (opts.offset !== undefined) {
    for (const { partition, offset } of opts.offset) {
      starts.set(partition, await log.offsetFor(topic, partition, { kind: 'offset', offset }));
    }
  } else {
    const spec: OffsetSpec =
      opts.fromBeginning === true
        ? { kind: 'earliest' }
        : opts.fromTimestamp !== undefined
          ? { kind: 'timestamp', timestamp: opts.fromTimestamp }
          : { kind: 'latest' };
    for (const p of description.partitions) starts.set(p.partition, await log.offsetFor(topic, p.partition, spec));
  }

  const budget = new Budget(opts.max, controller);
  const signal = controller.signal;
  // One loop per partition, like a Kafka consumer fetching from all of its partitions: a busy
  // partition does not hold back the others, and --follow waits on all of them at once.
  await Promise.all(
    [...starts].map(async ([partition, start]) => {
      const info = description.partitions.find((p) => p.partition === partition);
      const end = opts.follow === true ? null : (info?.endOffset ?? 0n);
      let offset = start;
      while (!signal.aborted && (end === null || offset < end)) {
        const began = Date.now();
        let result;
        try {
          result = await log.read(topic, partition, offset, { maxWaitMs: end === null ? FOLLOW_WAIT_MS : 0, signal });
        } catch (err) {
          if (isAbortError(err, signal)) return;
          throw err;
        }
        const visible = end === null ? result.records : result.records.filter((r) => r.offset < end);
        await output.write(budget.take(visible));
        if (result.records.length === 0 && result.nextOffset <= offset) {
          // Nothing readable below the captured end means the partition shrank under us (retention
          // or compaction); waiting would never finish.
          if (end !== null) return;
          if (Date.now() - began < EMPTY_READ_BACKOFF_MS) await sleep(EMPTY_READ_BACKOFF_MS, signal);
        }
        if (result.nextOffset > offset) offset = result.nextOffset;
      }
    }),
  );
  return budget.count;
}

async function consumeWithGroup(
  log: Log,
  topic: string,
  group: string,
  opts: ConsumeOptions,
  output: Output,
  controller: AbortController,
): Promise<number> {
  // Fails on an unknown topic with the same message as without --group, before joining the group.
  await log.describeTopic(topic);
  const consumer = await log.subscribe(group, [topic], { autoOffsetReset: 'earliest' });
  try {
    return await pollAndCommit(log, consumer, topic, opts, output, controller);
  } finally {
    await consumer.close();
  }
}

async function pollAndCommit(
  log: Log,
  consumer: Consumer,
  topic: string,
  opts: ConsumeOptions,
  output: Output,
  controller: AbortController,
): Promise<number> {
  const signal = controller.signal;
  if (opts.fromTimestamp !== undefined) {
    for (const { partition } of consumer.assignment()) {
      consumer.seek(topic, partition, await log.offsetFor(topic, partition, { kind: 'timestamp', timestamp: opts.fromTimestamp }));
    }
  }
  const ends = new Map<number, bigint>();
  if (opts.follow !== true) {
    for (const p of (await log.describeTopic(topic)).partitions) ends.set(p.partition, p.endOffset);
  }
  // Positions are only trusted after a first poll: a consumer may learn its assignment lazily.
  let polled = false;
  const caughtUp = (): boolean =>
    polled && consumer.positions().every((p) => p.topic !== topic || p.offset >= (ends.get(p.partition) ?? 0n));

  const budget = new Budget(opts.max, controller);
  while (!signal.aborted && (opts.follow === true || !caughtUp())) {
    const began = Date.now();
    let records: LogRecord[];
    try {
      records = await consumer.poll({ maxWaitMs: opts.follow === true ? FOLLOW_WAIT_MS : 0, signal });
      polled = true;
    } catch (err) {
      if (isAbortError(err, signal)) break;
      throw err;
    }
    const visible = opts.follow === true ? records : records.filter((r) => r.offset < (ends.get(r.partition) ?? 0n));
    // Commit exactly what was printed: a poll may return records past the captured end or past
    // --max, and committing the consumer's position would silently skip them on the next run.
    const next = new Map<number, bigint>();
    const text = budget.take(visible, (r) => next.set(r.partition, r.offset + 1n));
    await output.write(text);
    if (next.size > 0 && !output.isClosed) {
      await consumer.commit([...next].map(([partition, offset]) => ({ topic, partition, offset })));
    }
    if (records.length === 0 && Date.now() - began < EMPTY_READ_BACKOFF_MS) await sleep(EMPTY_READ_BACKOFF_MS, signal);
  }
  return budget.count;
}
