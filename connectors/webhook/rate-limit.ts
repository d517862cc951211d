/** The per-route request rate limit: a token bucket. */

/**
 * A token bucket holding up to `burst` tokens and refilled at `ratePerS`. Each request takes one;
 * a request that finds none is told how long until one is there.
 */
export class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  constructor(
    private readonly ratePerS: number,
    private readonly burst: number,
    nowMs: number,
  ) {
    this.tokens = burst;
    this.updatedAt = nowMs;
  }

  /** Takes a token: 0 when there was one, else the whole seconds to wait (at least 1) for Retry-After. */
  take(nowMs: number): number {
    this.tokens = Math.min(this.burst, this.tokens + ((nowMs - this.updatedAt) / 1000) * this.ratePerS);
    this.updatedAt = nowMs;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - this.tokens) / this.ratePerS));
  }
}
