import type { Redis } from 'ioredis'
import type { RelayedMessage } from '../protocol/messages.js'
import { compareStreamIds, parseStreamId } from '../protocol/message-ids.js'
import type { HistoryLimits, HistoryStore, Recovery, StoredMessage } from './types.js'

// One command per kept message: the stream grows by one entry (trimmed to about `size`, never below) and
// lives `ttl` past its newest message.
const APPEND_SCRIPT = `
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[3], 'm', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return id`

type HistoryRedis = Redis & { gatewayHistoryAppend: (key: string, size: number, ttlMs: number, event: string, message: string) => Promise<string> }
type StreamEntry = [id: string, fields: string[]]

/** Key of a room's stream (the client's keyPrefix applies): by namespace and the room's name within its tenant. */
const streamKey = (namespace: string, room: string): string => `history:${namespace}:${room}`

function toStored ([id, fields]: StreamEntry): StoredMessage | undefined {
  // Fields are written as e, <event>, m, <message> by the append script alone.
  if (fields[0] !== 'e' || fields[2] !== 'm') return undefined
  try {
    return { event: fields[1], message: { id, ...JSON.parse(fields[3]) as Omit<RelayedMessage, 'id'> } }
  } catch {
    return undefined
  }
}

const storedOf = (entries: StreamEntry[]): StoredMessage[] => entries.map(toStored).filter((stored): stored is StoredMessage => stored !== undefined)

/**
 * History in Redis: one stream per room, so every instance reads the same
 * messages in the same order, and a client recovers wherever it reconnects,
 * its old instance dead or alive. Messages older than the TTL are not read
 * even while a busy room's stream still holds them.
 */
export function createRedisHistory (client: Redis, { size, ttlMs }: HistoryLimits): HistoryStore {
  const redis = client as HistoryRedis
  if (typeof redis.gatewayHistoryAppend !== 'function') redis.defineCommand('gatewayHistoryAppend', { numberOfKeys: 1, lua: APPEND_SCRIPT })
  const oldestKept = (): string => `${Math.max(0, Date.now() - ttlMs)}-0`

  return {
    async append (namespace, room, event, message) {
      return await redis.gatewayHistoryAppend(streamKey(namespace, room), size, ttlMs, event, JSON.stringify(message))
    },
    async recent (namespace, room, limit) {
      const entries = await redis.xrevrange(streamKey(namespace, room), '+', oldestKept(), 'COUNT', limit) as StreamEntry[]
      return storedOf(entries.reverse())
    },
    async since (namespace, room, since): Promise<Recovery> {
      const key = streamKey(namespace, room)
      const after = parseStreamId(since)
      const floor = oldestKept()
      if (after === undefined) return { recovered: false, messages: storedOf((await redis.xrange(key, floor, '+') as StreamEntry[]).slice(-size)) }
      // One round trip: the oldest message kept, and every one after `since` (a stream trimmed with ~ may hold a
      // few more than `size`: the ones past `size` count as a gap, they are not left out unsaid).
      const replies = await redis.pipeline().xrange(key, floor, '+', 'COUNT', 1).xrange(key, `(${since}`, '+').exec()
      if (replies === null) throw new Error('history read was aborted')
      for (const [err] of replies) if (err !== null) throw err
      const [oldest] = replies[0][1] as StreamEntry[]
      const floorId = parseStreamId(floor)!
      const newer = (replies[1][1] as StreamEntry[]).filter(([id]) => { const parsed = parseStreamId(id); return parsed !== undefined && compareStreamIds(parsed, floorId) >= 0 })
      const oldestId = oldest === undefined ? undefined : parseStreamId(oldest[0])
      const recovered = oldestId !== undefined && compareStreamIds(after, oldestId) >= 0 && newer.length <= size
      return { recovered, messages: storedOf(newer.slice(-size)) }
    },
    close () {}
  }
}
