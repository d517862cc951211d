/**
 * The file-tail source task: follows the files the globs match, reads appended bytes in large
 * chunks, and hands the decoder's records to the runtime, whose checkpoint of each file (its
 * source offset) advances only once the records are durable in the log.
 *
 * What it does around rotation, and why:
 * - Every followed file is held open, so a rename or a delete does not stop reading it, and its
 *   inode cannot be reused by a new file while held. A file no path matches any more (renamed out
 *   of the globs, or deleted) is read to its end and released after `rotate_wait` without new bytes.
 * - A file that shrinks below the read position, or whose first bytes changed, was truncated
 *   (copytruncate): reading restarts at 0 under a new identity, since its content is new.
 * - A new file whose first bytes and the bytes before a known read position equal those of a known
 *   file is a copy of it (copytruncate's copy): while the original is intact the copy is not read,
 *   since every byte of it is read through the original; once the original is truncated, the copy
 *   is read from where reading of the original stopped. So a copy that matches the globs delivers
 *   the lines the truncation would have lost, and no line twice.
 */
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Logger, SourceOffsetEntry, SourcePartition, SourceRecord, SourceTask, SourceTaskContext } from '../../core/connector.ts';
import { SluiceError } from '../../core/connector.ts';
import { LineDecoder, type RecordSource } from './decode.ts';
import { walkGlobs, type Found } from './glob.ts';
import {
  FINGERPRINT_BYTES,
  TAIL_BYTES,
  fingerprintOf,
  formatIdentity,
  parseCheckpoint,
  parseIdentity,
  readAt,
  shortHash,
  tailOf,
  type Checkpoint,
  type Identity,
} from './identity.ts';
import type { FileTailConfig } from './schema.ts';
import { settingsOf, type Settings } from './settings.ts';
import { Watcher } from './watcher.ts';

/** Bytes per read: large enough that a syscall and a promise per read cost nothing next to splitting. */
export const CHUNK_BYTES = 1 << 20;

/** The longest a poll waits for data before returning `[]`, so the runtime regains control often. */
export const IDLE_POLL_MS = 500;

/** How many truncated originals are remembered for recognising their copies. */
const MAX_ORIGINALS = 256;

const NO_PARTITION: SourcePartition = Object.freeze({});

/** One followed file: an open descriptor, its identity once it has a first byte, and its decoder. */
class TrackedFile implements RecordSource {
  /** The path it was last seen under. */
  path: string;
  pathHeader: Buffer;
  identity: Identity | null = null;
  partition: SourcePartition = NO_PARTITION;
  decoder: LineDecoder | null = null;
  /** Size at the last fstat. */
  size: number;
  /** When a byte last arrived (growth seen, or bytes read); the timeouts count from here. */
  lastDataAt: number;
  /** Whether some path the globs match points at it; false once it was deleted or renamed away. */
  matched = true;
  /** Whether it must be fstat'ed before the next read: a change event, or it was read to its known end. */
  dirty = true;
  /** The original this file is a copy of, read through the original while that is intact. */
  shadowOf: TrackedFile | null = null;
  /** The size up to which this copy was checked to be a prefix of its original. */
  shadowChecked = 0;
  /** The tail hash at the position of the last record emitted, for recognising copies after a truncation. */
  tail: { position: number; hash: string } | null = null;

  constructor(
    file: string,
    readonly handle: FileHandle,
    readonly dev: string,
    readonly ino: string,
    size: number,
    now: number,
  ) {
    this.path = file;
    this.pathHeader = Buffer.from(file);
    this.size = size;
    this.lastDataAt = now;
  }

  get key(): string {
    return `${this.dev}:${this.ino}`;
  }

  get id(): string | null {
    return this.identity ? formatIdentity(this.identity) : null;
  }
}

/** A checkpoint from the runtime's store, with whether a file claimed it. */
interface StoredCheckpoint {
  readonly id: Identity;
  readonly checkpoint: Checkpoint;
  claimed: boolean;
}

/** What is known of a file's content before it was truncated: enough to recognise a copy of it. */
interface Original {
  readonly length: number;
  readonly hash: string;
  readonly position: number;
  readonly tail: string | undefined;
}

