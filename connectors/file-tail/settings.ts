/**
 * The checked, parsed form of a file-tail config: globs compiled, sizes and durations in bytes and
 * milliseconds, patterns compiled. Built by `taskConfigs` (so a bad pattern fails the connector
 * before any task starts) and again by each task.
 */
import { SluiceError, parseDuration, parseSize } from '../../core/connector.ts';
import type { DecoderOptions } from './decode.ts';
import { compileExclude, compileGlob, type Glob } from './glob.ts';
import type { FileTailConfig } from './schema.ts';

export interface Settings {
  readonly globs: readonly Glob[];
  readonly excludes: ReadonlyArray<(file: string) => boolean>;
  readonly startAtEnd: boolean;
  readonly decoder: DecoderOptions;
  readonly partialTimeoutMs: number;
  /** Multiline only; Infinity otherwise. */
  readonly flushTimeoutMs: number;
  readonly rotateWaitMs: number;
  readonly pollIntervalMs: number;
  readonly usePolling: boolean;
  readonly batchBytes: number;
  readonly batchRecords: number;
}

/** Parses a validated config. Throws `CONFIG_INVALID` naming the field for a bad glob, pattern or size. */
export function settingsOf(config: FileTailConfig, cwd: string = process.cwd()): Settings {
  const globs = config.paths.map((pattern, i) => compileGlob(pattern, `paths[${i}]`, cwd));
  const excludes = config.exclude.map((pattern, i) => compileExclude(pattern, `exclude[${i}]`, cwd));
  const maxLineBytes = parseSize(config.max_line_bytes);
  if (maxLineBytes < 16) {
    throw new SluiceError('CONFIG_INVALID', `max_line_bytes must be at least 16 bytes, got ${JSON.stringify(config.max_line_bytes)}`, {
      context: { field: 'max_line_bytes', value: config.max_line_bytes },
    });
  }
  const multiline = config.format === 'multiline' ? config.multiline : undefined;
  const decoder: DecoderOptions = {
    format: config.format,
    maxLineBytes,
    ...(config.format === 'json' && config.key_field !== undefined ? { keyPath: config.key_field.split('.') } : {}),
    ...(multiline?.start_pattern !== undefined ? { startPattern: pattern(multiline.start_pattern, 'multiline.start_pattern') } : {}),
    ...(multiline?.continuation_pattern !== undefined ? { continuationPattern: pattern(multiline.continuation_pattern, 'multiline.continuation_pattern') } : {}),
  };
  return {
    globs,
    excludes,
    startAtEnd: config.start_at === 'end',
    decoder,
    partialTimeoutMs: parseDuration(config.partial_line_timeout),
    flushTimeoutMs: multiline ? parseDuration(multiline.flush_timeout) : Infinity,
    rotateWaitMs: parseDuration(config.rotate_wait),
    pollIntervalMs: Math.max(10, parseDuration(config.poll_interval)),
    usePolling: config.use_polling,
    batchBytes: Math.max(1, parseSize(config.batch_bytes)),
    batchRecords: config.batch_records,
  };
}

function pattern(source: string, field: string): RegExp {
  try {
    return new RegExp(source);
  } catch (err) {
    throw new SluiceError('CONFIG_INVALID', `${field} is not a valid regular expression: ${(err as Error).message}`, {
      context: { field, value: source },
      cause: err,
    });
  }
}
