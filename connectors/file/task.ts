/**
 * The file sink task: appends each batch as JSON lines, one write and one fdatasync per file, and
 * resolves `put` only after that, so the runtime's commit-after-put makes every committed record
 * durable. Delivery is at-least-once: after a crash the records after the last committed offset
 * are put again, so a file may repeat the last uncommitted batch, never more, and a torn line
 * left by the crash is cut before anything is appended.
 */
import { mkdir, open, rename, lstat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import {
  SluiceError,
  parseDuration,
  parseSize,
  type SinkRecord,
  type SinkTask,
  type SinkTaskContext,
  type TopicPartition,
} from '../../core/connector.ts';
import { cutTornTail, cutTornTailAt, fsyncDir, sinkError } from './durable.ts';
import { envelopeLine, valueLine } from './encode.ts';
import { PathTemplate, isCode, nextSequence, rolledName } from './paths.ts';
import type { FileSinkConfig } from './schema.ts';

/** An active file held open between batches. */
interface OpenFile {
  readonly path: string;
  readonly handle: FileHandle;
  /** Bytes in the file, including writes not yet fdatasync'ed. */
  size: number;
  /** Bytes known durable: the size after the last successful fdatasync, or at open. */
  syncedSize: number;
  /** Milliseconds since the epoch, for `roll_interval`. */
  readonly createdAt: number;
  /** `topic\0partition` of every partition that wrote here, so `close` finds the files to release. */
  readonly partitions: Set<string>;
}

interface Group {
  readonly lines: string[];
  readonly partitions: Set<string>;
}

/** The longest a time roll waits past its due time when no batch arrives. */
const MAX_ROLL_CHECK_MS = 1000;

/**
 * One file sink task. The runtime calls `start`, `open`, then `put` per batch, and `close`/`stop`
 * at the end; see {@link SinkTask} for the lifecycle. Calls never overlap; the task's own timer
 * for time rolls runs between them, serialised with them.
 */
export class FileSinkTask implements SinkTask {
  readonly #config: FileSinkConfig;
  readonly #encode: (record: SinkRecord) => string;
  readonly #rollBytes: number;
  readonly #rollIntervalMs: number | undefined;
  #template: PathTemplate | undefined;
  #ctx: SinkTaskContext | undefined;
  /** Open files in least-recently-written order, for eviction past `max_open_files`. */
  readonly #files = new Map<string, OpenFile>();
  /** The next rolled-file sequence per active path, learnt from the directory at the first roll. */
  readonly #sequences = new Map<string, number>();
  #lock: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #rollCheckPending = false;

  /** Builds the task from a validated config. No I/O; throws `INVALID_ARGUMENT` for a bad size or duration. */
  constructor(config: FileSinkConfig) {
    this.#config = config;
    this.#encode = config.format === 'envelope' ? envelopeLine : valueLine;
    this.#rollBytes = parseSize(config.roll_bytes);
    this.#rollIntervalMs = config.roll_interval === undefined ? undefined : parseDuration(config.roll_interval);
  }

  /**
   * Resolves the path template against the working directory and starts the time-roll timer.
   * Files are opened lazily, by `open` (to cut torn lines) and by `put`.
   */
  async start(ctx: SinkTaskContext): Promise<void> {
    this.#ctx = ctx;
    this.#template = new PathTemplate(this.#config.path);
    if (this.#rollIntervalMs !== undefined) {
      const period = Math.max(10, Math.min(this.#rollIntervalMs, MAX_ROLL_CHECK_MS));
      this.#timer = setInterval(() => this.#scheduleRollCheck(), period);
      this.#timer.unref();
    }
  }

  /**
   * Cuts the torn last line of every existing active file the template gives these partitions,
   * including files of past dates that will not be appended to again. Only this task writes these
   * files now: the runtime opens a partition in one task at a time, and with one file for several
   * partitions the connector runs a single task.
   */
  async open(partitions: readonly TopicPartition[]): Promise<void> {
    await this.#exclusive(async () => {
      const template = this.#started();
      const files = new Set<string>();
      for (const { topic, partition } of partitions) {
        try {
          for (const file of await template.existing(topic, partition)) files.add(file);
        } catch (err) {
          throw sinkError(err, `cannot list the files of ${topic}/${partition} under ${template.template}`, { topic, partition });
        }
      }
      for (const file of files) {
        // An open file was checked when it was opened, and has only whole lines since.
        if (this.#files.has(file) || this.#ctx!.signal.aborted) continue;
        let cut: number;
        try {
          cut = await cutTornTailAt(file);
        } catch (err) {
          throw sinkError(err, `cannot check ${file} for a torn last line`, { file });
        }
        this.#reportCut(file, cut);
      }
    });
  }

  /**
   * Appends the batch and resolves once every line is fdatasync'ed, and every file it created or
   * rolled is in an fsync'ed directory. A failed write or fdatasync truncates its file back to the
   * last durable size, so a retried batch does not follow a torn line; lines that reached other
   * files, or files rolled within the batch, stay and repeat on retry, as at-least-once allows.
   * Throws a RetriableError for a full disk or a flaky device, else `IO_ERROR`.
   */
  async put(records: readonly SinkRecord[]): Promise<void> {
    if (records.length === 0) return;
    await this.#exclusive(() => this.#write(records));
  }

  /** Closes the files the revoked partitions wrote to; everything in them is already durable. */
  async close(partitions: readonly TopicPartition[]): Promise<void> {
    const revoked = new Set(partitions.map((tp) => partitionKey(tp.topic, tp.partition)));
    await this.#exclusive(async () => {
      for (const file of [...this.#files.values()]) {
        if ([...file.partitions].some((key) => revoked.has(key))) await this.#release(file);
      }
    });
  }

  /** Stops the timer and closes every file. Settles after an in-flight time roll. */
  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#exclusive(async () => {
      for (const file of [...this.#files.values()]) await this.#release(file);
    });
  }

  async #write(records: readonly SinkRecord[]): Promise<void> {
    const template = this.#started();
    const groups = new Map<string, Group>();
    const resolved = new Map<string, string>();
    for (const record of records) {
      const bucket = template.bucket(record.topic, record.partition, record.timestamp);
      let file = resolved.get(bucket);
      if (file === undefined) {
        file = template.resolve(record.topic, record.partition, record.timestamp);
        resolved.set(bucket, file);
      }
      let group = groups.get(file);
      if (group === undefined) {
        group = { lines: [], partitions: new Set() };
        groups.set(file, group);
      }
      group.lines.push(this.#encode(record));
      group.partitions.add(partitionKey(record.topic, record.partition));
    }

    const dirs = new Set<string>();
    // Files are independent, so their writes and fdatasyncs overlap in the thread pool.
    const results = await Promise.allSettled([...groups].map(([file, group]) => this.#append(file, group, dirs)));
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    try {
      await Promise.all([...dirs].map((dir) => fsyncDir(dir)));
    } catch (err) {
      throw sinkError(err, 'cannot fsync a directory of the output', { dirs: [...dirs] });
    }
    if (failure !== undefined) throw failure.reason;
    // Files open in parallel; re-inserting in batch order keeps the map least-recently-written first.
    for (const file of groups.keys()) {
      const entry = this.#files.get(file);
      if (entry === undefined) continue;
      this.#files.delete(file);
      this.#files.set(file, entry);
    }
    await this.#evict();
  }

  async #append(file: string, group: Group, dirs: Set<string>): Promise<void> {
    let current = await this.#file(file, dirs);
    if (this.#rollIntervalMs !== undefined && current.size > 0 && Date.now() - current.createdAt >= this.#rollIntervalMs) {
      await this.#roll(current, dirs);
      current = await this.#file(file, dirs);
    }
    const { lines } = group;
    let from = 0;
    while (from < lines.length) {
      let to = lines.length;
      if (this.#rollBytes > 0) {
        let bytes = 0;
        to = from;
        while (to < lines.length) {
          const length = Buffer.byteLength(lines[to]!) + 1;
          // An empty file takes at least one line, however long, so an oversized line still lands.
          if ((to > from || current.size > 0) && current.size + bytes + length > this.#rollBytes) break;
          bytes += length;
          to++;
        }
        if (to === from) {
          await this.#roll(current, dirs);
          current = await this.#file(file, dirs);
          continue;
        }
      }
      for (const key of group.partitions) current.partitions.add(key);
      await this.#writeDurably(current, Buffer.from(`${lines.slice(from, to).join('\n')}\n`));
      from = to;
    }
  }

  /** The open file for `file`: opened (and its torn tail cut) on first use, then kept. */
  async #file(file: string, dirs: Set<string>): Promise<OpenFile> {
    const cached = this.#files.get(file);
    if (cached !== undefined) return cached;
    const dir = path.dirname(file);
    let handle: FileHandle | undefined;
    try {
      const created = await mkdir(dir, { recursive: true });
      if (created !== undefined) {
        // Each new directory is a new entry in its parent, down to the file's own directory.
        for (let d = dir; d !== path.dirname(created); d = path.dirname(d)) dirs.add(path.dirname(d));
      }
      // a+ appends every write at the end and still lets the torn-tail cut read and truncate.
      handle = await open(file, 'a+');
      const stats = await handle.stat();
      // A new file is an entry its directory does not durably hold yet.
      if (stats.size === 0) dirs.add(dir);
      const cut = await cutTornTail(handle, stats.size);
      this.#reportCut(file, cut);
      const size = stats.size - cut;
      const opened: OpenFile = {
        path: file,
        handle,
        size,
        syncedSize: size,
        createdAt: size > 0 && stats.birthtimeMs > 0 ? stats.birthtimeMs : Date.now(),
        partitions: new Set(),
      };
      this.#files.set(file, opened);
      this.#ctx!.logger.debug({ file, bytes: size }, 'opened output file');
      return opened;
    } catch (err) {
      await handle?.close().catch(() => undefined);
      throw sinkError(err, `cannot open ${file} for appending`, { file });
    }
  }

  async #writeDurably(file: OpenFile, data: Buffer): Promise<void> {
    try {
      let written = 0;
      // One write() for the whole chunk; the loop only matters if the kernel takes part of it.
      while (written < data.length) {
        const { bytesWritten } = await file.handle.write(data, written, data.length - written);
        written += bytesWritten;
        file.size += bytesWritten;
      }
      await file.handle.datasync();
      file.syncedSize = file.size;
    } catch (err) {
      // After a failed fdatasync the kernel may have dropped the pages while reporting success
      // later, so neither the bytes nor the descriptor are trusted: truncate and reopen next time.
      await file.handle.truncate(file.syncedSize).catch(() => undefined);
      await this.#release(file);
      throw sinkError(err, `cannot append to ${file.path}`, { file: file.path, bytes: data.length });
    }
  }

  /** Renames a durable active file to its rolled name; the next write creates a new active file. */
  async #roll(file: OpenFile, dirs: Set<string>): Promise<void> {
    try {
      if (file.syncedSize !== file.size) {
        await file.handle.datasync();
        file.syncedSize = file.size;
      }
      await this.#release(file);
      let sequence = this.#sequences.get(file.path) ?? (await nextSequence(file.path));
      // Only this task writes here, but a file an operator put in the way is still never replaced.
      while (await exists(rolledName(file.path, sequence))) sequence++;
      const target = rolledName(file.path, sequence);
      await rename(file.path, target);
      this.#sequences.set(file.path, sequence + 1);
      dirs.add(path.dirname(file.path));
      this.#ctx!.metrics.count('rolls_total');
      this.#ctx!.logger.info({ file: file.path, rolled_to: target, bytes: file.size }, 'rolled output file');
    } catch (err) {
      throw sinkError(err, `cannot roll ${file.path}`, { file: file.path });
    }
  }

  #scheduleRollCheck(): void {
    if (this.#rollCheckPending) return;
    this.#rollCheckPending = true;
    void this.#exclusive(async () => {
      this.#rollCheckPending = false;
      const due = [...this.#files.values()].filter((f) => f.size > 0 && Date.now() - f.createdAt >= this.#rollIntervalMs!);
      if (due.length === 0) return;
      const dirs = new Set<string>();
      for (const file of due) await this.#roll(file, dirs);
      await Promise.all([...dirs].map((dir) => fsyncDir(dir)));
    }).catch((err: unknown) => {
      // The next put rolls the file itself and reports a lasting failure to the runtime.
      this.#ctx?.logger.warn({ err }, 'time roll failed');
    });
  }

  /** Closes the least recently written files past `max_open_files`; all of them are durable. */
  async #evict(): Promise<void> {
    for (const file of this.#files.values()) {
      if (this.#files.size <= this.#config.max_open_files) break;
      await this.#release(file);
    }
  }

  async #release(file: OpenFile): Promise<void> {
    if (this.#files.get(file.path) === file) this.#files.delete(file.path);
    await file.handle.close().catch((err: unknown) => this.#ctx?.logger.warn({ err, file: file.path }, 'closing output file failed'));
  }

  #reportCut(file: string, bytes: number): void {
    if (bytes === 0) return;
    this.#ctx!.metrics.count('torn_bytes_cut_total', bytes);
    this.#ctx!.logger.warn({ file, bytes }, 'cut a torn last line left by a crash');
  }

  #started(): PathTemplate {
    if (this.#template === undefined) {
      throw new SluiceError('INVALID_ARGUMENT', 'the file sink task was used before start()', { context: { path: this.#config.path } });
    }
    return this.#template;
  }

  /** Runs `fn` after every earlier call: the runtime never overlaps calls, but the roll timer does. */
  #exclusive<R>(fn: () => Promise<R>): Promise<R> {
    const run = this.#lock.then(fn);
    this.#lock = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }
}

function partitionKey(topic: string, partition: number): string {
  return `${topic}\0${partition}`;
}

async function exists(file: string): Promise<boolean> {
  try {
    await lstat(file);
    return true;
  } catch (err) {
    if (isCode(err, 'ENOENT')) return false;
    throw err;
  }
}
