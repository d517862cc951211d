/**
 * Helpers every CLI command shares: opening the log, parsing flag values, and printing tables,
 * JSON and records. Commands touch the log only through the `Log` interface and `openLog`, so they
 * keep working when a replicated backend replaces the embedded one.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { SluiceError } from '../errors.ts';
import { openLog } from '../log/embedded-log.ts';
import type { Headers, Log, LogRecord } from '../log/types.ts';

export const DEFAULT_DATA_DIR = './data';

/** Options every command receives. */
export interface DataDirOptions {
  dataDir: string;
}

/** Adds `--data-dir`, defaulting to `$SLUICE_DATA_DIR` and then `./data`, to a command. */
export function addDataDirOption(command: Command): Command {
  return command.addOption(
    new Option('--data-dir <dir>', 'data directory of the log').env('SLUICE_DATA_DIR').default(DEFAULT_DATA_DIR),
  );
}

/**
 * Opens the log, runs `fn` and closes the log even when `fn` throws.
 *
 * `read` opens read-only: no lock, no recovery, no writes, so a user can inspect a data directory
 * while a pipeline holds it. `write` takes the exclusive lock and fails with `DATA_DIR_LOCKED`
 * when another process holds it.
 */
export async function withLog<T>(dataDir: string, mode: 'read' | 'write', fn: (log: Log) => Promise<T>): Promise<T> {
  const log = await openLog(dataDir, { readOnly: mode === 'read' });
  let result: T;
  try {
    result = await fn(log);
  } catch (err) {
    // The caller needs the error that stopped the command, not a secondary failure while closing.
    await log.close().catch(() => undefined);
    throw err;
  }
  await log.close();
  return result;
}

/** Commander argument parser for an integer ≥ 1 (partition counts, `--max`). */
export function parsePositiveInt(value: string): number {
  const n = parseIntStrict(value);
  if (n === null || n < 1) throw new InvalidArgumentError('expected a positive integer.');
  return n;
}

/** Commander argument parser for an integer ≥ 0 (sizes, durations in ms, partitions). */
export function parseNonNegativeInt(value: string): number {
  const n = parseIntStrict(value);
  if (n === null || n < 0) throw new InvalidArgumentError('expected a non-negative integer.');
  return n;
}

/** Commander argument parser for a retention limit: an integer ≥ 0, or -1 / `none` for no limit (Kafka's convention). */
export function parseRetention(value: string): number | null {
  if (value === 'none' || value === '-1') return null;
  const n = parseIntStrict(value);
  if (n === null || n < 0) throw new InvalidArgumentError('expected a non-negative integer, or -1 / "none" for no limit.');
  return n;
}

/** Commander argument parser for an offset: a non-negative integer of any size. */
export function parseOffset(value: string): bigint {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a non-negative integer offset.');
  return BigInt(value);
}

/**
 * Commander argument parser for a point in time: an ISO 8601 date (`2024-05-01T12:00:00Z`) or
 * milliseconds since the epoch. Returns milliseconds since the epoch.
 */
export function parseTimestamp(value: string): number {
  if (/^\d+$/.test(value)) {
    const ms = Number(value);
    if (Number.isSafeInteger(ms)) return ms;
  }
  // Date.parse accepts many loose formats; requiring a leading year keeps "5" or "May" from
  // silently meaning something the user did not intend.
  const ms = /^\d{4}-\d{2}-\d{2}/.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(ms)) {
    throw new InvalidArgumentError('expected an ISO 8601 time such as 2024-05-01T12:00:00Z, or milliseconds since the epoch.');
  }
  return ms;
}

function parseIntStrict(value: string): number | null {
  if (!/^-?\d+$/.test(value.trim())) return null;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : null;
}

/**
 * Converts bigint offsets for JSON output: a number when it is exactly representable, so `jq` and
 * scripts can do arithmetic on it, else a decimal string so no digit is lost.
 */
export function offsetToJson(offset: bigint): number | string {
  return offset <= BigInt(Number.MAX_SAFE_INTEGER) && offset >= BigInt(Number.MIN_SAFE_INTEGER)
    ? Number(offset)
    : offset.toString();
}

/** `JSON.stringify` that accepts bigints, using {@link offsetToJson}. */
export function toJson(value: unknown, space?: number): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? offsetToJson(v) : v), space);
}

