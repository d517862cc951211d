/**
 * Change notifications for the task: chokidar on the base directory of every glob, so an append,
 * a new file or a rename wakes the task at once instead of at its next poll_interval scan. The
 * notifications only say "look now": the task's own scans and fstat calls decide what changed, so
 * a lost or coalesced event costs latency, never data.
 *
 * chokidar 4 has no globs and does not follow a directory that does not exist yet; the task calls
 * {@link Watcher.recheck} on every scan, which starts watching base directories that appeared.
 * When the native watcher fails (the inotify watch limit, EMFILE), the watcher closes it and starts
 * over with chokidar's stat polling.
 */
import { stat } from 'node:fs/promises';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from '../../core/connector.ts';
import type { Glob } from './glob.ts';

export interface WatcherOptions {
  readonly globs: readonly Glob[];
  /** Whether a file path is one the task follows; events on other files are ignored. */
  readonly matches: (file: string) => boolean;
  readonly usePolling: boolean;
  readonly intervalMs: number;
  readonly logger: Logger;
  /** Called on every relevant event: `file` for an append to that file, null when a scan is due. */
  readonly onEvent: (file: string | null) => void;
  /** Called once when the watcher switches to polling after an error. */
  readonly onFallback?: (err: Error) => void;
}

/** Watches the glob bases; owned by one task, closed by its `stop`. */
export class Watcher {
  #watcher: FSWatcher | null = null;
  #polling: boolean;
  /** Base directory → the deepest level any of its globs reaches (undefined: unlimited). */
  readonly #bases = new Map<string, number | undefined>();
  /** Bases that did not exist when last checked. */
  readonly #missing = new Set<string>();
  #closed = false;

  constructor(private readonly options: WatcherOptions) {
    this.#polling = options.usePolling;
    for (const glob of options.globs) {
      const depth = glob.depth === Infinity ? undefined : glob.depth;
      if (!this.#bases.has(glob.base)) {
        this.#bases.set(glob.base, depth);
        continue;
      }
      const previous = this.#bases.get(glob.base);
      this.#bases.set(glob.base, previous === undefined || depth === undefined ? undefined : Math.max(previous, depth));
    }
  }

  /** Whether changes come from stat polling (configured, or after a watcher error). */
  get polling(): boolean {
    return this.#polling;
  }

  /** Starts watching the bases that exist; the others are picked up by {@link recheck}. */
  async start(): Promise<void> {
    for (const base of this.#bases.keys()) this.#missing.add(base);
    await this.recheck();
  }

  /** Starts watching base directories that appeared since the last check. Cheap when none is missing. */
  async recheck(): Promise<void> {
    for (const base of [...this.#missing]) {
      if (this.#closed) return;
      const exists = await stat(base).then(
        (s) => s.isDirectory(),
        () => false,
      );
      if (!exists) continue;
      this.#missing.delete(base);
      this.#watch(base);
      // Files may have been created between the scan and the watch.
      this.options.onEvent(null);
    }
  }

  /** Closes every watcher. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    const watcher = this.#watcher;
    this.#watcher = null;
    await watcher?.close();
  }

  #watch(base: string): void {
    if (!this.#watcher) this.#watcher = this.#create();
    this.#watcher.add(base);
  }

  #create(): FSWatcher {
    const { matches, onEvent, intervalMs } = this.options;
    // One depth for the watcher: the deepest any base needs; events deeper are filtered by matches.
    const depths = [...this.#bases.values()];
    const depth = depths.includes(undefined) ? undefined : Math.max(...(depths as number[]));
    const watcher = watch([], {
      ignoreInitial: true,
      persistent: true,
      // atomic delays unlink/add pairs to hide editors' save-by-rename; a log rotation must be seen as it is.
      atomic: false,
      usePolling: this.#polling,
      interval: intervalMs,
      binaryInterval: intervalMs,
      ...(depth === undefined ? {} : { depth }),
      ignored: (file, stats) => stats?.isFile() === true && !matches(file),
    });
    watcher.on('all', (event, file) => {
      if (event === 'change') onEvent(file);
      else onEvent(null);
    });
    watcher.on('error', (err) => this.#fallBack(err as Error));
    return watcher;
  }

  #fallBack(err: Error): void {
    if (this.#closed) return;
    if (this.#polling) {
      this.options.logger.warn({ err }, 'file watcher error; the poll_interval scans go on');
      return;
    }
    this.#polling = true;
    this.options.logger.warn({ err }, 'file watcher failed; falling back to stat polling');
    this.options.onFallback?.(err);
    const old = this.#watcher;
    this.#watcher = null;
    void old?.close().catch(() => undefined);
    for (const base of this.#bases.keys()) if (!this.#missing.has(base)) this.#watch(base);
    this.options.onEvent(null);
  }
}
