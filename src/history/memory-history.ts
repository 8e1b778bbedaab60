import type { RelayedMessage } from '../protocol/messages.js'
import { compareStreamIds, formatStreamId, parseStreamId } from '../protocol/message-ids.js'
import type { HistoryLimits, HistoryStore, Recovery, StoredMessage } from './types.js'

interface Entry { id: [number, number], stored: StoredMessage }
interface RoomLog { entries: Entry[], lastId: [number, number] }

// Rooms whose newest message is past the TTL are dropped by a sweep this often (their memory goes with them).
const SWEEP_MS = 10_000

/** History in process (one instance, no Redis): the last `size` messages of each room, dropped `ttlMs` after they were kept. */
export function createMemoryHistory ({ size, ttlMs }: HistoryLimits, now: () => number = Date.now): HistoryStore {
  const rooms = new Map<string, RoomLog>()
  const keyOf = (namespace: string, room: string): string => `${namespace}\u0000${room}`
  const sweep = setInterval(() => {
    const horizon = now() - ttlMs
    for (const [key, log] of rooms) if (log.lastId[0] < horizon) rooms.delete(key)
  }, SWEEP_MS)
  sweep.unref()

  /** The entries still kept: the TTL counts from each message's id. */
  function kept (log: RoomLog | undefined): Entry[] {
    if (log === undefined) return []
    const horizon = now() - ttlMs
    let first = 0
    while (first < log.entries.length && log.entries[first].id[0] < horizon) first++
    if (first > 0) log.entries.splice(0, first)
    return log.entries
  }

  return {
    append (namespace, room, event, message) {
      const key = keyOf(namespace, room)
      let log = rooms.get(key)
      const ms = now()
      // Ordered within the room even when the clock steps back or two messages share a millisecond.
      const id: [number, number] = log === undefined || ms > log.lastId[0] ? [ms, 0] : [log.lastId[0], log.lastId[1] + 1]
      const text = formatStreamId(id)
      const stored: StoredMessage = { event, message: { id: text, ...message } as RelayedMessage }
      if (log === undefined) rooms.set(key, log = { entries: [], lastId: id })
      log.lastId = id
      log.entries.push({ id, stored })
      if (log.entries.length > size) log.entries.shift()
      return text
    },
    recent (namespace, room, limit) {
      return kept(rooms.get(keyOf(namespace, room))).slice(-limit).map((entry) => entry.stored)
    },
    since (namespace, room, since): Recovery {
      const entries = kept(rooms.get(keyOf(namespace, room)))
      const after = parseStreamId(since)
      if (after === undefined || entries.length === 0) return { recovered: false, messages: entries.map((entry) => entry.stored) }
      return {
        recovered: compareStreamIds(after, entries[0].id) >= 0,
        messages: entries.filter((entry) => compareStreamIds(entry.id, after) > 0).map((entry) => entry.stored)
      }
    },
    close () {
      clearInterval(sweep)
      rooms.clear()
    }
  }
}
