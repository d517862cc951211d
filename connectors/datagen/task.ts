/**
 * The datagen source task: generates its share of the event indexes, paced by a token bucket on the
 * wall clock, and resumes from the committed offset by regenerating from that index.
 */
import {
  SluiceError,
  type JsonValue,
  type SourceOffset,
  type SourceOffsetEntry,
  type SourcePartition,
  type SourceRecord,
  type SourceTask,
  type SourceTaskContext,
} from '../../core/connector.ts';
import { generateEvent, type GeneratorOptions, type Preset } from './presets.ts';
import type { DatagenTaskConfig } from './schema.ts';

/** The `generator` value of every datagen source partition. */
export const GENERATOR = 'datagen';

/** The longest a poll waits when nothing is due, so the runtime regains control often. */
export const IDLE_POLL_MS = 100;

/** The source partition of task `task` of `tasks`. */
export function sourcePartitionOf(task: number, tasks: number): SourcePartition {
  return { generator: GENERATOR, task, tasks };
}

/** Parses `start_time`; throws `CONFIG_INVALID` for a date the pattern lets through but the calendar does not (month 13). */
export function parseStartTime(text: string): number {
  const ms = Date.parse(text);
  if (!Number.isFinite(ms)) {
    throw new SluiceError('CONFIG_INVALID', `start_time must be an ISO 8601 timestamp such as 2025-01-01T00:00:00Z, got ${JSON.stringify(text)}`, {
      context: { field: 'start_time', value: text },
    });
  }
  return ms;
}

/**
 * Generates events `task`, `task + tasks`, `task + 2·tasks`... of the configured preset. The source
 * offset is `{ next }`, the index of the next event this task generates; `poll` returns `[]` forever
 * once `count` is reached.
 */
export class DatagenTask implements SourceTask {
  readonly #preset: Preset;
  readonly #options: GeneratorOptions;
  readonly #task: number;
  readonly #tasks: number;
  readonly #batchSize: number;
  /** Events per second for this task; 0 is unlimited. */
  readonly #rate: number;
  /** One past the last index to generate. */
  readonly #end: number;
  readonly #partition: SourcePartition;
  #ctx: SourceTaskContext | undefined;
  #next = 0;
  #tokens = 0;
  #refilledAt = 0;
  #finished = false;

  /** Builds the task for one of `taskConfigs`' results. No I/O. */
  constructor(config: DatagenTaskConfig) {
    this.#preset = config.preset;
    this.#options = { seed: config.seed, startMs: parseStartTime(config.start_time), rate: config.rate };
    this.#task = config.task;
    this.#tasks = config.tasks;
    this.#batchSize = config.batch_size;
    this.#rate = config.rate / config.tasks;
    this.#end = config.count ?? Infinity;
    this.#partition = sourcePartitionOf(config.task, config.tasks);
  }

