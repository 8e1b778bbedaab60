export interface BackoffOptions {
  /** The ceiling of the first delay, ms (default 500). */
  baseMs?: number
  /** The largest ceiling, ms (default 30 000). */
  maxMs?: number
  /** Uniform in [0, 1); replaceable for tests. */
  random?: () => number
}

export const DEFAULT_BACKOFF = { baseMs: 500, maxMs: 30_000 } as const

/**
 * Exponential backoff with full jitter: a delay drawn uniformly from
 * [0, min(maxMs, baseMs × 2^attempt)). Full jitter (rather than ± a fraction)
 * spreads the clients a restarted gateway lost over the whole window, so they
 * do not come back in waves.
 */
export function backoffDelay (attempt: number, options: BackoffOptions = {}): number {
  const baseMs = options.baseMs ?? DEFAULT_BACKOFF.baseMs
  const maxMs = options.maxMs ?? DEFAULT_BACKOFF.maxMs
  const random = options.random ?? Math.random
  // The exponent is bounded so that a long outage cannot overflow to Infinity.
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(attempt, 0), 30))
  return Math.floor(random() * ceiling)
}

/** The attempt counter of one reconnecting thing (the transport, a namespace, the token refresh). */
export class Backoff {
  private attempts = 0

  constructor (private readonly options: BackoffOptions = {}) {}

  /** The delay before the next attempt; each call widens the window. */
  next (): number {
    return backoffDelay(this.attempts++, this.options)
  }

  /** After a success: the next failure starts from the first window again. */
  reset (): void {
    this.attempts = 0
  }
}