/**
 * One file-tail task. The runtime calls `start`, then `poll` in a loop (with `commit` calls
 * between or overlapping), then `stop`; see {@link SourceTask}. `poll` calls never overlap, and all
 * file state is touched only from them, from `start` and from `stop`; watcher events only set
 * flags and wake a waiting poll.
 */
export class FileTailTask implements SourceTask {
  readonly #settings: Settings;
  #ctx: SourceTaskContext | undefined;
  #log: Logger | undefined;
  #watcher: Watcher | null = null;
  /** Followed files by `dev:ino`. */
  readonly #files = new Map<string, TrackedFile>();
  /** Followed files by path, for change events. */
  #byPath = new Map<string, TrackedFile>();
  readonly #byPartition = new Map<SourcePartition, TrackedFile>();
  #checkpoints: StoredCheckpoint[] = [];
  #originals: Original[] = [];
  /** No checkpoint of this connector existed at start. */
  #firstRun = true;
  /** The newest checkpoint `time` at start. */
  #newestCheckpoint = 0;
  #scanRequested = true;
  /** Paths a change event named: a rotation that renames a new file over the name shows as a change. */
  readonly #changedPaths = new Set<string>();
  #nextScanAt = 0;
  #woken = false;
  #wake: (() => void) | null = null;
  /** Rotates which file is read first, so one busy file cannot starve the others. */
  #cursor = 0;
  /** Paths that could not be opened, so the warning is logged once per path. */
  readonly #unreadable = new Set<string>();

  /** Builds the task from a validated config. No I/O; throws `CONFIG_INVALID` for a bad glob or pattern. */
  constructor(config: FileTailConfig) {
    this.#settings = settingsOf(config);
  }

