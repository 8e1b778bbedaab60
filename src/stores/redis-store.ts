import { Redis, type RedisOptions } from 'ioredis'
import type { SharedStore, WindowCount } from './shared-store.js'

// One round trip, atomic: count the hit and start the window on the first one.
const HIT_SCRIPT = `
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return { count, ttl }`

// Returns the TTL of the first key that exists, so several flags cost one round trip.
const FLAG_TTL_SCRIPT = `
for i, key in ipairs(KEYS) do
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then return ttl end
  if ttl == -1 then return 1 end
end
return 0`

type GatewayRedis = Redis & {
  gatewayHit: (key: string, windowMs: number, by: number) => Promise<[number, number]>
  gatewayFlagTtl: (count: number, ...keys: string[]) => Promise<number>
}

/**
 * Options for every connection the gateway opens to Redis: commands fail at
 * once while the connection is down (no offline queue), so new work fails
 * closed in well under a second, and reconnection goes on by itself.
 */
export function redisOptions (prefix: string): RedisOptions {
  return {
    keyPrefix: prefix,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: 1000,
    connectTimeout: 2000,
    lazyConnect: true,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000)
  }
}

export interface RedisStore extends SharedStore {
  /** The command connection, for duplicating (the Socket.IO adapter needs its own pair). */
  readonly client: Redis
}

export async function createRedisStore (url: string, prefix: string): Promise<RedisStore> {
  const client = new Redis(url, redisOptions(prefix)) as GatewayRedis
  const subscriber = new Redis(url, { ...redisOptions(prefix), enableOfflineQueue: true, commandTimeout: undefined })
  // Errors are reported through failing commands and /health/ready; without a listener ioredis would print each one.
  client.on('error', () => {})
  subscriber.on('error', () => {})
  client.defineCommand('gatewayHit', { numberOfKeys: 1, lua: HIT_SCRIPT })
  client.defineCommand('gatewayFlagTtl', { lua: FLAG_TTL_SCRIPT })
  await Promise.all([client.connect(), subscriber.connect()])

  const listeners = new Map<string, Array<(message: string) => void>>()
  subscriber.on('message', (channel: string, message: string) => {
    for (const listener of listeners.get(channel) ?? []) listener(message)
  })

  return {
    kind: 'redis',
    client,
    async hit (key, windowMs, by = 1): Promise<WindowCount> {
      const [count, ttl] = await client.gatewayHit(key, windowMs, by)
      return { count, resetInMs: ttl }
    },
    async adjust (key, delta) {
      const value = await client.incrby(key, delta)
      return Math.max(0, value)
    },
    async setFlag (key, ttlMs) {
      await client.set(key, '1', 'PX', Math.max(1, Math.ceil(ttlMs)))
    },
    async flagTtl (...keys) {
      return await client.gatewayFlagTtl(keys.length, ...keys)
    },
    async publish (channel, message) {
      await client.publish(prefix + channel, message)
    },
    async subscribe (channel, listener) {
      const full = prefix + channel
      const existing = listeners.get(full)
      if (existing !== undefined) {
        existing.push(listener)
        return
      }
      listeners.set(full, [listener])
      await subscriber.subscribe(full)
    },
    async ping () {
      await client.ping()
    },
    async close () {
      await Promise.allSettled([client.quit(), subscriber.quit()])
    }
  }
}
