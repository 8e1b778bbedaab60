/** One subject in a room, with its live connections across instances (0 while its leave waits out the grace). */
export interface PresenceMember { sub: string, connections: number }

/** Who is in a room (SPEC §11): `count` is exact, `members` at most the asked number. */
export interface PresenceSnapshot { count: number, members: PresenceMember[], truncated: boolean }

/** A subject that left a room, as the store found it. */
export interface Departure { namespace: string, room: string, sub: string }

/**
 * Distinct subjects per room with their connection counts (SPEC §11), on
 * every instance: Redis with REDIS_URL, in process without. Rooms are named
 * as the gateway knows them (with their tenant). Each call is atomic.
 */
export interface PresenceStore {
  /** A connection of `sub` joined `room`: true when the subject was not there (its presence:join is due). */
  join: (namespace: string, room: string, sub: string) => Promise<boolean> | boolean
  /** A connection of `sub` left `room`: true when it was the subject's last (its leave is due after the grace). */
  leave: (namespace: string, room: string, sub: string) => Promise<boolean> | boolean
  /**
   * The grace of a subject with no connection left: 0 when it has just been
   * removed (its presence:leave is due), the milliseconds still to wait, or
   * -1 when it is back (or gone already).
   */
  expire: (namespace: string, room: string, sub: string, graceMs: number) => Promise<number> | number
  members: (namespace: string, room: string, max: number) => Promise<PresenceSnapshot> | PresenceSnapshot
  /** Removes the members of instances that stopped renewing their lease, once across the cluster; `announce` hears who left, room by room. */
  reap: (graceMs: number, announce: (left: Departure[]) => void) => Promise<void> | void
  close: () => Promise<void> | void
}