/** Formats a byte count for people: `512 B`, `1.5 KiB`, `3.2 GiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** Formats milliseconds for people, choosing the largest unit that divides them: `7d`, `90m`, `1500ms`. */
export function formatDuration(ms: number | null): string {
  if (ms === null) return 'forever';
  const units: Array<[string, number]> = [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ];
  for (const [suffix, size] of units) {
    if (ms >= size && ms % size === 0) return `${ms / size}${suffix}`;
  }
  return `${ms}ms`;
}

/**
 * Renders rows as an aligned plain-text table with a header line. Columns whose header is listed
 * in `rightAligned` are right-aligned, which is how people compare numbers.
 */
export function renderTable(header: string[], rows: string[][], rightAligned: ReadonlySet<string> = new Set()): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((cell, i) => {
        const width = widths[i] ?? 0;
        return rightAligned.has(header[i] ?? '') ? cell.padStart(width) : cell.padEnd(width);
      })
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/**
 * Serialises a record as the one-line JSON the `consume` command prints:
 * `{"topic","partition","offset","timestamp","key","value","headers"}`.
 *
 * A value that is valid JSON is embedded as is rather than parsed and re-serialised, so numbers
 * beyond double precision and key order survive the round trip; only a value spanning several lines
 * is re-serialised, to keep one record per line.
 */
export function formatRecord(record: LogRecord): string {
  const prefix =
    `{"topic":${JSON.stringify(record.topic)},"partition":${record.partition},` +
    `"offset":${JSON.stringify(offsetToJson(record.offset))},"timestamp":${record.timestamp},` +
    `"key":${record.key === null ? 'null' : JSON.stringify(record.key.toString('utf8'))},"value":`;
  return `${prefix}${formatValue(record.value)},"headers":${JSON.stringify(headersToStrings(record.headers))}}`;
}

function formatValue(value: Buffer | null): string {
  if (value === null) return 'null';
  const text = value.toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return JSON.stringify(text);
  }
  const trimmed = text.trim();
  return /[\n\r\u2028\u2029]/.test(trimmed) ? JSON.stringify(parsed) : trimmed;
}

function headersToStrings(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) out[name] = value.toString('utf8');
  return out;
}

/**
 * Writes to a stream with backpressure, and turns a closed pipe (`sluice consume | head`) into a
 * stop signal instead of an uncaught EPIPE.
 */
export class Output {
  private closed = false;

  constructor(
    private readonly stream: NodeJS.WritableStream,
    onClosed: () => void,
  ) {
    // EPIPE is the common case; any other write error equally means no one will see more output.
    stream.on('error', () => {
      this.closed = true;
      onClosed();
    });
  }

  /** Whether the reader went away; nothing written after that reaches anyone. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Writes `text` and resolves once the stream can take more, or the reader went away. */
  async write(text: string): Promise<void> {
    if (text === '' || this.closed) return;
    if (this.stream.write(text)) {
      // A pipe's EPIPE arrives as an event; reads that resolve without I/O would otherwise keep the
      // loop in microtasks and print a whole topic into a closed pipe before noticing.
      await new Promise<void>((resolve) => setImmediate(resolve));
      return;
    }
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.stream.off('drain', done);
        this.stream.off('error', done);
        this.stream.off('close', done);
        resolve();
      };
      this.stream.on('drain', done);
      this.stream.on('error', done);
      this.stream.on('close', done);
    });
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Stops a command's work on the first Ctrl-C so it can commit what it printed and close the log
 * cleanly; a second Ctrl-C exits at once for a user who does not want to wait.
 */
export function abortOnInterrupt(controller: AbortController): () => void {
  let interrupts = 0;
  const onSignal = (): void => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}

/** Throws the `INVALID_ARGUMENT` error the CLI prints as a one-line message. */
export function invalidArgument(message: string, context: Record<string, unknown> = {}): never {
  throw new SluiceError('INVALID_ARGUMENT', message, { context });
}

/** Whether an error is the rejection of an aborted wait rather than a real failure. */
export function isAbortError(err: unknown, signal: AbortSignal): boolean {
  return signal.aborted || (err instanceof Error && err.name === 'AbortError');
}