  /**
   * Finds the files the globs match, resumes each one that has a checkpoint (found by identity,
   * whatever its name now), decides where the others start, looks for checkpointed files renamed
   * out of the globs in the directory they were last seen in, and starts watching.
   */
  async start(ctx: SourceTaskContext): Promise<void> {
    this.#ctx = ctx;
    this.#log = ctx.logger;
    for (const entry of ctx.committedOffsets) {
      const id = parseIdentity(entry.sourcePartition['file']);
      const checkpoint = parseCheckpoint(entry.sourceOffset);
      if (!id || !checkpoint) continue;
      this.#checkpoints.push({ id, checkpoint, claimed: false });
      this.#newestCheckpoint = Math.max(this.#newestCheckpoint, checkpoint.time ?? 0);
    }
    this.#firstRun = this.#checkpoints.length === 0;

    const now = Date.now();
    const found = [...(await walkGlobs(this.#settings.globs, this.#settings.excludes)).values()].sort((a, b) => a.path.localeCompare(b.path));
    // Every file claims its own checkpoint first, so that a copy is never mistaken for the original.
    const opened: Array<{ file: TrackedFile; mtimeMs: number }> = [];
    for (const entry of found) {
      const file = await this.#open(entry.path, now);
      if (!file) continue;
      const resumed = file.size > 0 && (await this.#resume(file));
      if (!resumed) opened.push({ file, mtimeMs: entry.mtimeMs });
    }
    for (const { file, mtimeMs } of opened) {
      if (file.size > 0) await this.#identify(file, 'start', mtimeMs);
      else this.#log.info({ path: file.path }, 'following empty file');
    }
    await this.#findRenamedAway(now);
    this.#reportFiles();

    this.#watcher = new Watcher({
      globs: this.#settings.globs,
      matches: (file) => this.#settings.globs.some((g) => g.regex.test(file)) && !this.#settings.excludes.some((x) => x(file)),
      usePolling: this.#settings.usePolling,
      intervalMs: this.#settings.pollIntervalMs,
      logger: ctx.logger,
      onEvent: (file) => this.#onEvent(file),
    });
    await this.#watcher.start();
    // The first poll scans again: files created between the walk above and the watch are found there.
    this.#nextScanAt = Date.now() + this.#settings.pollIntervalMs;
    ctx.logger.info(
      { files: this.#files.size, resumed: this.#checkpoints.filter((c) => c.claimed).length, polling: this.#watcher.polling },
      'tailing files',
    );
  }

  /**
   * Returns the next batch: lines read from files with new bytes, at most `batch_records` and about
   * `batch_bytes`, and whatever timed out (partial lines, multiline events, released files). Waits
   * for a change notification or a timeout when there is nothing, returning `[]` after
   * {@link IDLE_POLL_MS} or at once when a signal aborts. File errors are logged and the file is
   * retried later; they never lose lines already consumed.
   */
  async poll(signal: AbortSignal): Promise<readonly SourceRecord[]> {
    const ctx = this.#context();
    const started = Date.now();
    for (;;) {
      this.#woken = false;
      const now = Date.now();
      await this.#refresh(now);
      const records: SourceRecord[] = [];
      await this.#read(records, now);
      const released = await this.#timeouts(records, Date.now());
      if (records.length > 0 || released.length > 0) await this.#finish(records, released);
      if (records.length > 0) return records;
      const after = Date.now();
      if (signal.aborted || ctx.signal.aborted || after - started >= IDLE_POLL_MS) return [];
      const wait = Math.min(this.#nextDeadline(after), this.#nextScanAt, started + IDLE_POLL_MS) - after;
      if (wait > 0) await this.#sleep(wait, [signal, ctx.signal]);
    }
  }

  /** Nothing upstream to acknowledge: the checkpoints are the runtime's source offsets. */
  async commit(_offsets: readonly SourceOffsetEntry[]): Promise<void> {}

  /** Closes the watcher and every descriptor. Lines held back (partial, multiline) are read again after a restart. */
  async stop(): Promise<void> {
    this.#wake?.();
    await this.#watcher?.close();
    this.#watcher = null;
    await Promise.all([...this.#files.values()].map((f) => f.handle.close().catch(() => undefined)));
    this.#files.clear();
    this.#byPath.clear();
    this.#byPartition.clear();
  }

  #context(): SourceTaskContext {
    if (!this.#ctx) throw new SluiceError('INVALID_ARGUMENT', 'file-tail: poll before start');
    return this.#ctx;
  }

  get #logger(): Logger {
    return this.#log!;
  }

  // -------------------------------------------------------------------------------------------
  // Events and waiting

  #onEvent(file: string | null): void {
    const tracked = file === null ? undefined : this.#byPath.get(file);
    if (tracked) {
      tracked.dirty = true;
      this.#changedPaths.add(file!);
    } else {
      this.#scanRequested = true;
    }
    this.#woken = true;
    this.#wake?.();
  }

  #sleep(ms: number, signals: readonly AbortSignal[]): Promise<void> {
    if (this.#woken || signals.some((s) => s.aborted)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        for (const s of signals) s.removeEventListener('abort', done);
        this.#wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      for (const s of signals) s.addEventListener('abort', done, { once: true });
      this.#wake = done;
    });
  }

  /** The soonest moment a timeout (partial line, multiline event, release) falls due. */
  #nextDeadline(now: number): number {
    const s = this.#settings;
    let next = Infinity;
    for (const file of this.#files.values()) {
      const d = file.decoder;
      if (!file.matched) next = Math.min(next, file.lastDataAt + s.rotateWaitMs);
      if (!d || file.shadowOf) continue;
      if (d.pending.length > 0) next = Math.min(next, file.lastDataAt + s.partialTimeoutMs);
      if (d.holdsEvent) next = Math.min(next, file.lastDataAt + s.flushTimeoutMs);
    }
    return Math.max(next, now + 1);
  }

  // -------------------------------------------------------------------------------------------
  // Finding files

  /** Opens a file and takes its fstat; undefined (logged once per path) when it cannot be read. */
  async #open(file: string, now: number): Promise<TrackedFile | undefined> {
    let handle: FileHandle | undefined;
    try {
      handle = await open(file, 'r');
      const st = await handle.stat({ bigint: true });
      if (!st.isFile()) {
        await handle.close();
        return undefined;
      }
      const key = `${st.dev}:${st.ino}`;
      if (this.#files.has(key)) {
        await handle.close();
        return undefined;
      }
      const tracked = new TrackedFile(file, handle, String(st.dev), String(st.ino), Number(st.size), now);
      this.#files.set(key, tracked);
      this.#byPath.set(file, tracked);
      this.#unreadable.delete(file);
      return tracked;
    } catch (err) {
      await handle?.close().catch(() => undefined);
      const code = (err as NodeJS.ErrnoException).code;
      // Gone between the scan and the open: the next scan settles it.
      if (code !== 'ENOENT' && !this.#unreadable.has(file)) {
        this.#unreadable.add(file);
        this.#logger.warn({ path: file, err }, 'cannot open file; retrying at every scan');
      }
      return undefined;
    }
  }

