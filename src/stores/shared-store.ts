/** What a fixed-window counter says after a hit. */
export interface WindowCount {
  /** events counted in the current window, this hit included */
  count: number
  /** milliseconds until the window resets */
  resetInMs: number
}

/**
 * The few shared-state operations the gateway needs: Redis when several
 * instances run, an in-process implementation on one. Both are atomic per call,
 * so a limit counted here holds whichever instance asks.
 */
export interface SharedStore {
  readonly kind: 'redis' | 'memory'
  /** Adds `by` (default 1) to the key's count in its current fixed window. */
  hit: (key: string, windowMs: number, by?: number) => Promise<WindowCount>
  /**
   * Leases up to `want` units of a fixed-window quota of `max`: never grants
   * more than `max` in a window, whoever asks. Returns the units granted (0 when
   * the window is spent) and the milliseconds the window has left.
   */
  lease: (key: string, windowMs: number, max: number, want: number) => Promise<{ granted: number, resetInMs: number }>
  /**
   * Takes one of `max` slots (live connections of a key) for this instance;
   * false when all are taken. Slots held by instances that stopped
   * heartbeating (crashed) are not counted.
   */
  acquireSlot: (key: string, max: number) => Promise<boolean>
  releaseSlot: (key: string) => Promise<void>
  /** Marks a key (revoked jti, blocked IP) for `ttlMs`. */
  setFlag: (key: string, ttlMs: number) => Promise<void>
  /** Milliseconds left on the first of `keys` that is set, or 0 when none is. */
  flagTtl: (...keys: string[]) => Promise<number>
  /** Sends a message to every instance, this one included. */
  publish: (channel: string, message: string) => Promise<void>
  subscribe: (channel: string, listener: (message: string) => void) => Promise<void>
  /** Throws when the backend cannot answer. */
  ping: () => Promise<void>
  close: () => Promise<void>
}
