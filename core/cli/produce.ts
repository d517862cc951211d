/**
 * `sluice produce`: appends JSON lines from stdin to a topic, the way `kafka-console-producer`
 * does, and reports how many records the log acknowledged — also when a bad line stops it, so the
 * user knows exactly which lines are stored.
 */
import type { Command } from 'commander';
import { SluiceError } from '../errors.ts';
import type { Log, ProducerRecord } from '../log/types.ts';
import { addDataDirOption, withLog, type DataDirOptions } from './common.ts';

interface ProduceOptions extends DataDirOptions {
  keyField?: string;
  batchSize: number;
}

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;
const DEFAULT_BATCH_SIZE = 1000;

/** Registers the `produce` command on the program. */
export function registerProduceCommand(program: Command): void {
  addDataDirOption(
    program
      .command('produce')
      .description('append JSON lines from stdin to a topic, one record per line')
      .argument('<topic>', 'topic to append to')
      .option(
        '--key-field <field>',
        'use this top-level field of each JSON line as the record key (strings as is, other values as JSON); ' +
          'records with the same key go to the same partition',
      )
      .addHelpText(
        'after',
        '\nThe record value is the line as given. Blank lines are skipped; a line that is not valid JSON stops\n' +
          'the command with its line number, after appending the lines before it.\n\n' +
          'Examples:\n' +
          '  $ echo \'{"id":1,"customer":"ada"}\' | sluice produce orders --key-field customer\n' +
          '  $ sluice produce orders --key-field customer < orders.jsonl',
      )
      .action(async (topic: string, opts: Omit<ProduceOptions, 'batchSize'>) => {
        if (process.stdin.isTTY) process.stderr.write('reading JSON lines from stdin; press Ctrl-D to finish\n');
        await withLog(opts.dataDir, 'write', async (log) => {
          // Fail on an unknown topic before reading stdin, which may never end.
          await log.describeTopic(topic);
          await produceLines(log, topic, process.stdin, { ...opts, batchSize: DEFAULT_BATCH_SIZE });
        });
      }),
  );
}

/**
 * Appends every JSON line of `input` to `topic` in batches of up to `batchSize` (a batch is also
 * flushed at the end of each input chunk, so a slow producer's records do not wait for 1000 more),
 * then prints `produced N records to TOPIC (acknowledged)` to stderr.
 *
 * Throws `INVALID_ARGUMENT` naming the line (`stdin:LINE: invalid JSON: ...`) at the first line that
 * is not JSON, after appending and reporting the lines before it. Errors of the log propagate after
 * the count of what was acknowledged before them is reported.
 */
export async function produceLines(
  log: Log,
  topic: string,
  input: AsyncIterable<Buffer | string>,
  opts: ProduceOptions,
): Promise<number> {
  let acknowledged = 0;
  let lineNumber = 0;
  let batch: ProducerRecord[] = [];
  let pending: Buffer | null = null;

  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const records = batch;
    batch = [];
    const result = await log.append(topic, records);
    acknowledged += result.count;
  };

  const addLine = (line: Buffer): void => {
    lineNumber++;
    const end = line.length > 0 && line[line.length - 1] === CARRIAGE_RETURN ? line.length - 1 : line.length;
    // Copied so the record does not pin the whole stdin chunk in memory until the append resolves.
    const value = Buffer.from(line.subarray(0, end));
    const text = value.toString('utf8');
    if (text.trim() === '') return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new SluiceError('INVALID_ARGUMENT', `stdin:${lineNumber}: invalid JSON: ${reason}`, {
        context: { topic, line: lineNumber },
      });
    }
    batch.push({ key: opts.keyField === undefined ? null : keyOf(parsed, opts.keyField), value });
  };

  try {
    for await (const chunk of input) {
      let data = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
      if (pending !== null) {
        data = Buffer.concat([pending, data]);
        pending = null;
      }
      let start = 0;
      for (let nl = data.indexOf(NEWLINE, start); nl !== -1; nl = data.indexOf(NEWLINE, start)) {
        addLine(data.subarray(start, nl));
        start = nl + 1;
        if (batch.length >= opts.batchSize) await flush();
      }
      if (start < data.length) pending = data.subarray(start);
      await flush();
    }
    if (pending !== null) addLine(pending);
    await flush();
  } catch (err) {
    // Lines before a bad one are valid input the user meant to send: store them, so the reported
    // count matches "every line before LINE", then surface the error.
    let failure = err;
    if (err instanceof SluiceError && err.context['line'] !== undefined) {
      try {
        await flush();
      } catch (appendErr) {
        failure = appendErr;
      }
    }
    report(acknowledged, topic);
    throw failure;
  }
  report(acknowledged, topic);
  return acknowledged;
}

function report(acknowledged: number, topic: string): void {
  process.stderr.write(`produced ${acknowledged} record${acknowledged === 1 ? '' : 's'} to ${topic} (acknowledged)\n`);
}

/**
 * The key of a record: the UTF-8 of the field's value, a string as is and any other value as JSON.
 * A line without the field (or with null) has no key, so it is spread over partitions rather than
 * rejected; compacted topics reject such records in the log.
 */
function keyOf(parsed: unknown, field: string): Buffer | null {
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return null;
  const value = (parsed as Record<string, unknown>)[field];
  if (value === undefined || value === null) return null;
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value), 'utf8');
}
