/**
 * The `file` sink: appends records as JSON lines to files named by a path template, rolls them by
 * size and age, and fsyncs every batch before its offsets can commit. See `schema.ts` for the
 * config and `task.ts` for the write path.
 */
import { randomBytes } from 'node:crypto';
import { access, constants, lstat, open, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { SluiceError, defineSink, type Logger } from '../../core/connector.ts';
import { sinkError } from './durable.ts';
import { PathTemplate, isCode } from './paths.ts';
import { fileSinkSchema, type FileSinkConfig } from './schema.ts';
import { FileSinkTask } from './task.ts';

export { FileSinkTask } from './task.ts';
export { fileSinkSchema, type FileSinkConfig } from './schema.ts';

// Errors no retry can fix: the path points somewhere this process may never write.
const MISCONFIGURED: ReadonlySet<string> = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EISDIR']);

/**
 * The file sink definition, registered in `connectors/index.ts`. Runs one task unless `path` holds
 * `{partition}`: two tasks appending to one file would interleave batches and could cut each
 * other's lines on restart.
 */
export const file = defineSink({
  kind: 'sink',
  name: 'file',
  description:
    'Appends records to local files as JSON lines, the record value or a full envelope, under a path template with the topic, partition and date. Files roll by size and age. Every batch is fdatasync\'ed before its offsets commit, and a restart cuts the torn last line a crash left, so files hold whole lines only. Delivery is at-least-once: after a crash a file may repeat the last uncommitted batch.',
  configSchema: fileSinkSchema,
  examples: [
    {
      title: 'The quickstart archive: record values in one file, rolled every 128 MiB',
      config: { path: 'data/out/clicks.jsonl', format: 'value', roll_bytes: '128MiB', max_open_files: 64 },
    },
    {
      title: 'Full records, one file per topic, day and partition, rolled hourly',
      config: {
        path: 'data/out/{topic}/{date}/part-{partition}.jsonl',
        format: 'envelope',
        roll_bytes: '1GiB',
        roll_interval: '1h',
        max_open_files: 64,
      },
    },
  ],
  metrics: {
    rolls_total: { type: 'counter', help: 'Files rolled, by size or age.' },
    torn_bytes_cut_total: { type: 'counter', help: 'Bytes of torn last lines cut from files a crash left behind.' },
  },
  taskConfigs(config, maxTasks) {
    if (maxTasks > 1 && !new PathTemplate(config.path).usesPartition) {
      throw new SluiceError(
        'CONFIG_INVALID',
        `tasks: ${maxTasks} needs {partition} in path, got ${JSON.stringify(config.path)}: tasks own partitions, and two tasks must not append to one file`,
        { context: { field: 'path', value: config.path } },
      );
    }
    return Array.from({ length: maxTasks }, () => config);
  },
  createTask: (config) => new FileSinkTask(config),
  healthCheck: (config, { signal, logger }) => checkWritable(config, signal, logger),
});

/**
 * Checks that the sink can create and append to its files: an existing fixed file is a writable
 * file, and the nearest existing directory above the files accepts a new entry, tried with an
 * empty probe file that is removed at once. Creates no directory.
 */
async function checkWritable(config: FileSinkConfig, signal: AbortSignal, logger: Logger): Promise<void> {
  signal.throwIfAborted();
  const template = new PathTemplate(config.path);
  const fail = (what: string, err: unknown): SluiceError => {
    const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
    if (typeof code === 'string' && MISCONFIGURED.has(code)) {
      return new SluiceError('CONFIG_INVALID', `path ${JSON.stringify(config.path)}: ${what} (${code})`, {
        context: { field: 'path', value: config.path },
        cause: err,
      });
    }
    return sinkError(err, `path ${JSON.stringify(config.path)}: ${what}`, { field: 'path', value: config.path });
  };

  if (template.template.indexOf('{') < 0) {
    try {
      const stats = await lstat(template.template);
      if (stats.isDirectory()) throw Object.assign(new Error(`${template.template} is a directory`), { code: 'EISDIR' });
      await access(template.template, constants.W_OK);
    } catch (err) {
      if (!isCode(err, 'ENOENT')) throw fail(`cannot append to ${template.template}`, err);
    }
  }

  let dir = template.baseDir;
  for (;;) {
    try {
      const stats = await stat(dir);
      if (!stats.isDirectory()) throw Object.assign(new Error(`${dir} is not a directory`), { code: 'ENOTDIR' });
      break;
    } catch (err) {
      const parent = path.dirname(dir);
      if (!isCode(err, 'ENOENT') || parent === dir) throw fail(`cannot use directory ${dir}`, err);
      dir = parent;
    }
  }

  const probe = path.join(dir, `.sluice-health-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await (await open(probe, 'wx')).close();
    await unlink(probe);
  } catch (err) {
    throw fail(`cannot create files in ${dir}`, err);
  }
  logger.debug({ dir }, 'output directory is writable');
}
