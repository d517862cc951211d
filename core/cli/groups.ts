/**
 * `sluice groups list|describe|reset`: consumer-group administration. Listing and describing open
 * the log read-only, so lag can be watched while the pipeline that consumes is running.
 */
import { Option, type Command } from 'commander';
import type { GroupPartitionStatus, OffsetSpec } from '../log/types.ts';
import {
  addDataDirOption,
  invalidArgument,
  parseOffset,
  parseTimestamp,
  renderTable,
  toJson,
  withLog,
  type DataDirOptions,
} from './common.ts';

interface JsonOptions extends DataDirOptions {
  json?: boolean;
}

interface ResetOptions extends DataDirOptions {
  topic: string;
  toEarliest?: boolean;
  toLatest?: boolean;
  toTimestamp?: number;
  toOffset?: bigint;
}

const NUMERIC_COLUMNS = new Set(['PARTITION', 'COMMITTED', 'END', 'LAG', 'OFFSET']);
const TARGETS = ['toEarliest', 'toLatest', 'toTimestamp', 'toOffset'];

/** Registers the `groups` command group on the program. */
export function registerGroupsCommands(program: Command): void {
  const groups = program
    .command('groups')
    .description('inspect consumer groups and move their committed offsets')
    .addHelpText('after', '\nExample:\n  $ sluice groups describe audit');

  addDataDirOption(
    groups
      .command('list')
      .description('list consumer groups that have committed offsets')
      .option('--json', 'print JSON instead of plain text')
      .addHelpText('after', '\nExample:\n  $ sluice groups list')
      .action(async (opts: JsonOptions) => {
        const names = (await withLog(opts.dataDir, 'read', (log) => log.listGroups())).sort();
        if (opts.json === true) process.stdout.write(toJson(names) + '\n');
        else if (names.length === 0) process.stdout.write('no consumer groups\n');
        else process.stdout.write(names.join('\n') + '\n');
      }),
  );

  addDataDirOption(
    groups
      .command('describe')
      .description("show a group's committed offset, the end offset and the lag of every partition it reads")
      .argument('<group>', 'consumer group')
      .option('--json', 'print JSON instead of a table')
      .addHelpText('after', '\nExample:\n  $ sluice groups describe audit')
      .action(async (group: string, opts: JsonOptions) => {
        const status = await withLog(opts.dataDir, 'read', async (log) => {
          if (!(await log.listGroups()).includes(group)) {
            invalidArgument(`unknown consumer group ${group}: it has never committed an offset`, { group });
          }
          return log.describeGroup(group);
        });
        if (opts.json === true) {
          process.stdout.write(toJson(status.map(statusJson), 2) + '\n');
          return;
        }
        const rows = sortByTopicPartition(status).map((s) => [
          s.topic,
          String(s.partition),
          s.committed === null ? '-' : s.committed.toString(),
          s.endOffset.toString(),
          s.lag.toString(),
        ]);
        const total = status.reduce((sum, s) => sum + s.lag, 0n);
        process.stdout.write(
          `group ${group}: total lag ${total}\n\n` +
            renderTable(['TOPIC', 'PARTITION', 'COMMITTED', 'END', 'LAG'], rows, NUMERIC_COLUMNS),
        );
      }),
  );

  addDataDirOption(
    groups
      .command('reset')
      .description("move a group's committed offsets for every partition of a topic")
      .argument('<group>', 'consumer group')
      .requiredOption('--topic <topic>', 'topic whose offsets to move')
      .addOption(new Option('--to-earliest', 'to the first stored record').conflicts(TARGETS.filter((t) => t !== 'toEarliest')))
      .addOption(new Option('--to-latest', 'to the end, skipping everything stored').conflicts(TARGETS.filter((t) => t !== 'toLatest')))
      .addOption(
        new Option('--to-timestamp <time>', 'to the first record at or after this ISO 8601 time (or epoch ms)')
          .argParser(parseTimestamp)
          .conflicts(TARGETS.filter((t) => t !== 'toTimestamp')),
      )
      .addOption(
        new Option('--to-offset <offset>', 'to this offset in every partition (it must be stored in each)')
          .argParser(parseOffset)
          .conflicts(TARGETS.filter((t) => t !== 'toOffset')),
      )
      .addHelpText(
        'after',
        '\nThe group must not be consuming while it is reset; this command takes the data-directory lock.\n\n' +
          'Examples:\n' +
          '  $ sluice groups reset audit --topic orders --to-earliest\n' +
          '  $ sluice groups reset audit --topic orders --to-timestamp 2024-05-01T00:00:00Z',
      )
      .action(async (group: string, opts: ResetOptions, command: Command) => {
        const to = resetTarget(opts);
        if (to === null) {
          command.error('choose where to reset to: --to-earliest, --to-latest, --to-timestamp TIME or --to-offset N', {
            exitCode: 2,
            code: 'sluice.usage',
          });
        }
        const offsets = await withLog(opts.dataDir, 'write', (log) => log.resetGroup(group, opts.topic, to));
        const rows = [...offsets]
          .sort((a, b) => a.partition - b.partition)
          .map((o) => [o.topic, String(o.partition), o.offset.toString()]);
        process.stdout.write(`reset group ${group} on ${opts.topic}\n\n` + renderTable(['TOPIC', 'PARTITION', 'OFFSET'], rows, NUMERIC_COLUMNS));
      }),
  );
}

function resetTarget(opts: ResetOptions): OffsetSpec | null {
  if (opts.toEarliest === true) return { kind: 'earliest' };
  if (opts.toLatest === true) return { kind: 'latest' };
  if (opts.toTimestamp !== undefined) return { kind: 'timestamp', timestamp: opts.toTimestamp };
  if (opts.toOffset !== undefined) return { kind: 'offset', offset: opts.toOffset };
  return null;
}

function sortByTopicPartition(status: GroupPartitionStatus[]): GroupPartitionStatus[] {
  return [...status].sort((a, b) => (a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1));
}

function statusJson(s: GroupPartitionStatus): unknown {
  return { topic: s.topic, partition: s.partition, committed: s.committed, endOffset: s.endOffset, lag: s.lag };
}
