/**
 * The de-duplication memory: which idempotency keys (or delivery ids) a route answered with 2xx,
 * and which are still waiting for theirs. It lives in the process, so a restart forgets it.
 */

/** A remembered answer, replayed to a repeat. */
export interface StoredAnswer {
  readonly status: number;
  readonly body: string;
  readonly requestId: string;
}

/** How a repeat is told the outcome of the request it repeats. */
export type Waiter = (answer: StoredAnswer | null) => void;

type Entry = { state: 'pending'; waiters: Waiter[] } | { state: 'done'; answer: StoredAnswer; expiresAt: number };

/**
 * A map from key to answer, bounded in time (`windowMs` after the answer) and in size
 * (`maxKeys`). Entries sit in insertion order, which is also the order of their expiry except for
 * pending ones, so expired entries are found at the front and eviction is amortised O(1).
 */
export class DedupeStore {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly windowMs: number,
    private readonly maxKeys: number,
  ) {}

  get enabled(): boolean {
    return this.windowMs > 0;
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * What is known about `key`: a stored answer, `'pending'` (the caller's `waiter` is then called
   * once the first request is answered, with null when it failed), or `'new'`, in which case the
   * key is now pending and the caller must settle it with {@link resolve} or {@link forget}.
   */
  claim(key: string, nowMs: number, waiter: Waiter): StoredAnswer | 'pending' | 'new' {
    this.evict(nowMs);
    const entry = this.entries.get(key);
    if (entry?.state === 'done') {
      if (entry.expiresAt > nowMs) return entry.answer;
      this.entries.delete(key);
    } else if (entry?.state === 'pending') {
      entry.waiters.push(waiter);
      return 'pending';
    }
    this.entries.set(key, { state: 'pending', waiters: [] });
    return 'new';
  }

  /** Records the 2xx a pending key got and passes it to the repeats waiting on it. */
  resolve(key: string, answer: StoredAnswer, nowMs: number): void {
    const entry = this.entries.get(key);
    if (entry?.state !== 'pending') return;
    // Re-inserted so the map's order stays the order of expiry.
    this.entries.delete(key);
    this.entries.set(key, { state: 'done', answer, expiresAt: nowMs + this.windowMs });
    for (const waiter of entry.waiters) waiter(answer);
  }

  /** Drops a pending key whose request failed; the repeats waiting on it are told to go ahead themselves. */
  forget(key: string): void {
    const entry = this.entries.get(key);
    if (entry?.state !== 'pending') return;
    this.entries.delete(key);
    for (const waiter of entry.waiters) waiter(null);
  }

  private evict(nowMs: number): void {
    for (const [key, entry] of this.entries) {
      // A pending key is never evicted: its request is in flight and repeats wait on it. Pending
      // keys are few (at most max_pending) and soon settled, so skipping them stays cheap.
      if (entry.state === 'pending') continue;
      if (entry.expiresAt > nowMs && this.entries.size < this.maxKeys) break;
      this.entries.delete(key);
    }
  }
}