  /** Resumes a file from its own checkpoint when it has one and is intact; true when it did. */
  async #resume(file: TrackedFile): Promise<boolean> {
    const own = await this.#ownCheckpoint(file);
    if (!own) return false;
    own.claimed = true;
    const { checkpoint, id } = own;
    const intact = file.size >= checkpoint.position && (checkpoint.tail === undefined || (await tailOf(file.handle, checkpoint.position)) === checkpoint.tail);
    if (!intact) {
      // Truncated or rewritten while sluice was stopped: its content is new. What it held may live
      // on in a copy, which its old checkpoint recognises.
      this.#remember({ length: id.length, hash: id.hash, position: checkpoint.position, tail: checkpoint.tail });
      this.#ctx!.metrics.count('truncations_total');
      this.#logger.info({ path: file.path, file: formatIdentity(id), position: checkpoint.position, size: file.size }, 'file was truncated while stopped; reading it from the start');
      return false;
    }
    this.#adopt(file, id, checkpoint.position, checkpoint.cut ?? false);
    if (checkpoint.tail !== undefined) file.tail = { position: checkpoint.position, hash: checkpoint.tail };
    this.#logger.info({ path: file.path, file: file.id, position: checkpoint.position, size: file.size, was: checkpoint.path }, 'resuming file');
    return true;
  }

  /** The unclaimed checkpoint whose identity is this file's: same inode (the device may have changed) and fingerprint. */
  async #ownCheckpoint(file: TrackedFile): Promise<StoredCheckpoint | undefined> {
    const candidates = this.#checkpoints
      .filter((c) => !c.claimed && c.id.ino === file.ino && c.id.length <= file.size)
      .sort((a, b) => Number(b.id.dev === file.dev) - Number(a.id.dev === file.dev) || (b.checkpoint.time ?? 0) - (a.checkpoint.time ?? 0));
    const hashes = new Map<number, string | undefined>();
    for (const candidate of candidates) {
      if (!hashes.has(candidate.id.length)) hashes.set(candidate.id.length, await fingerprintOf(file.handle, candidate.id.length));
      if (hashes.get(candidate.id.length) === candidate.id.hash) return candidate;
    }
    return undefined;
  }

  /**
   * Gives a file with at least one byte its identity and start position: a copy of a known file
   * starts where that file's reading stopped; any other file at 0, or at its end under
   * `start_at: end` when found at start and not changed since the last checkpoint.
   */
  async #identify(file: TrackedFile, phase: 'start' | 'run', mtimeMs: number): Promise<void> {
    if (phase === 'run' && (await this.#resume(file))) return;
    const head = await readAt(file.handle, 0, Math.min(file.size, FINGERPRINT_BYTES));
    if (head.length === 0) return;
    const identity: Identity = { dev: file.dev, ino: file.ino, length: head.length, hash: shortHash(head) };
    const copy = await this.#copyOf(file, head);
    if (copy && 'shadow' in copy) {
      const original = copy.shadow;
      this.#adopt(file, identity, Math.min(original.decoder!.delivered, file.size));
      file.shadowOf = original;
      file.shadowChecked = file.size;
      this.#ctx!.metrics.count('copies_detected_total');
      this.#logger.info({ path: file.path, file: file.id, original: original.path }, 'file is a copy of a followed file; reading it through the original while that is intact');
      return;
    }
    if (copy) {
      this.#adopt(file, identity, copy.position);
      this.#ctx!.metrics.count('copies_detected_total');
      this.#logger.info({ path: file.path, file: file.id, position: copy.position, size: file.size }, 'file is a copy of a truncated file; reading what was not read of it');
      return;
    }
    const skip = phase === 'start' && this.#settings.startAtEnd && (this.#firstRun || mtimeMs <= this.#newestCheckpoint);
    const position = skip ? file.size : 0;
    this.#adopt(file, identity, position);
    this.#logger.info({ path: file.path, file: file.id, position, size: file.size }, 'following new file');
  }

  /**
   * Whether a new file is a copy of a known one: its first bytes equal that file's fingerprint,
   * and the bytes before the known position are equal too. A followed original that is intact
   * shadows the copy; a truncated one (or one only known from a checkpoint) gives its position.
   */
  async #copyOf(file: TrackedFile, head: Buffer): Promise<{ shadow: TrackedFile } | { position: number } | undefined> {
    const hashes = new Map<number, string | undefined>();
    const headHash = (length: number): string | undefined => {
      if (!hashes.has(length)) hashes.set(length, length <= head.length ? shortHash(head.subarray(0, length)) : undefined);
      return hashes.get(length);
    };
    for (const original of [...this.#files.values()]) {
      if (original === file || !original.identity || !original.decoder || original.shadowOf) continue;
      if (headHash(original.identity.length) !== original.identity.hash) continue;
      // The copy may have been made just before the original was truncated: look at the original
      // now, so a truncation is recorded (and its position used below) rather than missed.
      await this.#check(original, Date.now(), true);
      if (!original.decoder) continue;
      if (await sameBytesBefore(file.handle, original.handle, Math.min(file.size, original.size))) return { shadow: original };
    }
    const stored = this.#checkpoints
      .filter((c) => !c.claimed)
      .map((c) => ({ c, original: { length: c.id.length, hash: c.id.hash, position: c.checkpoint.position, tail: c.checkpoint.tail } }));
    for (const { c, original } of [...this.#originals.map((o) => ({ c: undefined, original: o })), ...stored]) {
      if (headHash(original.length) !== original.hash || file.size < original.position) continue;
      if (original.position > 0 && (original.tail === undefined || (await tailOf(file.handle, original.position)) !== original.tail)) continue;
      if (c) c.claimed = true;
      else this.#originals = this.#originals.filter((o) => o !== original);
      return { position: original.position };
    }
    return undefined;
  }

  #adopt(file: TrackedFile, identity: Identity, position: number, cutting = false): void {
    file.identity = identity;
    file.partition = { file: formatIdentity(identity) };
    file.decoder = new LineDecoder(this.#settings.decoder, file, position, cutting);
    this.#byPartition.set(file.partition, file);
  }

  #remember(original: Original): void {
    this.#originals.push(original);
    if (this.#originals.length > MAX_ORIGINALS) this.#originals.shift();
  }

  /**
   * Checkpointed files no glob matched at start: rotated to a name outside the globs while sluice
   * was stopped. Each is looked for in the directory it was last seen in, by inode and
   * fingerprint, and read to its end.
   */
  async #findRenamedAway(now: number): Promise<void> {
    const byDir = new Map<string, StoredCheckpoint[]>();
    for (const c of this.#checkpoints) {
      if (c.claimed) continue;
      const dir = path.dirname(c.checkpoint.path);
      byDir.set(dir, [...(byDir.get(dir) ?? []), c]);
    }
    for (const [dir, candidates] of byDir) {
      const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const entry of entries) {
        if (!entry.isFile()) continue;
        const full = path.join(dir, entry.name);
        if (this.#settings.excludes.some((x) => x(full))) continue;
        const st = await stat(full, { bigint: true }).catch(() => undefined);
        if (!st || this.#files.has(`${st.dev}:${st.ino}`)) continue;
        if (!candidates.some((c) => !c.claimed && c.id.ino === String(st.ino) && c.checkpoint.position < Number(st.size))) continue;
        const file = await this.#open(full, now);
        if (!file) continue;
        if (await this.#resume(file)) {
          file.matched = false;
          this.#logger.info({ path: full, file: file.id }, 'found a checkpointed file outside paths; reading it to its end');
        } else {
          await this.#untrack(file);
        }
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Refreshing what is known of the files

  /**
   * Scans (every poll_interval, or on a watcher event that is not an append) and fstats the files
   * that may have changed. Known files are checked before new ones are identified, so that a
   * truncation is known before the copy made just before it is looked at.
   */
  async #refresh(now: number): Promise<void> {
    for (const file of this.#changedPaths) {
      const tracked = this.#byPath.get(file);
      const st = await stat(file, { bigint: true }).catch(() => undefined);
      if (!tracked || !st || `${st.dev}:${st.ino}` !== tracked.key) this.#scanRequested = true;
    }
    this.#changedPaths.clear();
    const full = this.#scanRequested || now >= this.#nextScanAt;
    let fresh: Found[] = [];
    if (full) {
      this.#scanRequested = false;
      this.#nextScanAt = now + this.#settings.pollIntervalMs;
      fresh = await this.#scan();
    }
    for (const file of [...this.#files.values()]) {
      if (full || file.dirty || file.shadowOf) await this.#check(file, now, full);
    }
    for (const entry of fresh) {
      const file = await this.#open(entry.path, now);
      if (!file) continue;
      if (file.size > 0) await this.#identify(file, 'run', entry.mtimeMs);
      else this.#logger.info({ path: file.path }, 'following new empty file');
    }
    if (fresh.length > 0) this.#reportFiles();
  }

  /** Walks the globs: notes renames and files that left the globs, and returns the files not followed yet. */
  async #scan(): Promise<Found[]> {
    await this.#watcher?.recheck();
    const found = await walkGlobs(this.#settings.globs, this.#settings.excludes);
    const byKey = new Map<string, Found[]>();
    for (const entry of found.values()) {
      const key = `${entry.dev}:${entry.ino}`;
      byKey.set(key, [...(byKey.get(key) ?? []), entry]);
    }
    for (const file of this.#files.values()) {
      const paths = byKey.get(file.key);
      byKey.delete(file.key);
      if (paths) {
        if (!paths.some((p) => p.path === file.path)) {
          this.#logger.info({ path: paths[0]!.path, was: file.path, file: file.id }, 'file renamed');
          this.#rename(file, paths[0]!.path);
        }
        if (!file.matched) {
          file.matched = true;
          this.#logger.info({ path: file.path, file: file.id }, 'file matches paths again');
        }
      } else if (file.matched) {
        file.matched = false;
        this.#logger.info({ path: file.path, file: file.id }, 'file deleted or renamed out of paths; reading it to its end');
      }
    }
    return [...byKey.values()].map((entries) => entries[0]!);
  }

  #rename(file: TrackedFile, to: string): void {
    if (this.#byPath.get(file.path) === file) this.#byPath.delete(file.path);
    file.path = to;
    file.pathHeader = Buffer.from(to);
    this.#byPath.set(to, file);
  }

  /** Fstats one file: growth, deletion, truncation, first bytes, and the state of a copy. */
  async #check(file: TrackedFile, now: number, full: boolean): Promise<void> {
    let size: number;
    let nlink: number;
    let mtimeMs: number;
    try {
      const st = await file.handle.stat();
      size = st.size;
      nlink = st.nlink;
      mtimeMs = st.mtimeMs;
    } catch (err) {
      this.#logger.warn({ path: file.path, err }, 'cannot stat file; retrying');
      return;
    }
    file.dirty = false;
    if (nlink === 0 && file.matched) {
      file.matched = false;
      this.#logger.info({ path: file.path, file: file.id }, 'file deleted; reading it to its end');
    }
    const d = file.decoder;
    if (d && file.identity) {
      // Sizes alone miss a file truncated and refilled past the read position; the first bytes do not.
      const truncated = size < d.end || (full && (await fingerprintOf(file.handle, file.identity.length)) !== file.identity.hash);
      if (truncated) this.#truncated(file, size);
    }
    if (size !== file.size) file.lastDataAt = now;
    file.size = size;
    if (!file.identity && size > 0) await this.#identify(file, 'run', mtimeMs);
    if (file.shadowOf) await this.#followOriginal(file);
  }

  /** The file lost its content (copytruncate): what it was is remembered for its copy, and reading restarts at 0. */
  #truncated(file: TrackedFile, size: number, delivered = file.decoder!.delivered, tail = file.tail): void {
    const identity = file.identity!;
    this.#remember({
      length: identity.length,
      hash: identity.hash,
      position: delivered,
      tail: tail?.position === delivered ? tail.hash : undefined,
    });
    this.#releaseCopies(file, delivered);
    this.#logger.info({ path: file.path, file: file.id, position: delivered, size }, 'file truncated; reading it from the start');
    this.#ctx!.metrics.count('truncations_total');
    this.#byPartition.delete(file.partition);
    file.identity = null;
    file.partition = NO_PARTITION;
    file.decoder = null;
    file.tail = null;
    file.shadowOf = null;
  }

  /** Copies shadowed by `original` are read from here on, from where reading of the original stopped. */
  #releaseCopies(original: TrackedFile, delivered = original.decoder?.delivered ?? 0): void {
    for (const copy of this.#files.values()) {
      if (copy.shadowOf !== original) continue;
      copy.shadowOf = null;
      const position = Math.min(delivered, copy.size);
      copy.decoder!.reset(position);
      this.#logger.info({ path: copy.path, file: copy.id, position, size: copy.size }, 'original of copy is gone or truncated; reading the copy');
    }
  }

  /** Keeps a shadowed copy's position level with its original, and stops shadowing if they diverge. */
  async #followOriginal(copy: TrackedFile): Promise<void> {
    const original = copy.shadowOf!;
    const d = copy.decoder!;
    if (copy.size > copy.shadowChecked) {
      const same = await sameBytesBefore(copy.handle, original.handle, Math.min(copy.size, original.size));
      if (!same) {
        copy.shadowOf = null;
        this.#logger.info({ path: copy.path, file: copy.id, position: d.delivered }, 'copy differs from its original now; reading it on its own');
        return;
      }
      copy.shadowChecked = copy.size;
    }
    d.reset(Math.min(original.decoder!.delivered, copy.size));
  }

  // -------------------------------------------------------------------------------------------
  // Reading

  /** Reads chunks round-robin from files with unread bytes until the batch is full or none has any. */
  async #read(records: SourceRecord[], now: number): Promise<void> {
    const { batchRecords, batchBytes } = this.#settings;
    const files = [...this.#files.values()];
    const start = files.length === 0 ? 0 : this.#cursor++ % files.length;
    const order = [...files.slice(start), ...files.slice(0, start)];
    let bytes = 0;
    let progress = true;
    // Where each file read in this batch stood before it, to undo the batch if the file turns out truncated.
    const before = new Map<TrackedFile, { delivered: number; tail: TrackedFile['tail'] }>();
    while (progress && records.length < batchRecords && bytes < batchBytes) {
      progress = false;
      for (const file of order) {
        if (records.length >= batchRecords || bytes >= batchBytes) break;
        const d = file.decoder;
        if (!d || file.shadowOf) continue;
        if (d.hasCompleteLine) {
          d.consume(records, batchRecords);
          progress = true;
          continue;
        }
        const want = Math.min(CHUNK_BYTES, file.size - d.end);
        if (want <= 0) continue;
        if (d.needsSeed) await this.#seed(file, d);
        if (!before.has(file)) before.set(file, { delivered: d.delivered, tail: file.tail });
        const at = d.pending.length;
        const buffer = d.bufferFor(want);
        let got: number;
        try {
          got = (await file.handle.read(buffer, at, want, d.end)).bytesRead;
        } catch (err) {
          this.#logger.warn({ path: file.path, err }, 'read failed; retrying');
          file.dirty = true;
          continue;
        }
        if (got === 0) {
          // Shorter than the last fstat said: the next check finds out why.
          file.dirty = true;
          continue;
        }
        d.append(got === want ? buffer : buffer.subarray(0, at + got));
        d.consume(records, batchRecords);
        bytes += got;
        file.lastDataAt = now;
        progress = true;
        if (d.end >= file.size) file.dirty = true;
      }
    }
    if (bytes > 0) this.#ctx!.metrics.count('read_bytes_total', bytes);
    await this.#verify(records, before);
  }

  /**
   * Checks that each file read still begins with its fingerprint. A file truncated and refilled
   * past the read position between two checks would otherwise be read at the old offset, in the
   * middle of its new content: its records of this batch are dropped, and it is handled as
   * truncated from where it stood before the batch, so its copy (if any) and its new content are
   * read in full instead.
   */
  async #verify(records: SourceRecord[], before: ReadonlyMap<TrackedFile, { delivered: number; tail: TrackedFile['tail'] }>): Promise<void> {
    for (const [file, { delivered, tail }] of before) {
      const identity = file.identity;
      if (!identity || !file.decoder) continue;
      const hash = await fingerprintOf(file.handle, identity.length).catch(() => identity.hash);
      if (hash === identity.hash) continue;
      const partition = file.partition;
      let kept = 0;
      for (const record of records) if (record.sourcePartition !== partition) records[kept++] = record;
      records.length = kept;
      this.#truncated(file, file.size, delivered, tail);
      file.dirty = true;
    }
  }

  /** Gives a decoder that starts mid-file the bytes before its position, for the tail hash of its checkpoints. */
  async #seed(file: TrackedFile, d: LineDecoder): Promise<void> {
    const length = Math.min(TAIL_BYTES, d.pendingStart);
    const bytes = await readAt(file.handle, d.pendingStart - length, length).catch(() => undefined);
    if (bytes) d.seed(bytes);
  }

  /**
   * Emits what waited long enough, and returns the files to release: gone, read to the end, quiet
   * for rotate_wait. A file whose timeout is due is fstat'ed first, so bytes that arrived since the
   * last check (with a long poll_interval) postpone it instead of cutting a line in two.
   */
  async #timeouts(records: SourceRecord[], now: number): Promise<TrackedFile[]> {
    const s = this.#settings;
    const released: TrackedFile[] = [];
    const due = (file: TrackedFile): { partial: boolean; event: boolean; gone: boolean } | undefined => {
      const d = file.decoder;
      if (d && (d.end < file.size || d.hasCompleteLine)) return undefined;
      const quiet = now - file.lastDataAt;
      const gone = !file.matched && quiet >= s.rotateWaitMs;
      const live = d !== null && !file.shadowOf;
      const partial = live && d.pending.length > 0 && (gone || quiet >= s.partialTimeoutMs);
      const event = live && d.holdsEvent && (gone || quiet >= s.flushTimeoutMs);
      return partial || event || gone ? { partial, event, gone } : undefined;
    };
    for (const file of [...this.#files.values()]) {
      if (!due(file)) continue;
      await this.#check(file, now, false);
      const what = due(file);
      if (!what) continue;
      if (what.partial || what.gone) file.decoder?.flushPartial(records);
      if (what.event || what.gone) file.decoder?.flushEvent(records);
      if (what.gone) released.push(file);
    }
    return released;
  }


  /**
   * Completes a batch: the last record of each file gets the tail hash and time in its checkpoint,
   * counters are reported, and released files are closed.
   */
  async #finish(records: SourceRecord[], released: readonly TrackedFile[]): Promise<void> {
    const last = new Map<SourcePartition, number>();
    for (let i = 0; i < records.length; i++) last.set(records[i]!.sourcePartition, i);
    const time = Date.now();
    for (const [partition, i] of last) {
      const file = this.#byPartition.get(partition);
      const record = records[i]!;
      const position = record.sourceOffset['position'] as number;
      // From the bytes in memory, not read again: the file may be truncated already.
      const hash = file?.decoder?.tailHash(position);
      if (file && hash !== undefined) file.tail = { position, hash };
      record.sourceOffset = { ...record.sourceOffset, ...(hash !== undefined ? { tail: hash } : {}), time };
    }
    const metrics = this.#ctx!.metrics;
    for (const file of this.#files.values()) {
      const counts = file.decoder?.counts;
      if (!counts) continue;
      if (counts.split > 0) metrics.count('lines_split_total', counts.split);
      if (counts.invalidJson > 0) metrics.count('invalid_json_total', counts.invalidJson);
      counts.split = 0;
      counts.invalidJson = 0;
    }
    for (const file of released) {
      this.#logger.info({ path: file.path, file: file.id, position: file.decoder?.delivered }, 'released file');
      metrics.count('files_released_total');
      this.#releaseCopies(file);
      await this.#untrack(file);
    }
    if (released.length > 0) this.#reportFiles();
  }

  async #untrack(file: TrackedFile): Promise<void> {
    this.#files.delete(file.key);
    if (this.#byPath.get(file.path) === file) this.#byPath.delete(file.path);
    this.#byPartition.delete(file.partition);
    for (const other of this.#files.values()) if (other.shadowOf === file) other.shadowOf = null;
    await file.handle.close().catch(() => undefined);
  }

  #reportFiles(): void {
    this.#ctx?.metrics.gauge('files_tracked', this.#files.size);
  }
}

/** Whether two files hold the same bytes just before `position` (up to TAIL_BYTES of them). */
async function sameBytesBefore(a: FileHandle, b: FileHandle, position: number): Promise<boolean> {
  if (position <= 0) return false;
  const length = Math.min(position, TAIL_BYTES);
  const [x, y] = await Promise.all([readAt(a, position - length, length), readAt(b, position - length, length)]);
  return x.length === length && x.equals(y);
}
