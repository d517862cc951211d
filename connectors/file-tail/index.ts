/**
 * The `file-tail` source: follows log files matched by globs through appends, renames, copytruncate
 * and deletes, and resumes from durable per-file checkpoints. See `schema.ts` for the config,
 * `task.ts` for rotation handling, `decode.ts` for lines, JSON and multiline events, and
 * `identity.ts` for file identity and the checkpoint format.
 */
import { access, constants, stat } from 'node:fs/promises';
import { SluiceError, defineSource, type Logger } from '../../core/connector.ts';
import { fileTailSchema, type FileTailConfig } from './schema.ts';
import { settingsOf } from './settings.ts';
import { FileTailTask } from './task.ts';

export { fileTailSchema, type FileTailConfig } from './schema.ts';
export { FileTailTask, CHUNK_BYTES, IDLE_POLL_MS } from './task.ts';
export { HEADERS } from './decode.ts';

// Examples are written as a user writes them, without the defaulted settings; the API types them as
// the validated config (defaults required), hence the assertion below, from a checked partial config.
const examples: ReadonlyArray<{ title: string; config: Partial<FileTailConfig> }> = [
  { title: 'Application logs, one record per line', config: { paths: ['/var/log/app/*.log'] } },
  {
    title: 'Java logs with stack traces, rotated files included',
    config: {
      paths: ['/var/log/app/*.log*'],
      exclude: ['*.gz'],
      format: 'multiline',
      multiline: { start_pattern: '^\\d{4}-\\d{2}-\\d{2}[T ]', flush_timeout: '1s' },
    },
  },
  {
    title: 'JSON lines keyed by user, only what is written from now on',
    config: { paths: ['/srv/*/events/**/*.jsonl'], format: 'json', key_field: 'user.id', start_at: 'end' },
  },
  { title: 'A network file system without change notifications', config: { paths: ['/mnt/share/logs/*.log'], use_polling: true, poll_interval: '5s' } },
];

/** The file-tail source connector definition. */
export const fileTail = defineSource({
  kind: 'source',
  name: 'file-tail',
  description:
    'Follows files matched by globs, as tail -F does, and turns their lines into records: raw lines, JSON lines (keyed by a field) or multiline events such as stack traces. ' +
    'It picks up new files, follows a file renamed by rotation to its end, restarts a truncated file (copytruncate) at 0 and reads the copy logrotate made of it from where reading stopped, and releases deleted files. ' +
    'A file is identified by device, inode and a fingerprint of its first 256 bytes (of all its bytes when it held fewer when first read: the fingerprint length is part of the identity, so the file keeps it as it grows), ' +
    'so a renamed file keeps its checkpoint, and a new file reusing a freed inode does not inherit one. The checkpoint is the byte position after the last record that is durable in the log, and advances only once it is. ' +
    'A restart, even after kill -9 in the middle of a rotation, resumes every file from its checkpoint, so nothing is lost and only the last batch may be read twice. ' +
    'Records carry the headers file.path and file.offset (and file.split, file.invalid_json where they apply) and have no key unless key_field sets one. ' +
    'One task follows all the files; use several entries to spread files over tasks.',
  configSchema: fileTailSchema,
  examples: examples as ReadonlyArray<{ title: string; config: FileTailConfig }>,
  metrics: {
    files_tracked: { type: 'gauge', help: 'Files followed now, including rotated files still being read to their end.' },
    read_bytes_total: { type: 'counter', help: 'Bytes read from files.' },
    lines_split_total: { type: 'counter', help: 'Lines or multiline events longer than max_line_bytes, cut into several records.' },
    invalid_json_total: { type: 'counter', help: 'Lines of a json-format file that were not valid JSON, sent as JSON strings.' },
    truncations_total: { type: 'counter', help: 'Files found truncated (copytruncate), whose reading restarted at 0.' },
    copies_detected_total: { type: 'counter', help: 'New files recognised as copies of a followed or truncated file, read only where the original was not.' },
    files_released_total: { type: 'counter', help: 'Deleted or renamed-away files released after being read to their end.' },
  },
  /**
   * One task follows every file: a rotated file may move between globs, and two tasks following it
   * would read it twice. The config is checked here (globs, patterns, sizes), so a mistake fails the
   * connector before it starts.
   */
  taskConfigs(config: FileTailConfig, _maxTasks: number): FileTailConfig[] {
    settingsOf(config);
    return [config];
  },
  createTask: (config: FileTailConfig) => new FileTailTask(config),
  healthCheck: (config, { signal, logger }) => checkReadable(config, signal, logger),
});

/**
 * Checks that every glob's base directory, if it exists, can be listed and entered. A missing one
 * is fine (a log directory may be created later) and only logged.
 */
async function checkReadable(config: FileTailConfig, signal: AbortSignal, logger: Logger): Promise<void> {
  const settings = settingsOf(config);
  for (const [i, glob] of settings.globs.entries()) {
    signal.throwIfAborted();
    try {
      const st = await stat(glob.base);
      if (!st.isDirectory()) {
        throw new SluiceError('CONFIG_INVALID', `paths[${i}]: ${glob.base} is not a directory`, { context: { field: `paths[${i}]`, value: glob.pattern } });
      }
      await access(glob.base, constants.R_OK | constants.X_OK);
      logger.debug({ dir: glob.base }, 'log directory is readable');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        logger.warn({ dir: glob.base, pattern: glob.pattern }, 'log directory does not exist yet; its files are picked up once it does');
        continue;
      }
      if (err instanceof SluiceError) throw err;
      throw new SluiceError('CONFIG_INVALID', `paths[${i}]: cannot read directory ${glob.base} (${code ?? (err as Error).message})`, {
        context: { field: `paths[${i}]`, value: glob.pattern },
        cause: err,
      });
    }
  }
}
