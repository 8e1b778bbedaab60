import type { RelayedMessage } from '../protocol/messages.js'

/** A message as a room's history keeps it: the relayed message and its event name. */
export interface StoredMessage { event: string, message: RelayedMessage }

/** What a room's history gives a client rejoining with `since` (SPEC §12). */
export interface Recovery {
  /** False when messages after `since` may have been dropped already (older than what is kept, or not an id of this room). */
  recovered: boolean
  /** The kept messages after `since`, oldest first. */
  messages: StoredMessage[]
}

/**
 * The recent messages of rooms (SPEC §12): one Redis stream per room with
 * REDIS_URL, a ring per room in process without. Rooms are named as the
 * gateway knows them (with their tenant); ids are ordered within a room.
 */
export interface HistoryStore {
  /** Keeps a message of `room` and returns its id (the stream's). */
  append: (namespace: string, room: string, event: string, message: Omit<RelayedMessage, 'id'>) => Promise<string> | string
  /** The last `limit` messages, oldest first. */
  recent: (namespace: string, room: string, limit: number) => Promise<StoredMessage[]> | StoredMessage[]
  /** The messages after `since`, and whether they are all of them. */
  since: (namespace: string, room: string, since: string) => Promise<Recovery> | Recovery
  close: () => void
}

/** How much a room keeps, and for how long (HISTORY_SIZE, HISTORY_TTL_SECONDS). */
export interface HistoryLimits { size: number, ttlMs: number }
