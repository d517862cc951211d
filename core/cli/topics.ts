/**
 * `sluice topics create|list|describe|delete`: topic administration. Listing and describing open
 * the log read-only so they work while a pipeline holds the data directory.
 */
import { Option, type Command } from 'commander';
import type { Cleanup, FsyncPolicy, Log, TopicConfig, TopicDescription } from '../log/types.ts';
import {
  addDataDirOption,
  formatBytes,
  formatDuration,
  parseNonNegativeInt,
  parsePositiveInt,
  parseRetention,
  renderTable,
  toJson,
  withLog,
  type DataDirOptions,
} from './common.ts';

interface CreateOptions extends DataDirOptions {
  partitions: number;
  retentionMs?: number | null;
  retentionBytes?: number | null;
  cleanup?: Cleanup;
  fsync?: FsyncPolicy;
  fsyncIntervalMs?: number;
  segmentBytes?: number;
  segmentMs?: number;
  tombstoneRetentionMs?: number;
  ifNotExists?: boolean;
}

interface JsonOptions extends DataDirOptions {
  json?: boolean;
}

interface ListOptions extends JsonOptions {
  internal?: boolean;
}

const NUMERIC_COLUMNS = new Set(['PARTITIONS', 'PARTITION', 'START', 'END', 'RECORDS', 'SEGMENTS', 'SIZE']);

/** Registers the `topics` command group on the program. */
export function registerTopicsCommands(program: Command): void {
  const topics = program
    .command('topics')
    .description('create, inspect and delete topics')
    .addHelpText('after', '\nExample:\n  $ sluice topics create orders --partitions 4\n  $ sluice topics list');

  addDataDirOption(
    topics
      .command('create')
      .description('create a topic')
      .argument('<name>', 'topic name')
      .requiredOption('--partitions <n>', 'number of partitions', parsePositiveInt)
      .option('--retention-ms <ms>', 'delete segments older than this; -1 keeps data forever', parseRetention)
      .option('--retention-bytes <bytes>', 'delete the oldest segments while a partition is larger; -1 for no limit', parseRetention)
      .addOption(new Option('--cleanup <policy>', 'delete old segments, or compact to the latest value per key').choices(['delete', 'compact']))
      .addOption(new Option('--fsync <policy>', 'when an append is acknowledged').choices(['always', 'interval', 'never']))
      .option('--fsync-interval-ms <ms>', 'how often --fsync interval flushes to disk', parseNonNegativeInt)
      .option('--segment-bytes <bytes>', 'roll a segment file at this size', parsePositiveInt)
      .option('--segment-ms <ms>', 'roll a segment file when its first record is this old', parsePositiveInt)
      .option('--tombstone-retention-ms <ms>', 'compacted topics: how long deletes stay visible', parseNonNegativeInt)
      .option('--if-not-exists', 'succeed without changes when the topic already exists')
      .addHelpText(
        'after',
        '\nExamples:\n' +
          '  $ sluice topics create orders --partitions 4\n' +
          '  $ sluice topics create customers --partitions 2 --cleanup compact\n' +
          '  $ sluice topics create clicks --partitions 8 --retention-ms 604800000 --fsync interval',
      )
      .action(async (name: string, opts: CreateOptions) => {
        const config = topicConfigFromOptions(opts);
        const description = await withLog(opts.dataDir, 'write', (log) =>
          log.createTopic(name, config, { ifNotExists: opts.ifNotExists === true }),
        );
        const c = description.config;
        process.stdout.write(
          `created topic ${name}: ${c.partitions} partition${c.partitions === 1 ? '' : 's'}, cleanup ${c.cleanup}, ` +
            `retention ${formatDuration(c.retentionMs)} / ${c.retentionBytes === null ? 'unlimited' : formatBytes(c.retentionBytes)}, ` +
            `fsync ${c.fsync}\n`,
        );
      }),
  );

  addDataDirOption(
    topics
      .command('list')
      .description('list topics with their partition count, record count and size')
      .option('--json', 'print JSON instead of a table')
      .option('--internal', 'also list internal topics such as __consumer_offsets')
      .addHelpText('after', '\nExample:\n  $ sluice topics list --data-dir ./data')
      .action(async (opts: ListOptions) => {
        const descriptions = await withLog(opts.dataDir, 'read', async (log) => describeAll(log, opts.internal === true));
        if (opts.json === true) {
          process.stdout.write(toJson(descriptions.map(topicJson), 2) + '\n');
          return;
        }
        if (descriptions.length === 0) {
          process.stdout.write('no topics (create one with: sluice topics create NAME --partitions N)\n');
          return;
        }
        const rows = descriptions.map((d) => [
          d.name,
          String(d.partitions.length),
          d.config.cleanup,
          String(d.partitions.reduce((sum, p) => sum + (p.endOffset - p.startOffset), 0n)),
          formatBytes(d.partitions.reduce((sum, p) => sum + p.sizeBytes, 0)),
        ]);
        process.stdout.write(renderTable(['TOPIC', 'PARTITIONS', 'CLEANUP', 'RECORDS', 'SIZE'], rows, NUMERIC_COLUMNS));
      }),
  );

  addDataDirOption(
    topics
      .command('describe')
      .description("show a topic's settings and, per partition, its start and end offsets and size")
      .argument('<name>', 'topic name')
      .option('--json', 'print JSON instead of a table')
      .addHelpText('after', '\nExample:\n  $ sluice topics describe orders')
      .action(async (name: string, opts: JsonOptions) => {
        const d = await withLog(opts.dataDir, 'read', (log) => log.describeTopic(name));
        if (opts.json === true) {
          process.stdout.write(toJson(topicJson(d), 2) + '\n');
          return;
        }
        const c = d.config;
        const settings = [
          `topic ${d.name}`,
          `  partitions       ${c.partitions}`,
          `  cleanup          ${c.cleanup}`,
          `  retention        ${formatDuration(c.retentionMs)}, ${c.retentionBytes === null ? 'no size limit' : `${formatBytes(c.retentionBytes)} per partition`}`,
          `  fsync            ${c.fsync}${c.fsync === 'interval' ? ` every ${formatDuration(c.fsyncIntervalMs)}` : ''}`,
          `  segments roll at ${formatBytes(c.segmentBytes)} or ${formatDuration(c.segmentMs)}`,
        ];
        if (c.cleanup === 'compact') settings.push(`  tombstones kept  ${formatDuration(c.tombstoneRetentionMs)}`);
        const rows = d.partitions.map((p) => [
          String(p.partition),
          p.startOffset.toString(),
          p.endOffset.toString(),
          (p.endOffset - p.startOffset).toString(),
          String(p.segments),
          formatBytes(p.sizeBytes),
        ]);
        process.stdout.write(
          settings.join('\n') +
            '\n\n' +
            renderTable(['PARTITION', 'START', 'END', 'RECORDS', 'SEGMENTS', 'SIZE'], rows, NUMERIC_COLUMNS),
        );
      }),
  );

  addDataDirOption(
    topics
      .command('delete')
      .description('delete a topic and all its records')
      .argument('<name>', 'topic name')
      .addHelpText('after', '\nExample:\n  $ sluice topics delete orders')
      .action(async (name: string, opts: DataDirOptions) => {
        await withLog(opts.dataDir, 'write', (log) => log.deleteTopic(name));
        process.stdout.write(`deleted topic ${name}\n`);
      }),
  );
}