  /** Positions the task at its committed offset, or where an earlier task layout left off, or at the start. */
  async start(ctx: SourceTaskContext): Promise<void> {
    this.#ctx = ctx;
    const own = ctx.committedOffset(this.#partition);
    if (own !== undefined) {
      const next = nextOf(own);
      if (next === undefined || next % this.#tasks !== this.#task) {
        throw new SluiceError('CONNECTOR_FAILED', `datagen task ${this.#task} of ${this.#tasks}: committed offset ${JSON.stringify(own)} is not one of its indexes`, {
          context: { task: this.#task, offset: own },
        });
      }
      this.#next = next;
    } else {
      this.#next = alignUp(resumeFromOtherLayouts(ctx.committedOffsets), this.#task, this.#tasks);
    }
    this.#refilledAt = performance.now();
    ctx.logger.info({ next: this.#next, task: this.#task, tasks: this.#tasks, resumed: own !== undefined }, 'generating');
    this.#reportRemaining();
  }

  /**
   * Returns the events due: up to `batch_size`, as many as the rate allowed since the last poll.
   * When none is due it waits until a batch is, at most {@link IDLE_POLL_MS}, and returns early on
   * abort. After `count`, it waits that long and returns `[]`.
   */
  async poll(signal: AbortSignal): Promise<readonly SourceRecord[]> {
    const ctx = this.#context();
    const remaining = this.#remaining();
    if (remaining === 0) {
      if (!this.#finished) {
        this.#finished = true;
        ctx.logger.info({ count: this.#end, next: this.#next }, 'count reached; idle');
      }
      // Returning [] at once would make the runtime's poll loop spin.
      await sleep(IDLE_POLL_MS, [signal, ctx.signal]);
      return [];
    }
    if (this.#rate === 0) return this.#generate(Math.min(this.#batchSize, remaining));
    const want = Math.min(this.#batchSize, remaining);
    this.#refill();
    if (this.#tokens < 1) {
      // Waiting for a whole batch (within the idle bound) rather than one token keeps batches large
      // at low rates: 200/s gives ~20 records per poll, not one every 5 ms.
      const untilBatch = ((want - this.#tokens) * 1000) / this.#rate;
      await sleep(Math.min(IDLE_POLL_MS, untilBatch), [signal, ctx.signal]);
      this.#refill();
    }
    const n = Math.min(want, Math.floor(this.#tokens));
    this.#tokens -= n;
    return this.#generate(n);
  }

  /** Nothing upstream to acknowledge: the offsets themselves are the whole state. */
  async commit(_offsets: readonly SourceOffsetEntry[]): Promise<void> {}

  /** Holds no resources; a pending poll has already returned by the time `stop` is called. */
  async stop(): Promise<void> {}

  #context(): SourceTaskContext {
    if (!this.#ctx) throw new SluiceError('INVALID_ARGUMENT', 'datagen: poll before start');
    return this.#ctx;
  }

  #remaining(): number {
    if (this.#next >= this.#end) return 0;
    return this.#end === Infinity ? Infinity : Math.ceil((this.#end - this.#next) / this.#tasks);
  }

  /** Token bucket holding at most one second of events, so a pause or a slow log is caught up only that much. */
  #refill(): void {
    const now = performance.now();
    this.#tokens = Math.min(Math.max(1, this.#rate), this.#tokens + ((now - this.#refilledAt) * this.#rate) / 1000);
    this.#refilledAt = now;
  }

  #generate(n: number): SourceRecord[] {
    const records: SourceRecord[] = new Array(n);
    for (let j = 0; j < n; j++) {
      const index = this.#next;
      const event = generateEvent(this.#preset, this.#options, index);
      this.#next = index + this.#tasks;
      records[j] = {
        sourcePartition: this.#partition,
        sourceOffset: { next: this.#next },
        key: Buffer.from(event.key, 'utf8'),
        value: Buffer.from(JSON.stringify(event.value), 'utf8'),
      };
    }
    if (n > 0) this.#reportRemaining();
    return records;
  }

  #reportRemaining(): void {
    if (this.#end !== Infinity) this.#context().metrics.gauge('remaining_events', this.#remaining());
  }
}

/**
 * Orders two offsets of one datagen task. Every event has its own `next`, and a restart regenerates
 * the same key and value for it, so the runtime may drop what a crash left in the log.
 */
export function compareOffsets(a: SourceOffset, b: SourceOffset): number | null {
  const x = nextOf(a);
  const y = nextOf(b);
  return x === undefined || y === undefined ? null : x - y;
}

/** The `next` of a datagen offset, or undefined when it is not a non-negative safe integer. */
function nextOf(offset: SourceOffset): number | undefined {
  const next: JsonValue | undefined = offset.next;
  return typeof next === 'number' && Number.isSafeInteger(next) && next >= 0 ? next : undefined;
}

/**
 * Where a task without an offset of its own starts when the connector ran before with another task
 * count. Every event is the same whatever the layout, so for each earlier layout the lowest `next`
 * of its tasks (0 for a task that never committed) bounds what that layout generated in full; the
 * highest such bound over all layouts is safe to resume from. Events between it and where the other
 * old tasks were are generated again: duplicates, which at-least-once allows, rather than gaps.
 */
function resumeFromOtherLayouts(committed: readonly SourceOffsetEntry[]): number {
  const layouts = new Map<number, Map<number, number>>();
  for (const { sourcePartition: p, sourceOffset } of committed) {
    const next = nextOf(sourceOffset);
    if (p.generator !== GENERATOR || typeof p.task !== 'number' || typeof p.tasks !== 'number' || next === undefined) continue;
    let tasks = layouts.get(p.tasks);
    if (!tasks) layouts.set(p.tasks, (tasks = new Map()));
    tasks.set(p.task, next);
  }
  let from = 0;
  for (const [count, nexts] of layouts) {
    let low = Infinity;
    for (let task = 0; task < count; task++) low = Math.min(low, nexts.get(task) ?? 0);
    from = Math.max(from, low);
  }
  return from;
}

/** The smallest index >= `from` that belongs to task `task` of `tasks`. */
function alignUp(from: number, task: number, tasks: number): number {
  return from + ((((task - from) % tasks) + tasks) % tasks);
}

/** Resolves after `ms`, or as soon as any of `signals` aborts. Never rejects. */
function sleep(ms: number, signals: readonly AbortSignal[]): Promise<void> {
  if (signals.some((s) => s.aborted)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      for (const s of signals) s.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    for (const s of signals) s.addEventListener('abort', done, { once: true });
  });
}