function topicConfigFromOptions(opts: CreateOptions): Partial<TopicConfig> {
  const config: Partial<TopicConfig> = { partitions: opts.partitions };
  if (opts.retentionMs !== undefined) config.retentionMs = opts.retentionMs;
  if (opts.retentionBytes !== undefined) config.retentionBytes = opts.retentionBytes;
  if (opts.cleanup !== undefined) config.cleanup = opts.cleanup;
  if (opts.fsync !== undefined) config.fsync = opts.fsync;
  if (opts.fsyncIntervalMs !== undefined) config.fsyncIntervalMs = opts.fsyncIntervalMs;
  if (opts.segmentBytes !== undefined) config.segmentBytes = opts.segmentBytes;
  if (opts.segmentMs !== undefined) config.segmentMs = opts.segmentMs;
  if (opts.tombstoneRetentionMs !== undefined) config.tombstoneRetentionMs = opts.tombstoneRetentionMs;
  return config;
}

/**
 * Kafka's convention, which the log follows for its offsets topic: a leading `__` marks a topic the
 * system keeps for itself, which a user listing their data does not want to see.
 */
function isInternalTopic(name: string): boolean {
  return name.startsWith('__');
}

async function describeAll(log: Log, includeInternal: boolean): Promise<TopicDescription[]> {
  const names = (await log.listTopics()).filter((name) => includeInternal || !isInternalTopic(name)).sort();
  return Promise.all(names.map((name) => log.describeTopic(name)));
}

function topicJson(d: TopicDescription): unknown {
  return {
    name: d.name,
    config: d.config,
    partitions: d.partitions.map((p) => ({
      partition: p.partition,
      startOffset: p.startOffset,
      endOffset: p.endOffset,
      sizeBytes: p.sizeBytes,
      segments: p.segments,
    })),
  };
}
