import { randomUUID } from 'node:crypto'
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

// Grants what is left of the window's quota, up to the units asked for: the sum of grants never exceeds max.
const LEASE_SCRIPT = `
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local ttl = redis.call('PTTL', KEYS[1])
local max = tonumber(ARGV[2])
if used >= max then return { 0, ttl } end
local grant = math.min(tonumber(ARGV[3]), max - used)
redis.call('INCRBY', KEYS[1], grant)
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return { grant, ttl }`

// Slots are counted per instance in a hash; only instances with a recent heartbeat count, so a crash frees its slots.
const ACQUIRE_SLOT_SCRIPT = `
local live = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[2], '+inf')
local taken = 0
for _, instance in ipairs(live) do
  taken = taken + tonumber(redis.call('HGET', KEYS[1], instance) or '0')
end
if taken >= tonumber(ARGV[3]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[1], 86400000)
return 1`

const RELEASE_SLOT_SCRIPT = `
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1`

/** How often an instance says it is alive, and after how long without a word it is taken for dead. */
const HEARTBEAT_MS = 5000
const INSTANCE_STALE_MS = 15_000
const INSTANCES_KEY = 'instances'

type GatewayRedis = Redis & {
  gatewayLease: (key: string, windowMs: number, max: number, want: number) => Promise<[number, number]>
  gatewayAcquireSlot: (key: string, instances: string, instanceId: string, liveSince: number, max: number) => Promise<number>
  gatewayReleaseSlot: (key: string, instanceId: string) => Promise<number>
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
    // Under the 1 s SPEC §7 allows for a refusal, with room for the reply to travel.
    commandTimeout: 700,
    connectTimeout: 2000,
    lazyConnect: true,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000)
  }
}

export interface RedisStore extends SharedStore {
  /** The command connection, for duplicating (the Socket.IO adapter needs its own pair). */
  readonly client: Redis
}

export async function createRedisStore (url: string, prefix: string, instanceId: string = randomUUID()): Promise<RedisStore> {
  const client = new Redis(url, redisOptions(prefix)) as GatewayRedis
  const subscriber = new Redis(url, { ...redisOptions(prefix), enableOfflineQueue: true, commandTimeout: undefined })
  // Errors are reported through failing commands and /health/ready; without a listener ioredis would print each one.
  client.on('error', () => {})
  subscriber.on('error', () => {})
  client.defineCommand('gatewayHit', { numberOfKeys: 1, lua: HIT_SCRIPT })
  client.defineCommand('gatewayFlagTtl', { lua: FLAG_TTL_SCRIPT })
  client.defineCommand('gatewayLease', { numberOfKeys: 1, lua: LEASE_SCRIPT })
  client.defineCommand('gatewayAcquireSlot', { numberOfKeys: 2, lua: ACQUIRE_SLOT_SCRIPT })
  client.defineCommand('gatewayReleaseSlot', { numberOfKeys: 1, lua: RELEASE_SLOT_SCRIPT })
  try {
    await Promise.all([client.connect(), subscriber.connect()])
  } catch (err) {
    // Otherwise both would go on reconnecting in the background and keep a failed start's process alive.
    client.disconnect()
    subscriber.disconnect()
    throw err
  }

  const heartbeat = async (): Promise<void> => {
    const now = Date.now()
    // Long-dead instances are dropped so the registry stays the size of the cluster.
    await client.multi().zadd(INSTANCES_KEY, now, instanceId).zremrangebyscore(INSTANCES_KEY, '-inf', now - 3_600_000).exec().catch(() => null)
  }
  await heartbeat()
  const heartbeatTimer = setInterval(() => { void heartbeat() }, HEARTBEAT_MS)
  heartbeatTimer.unref()

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
    async lease (key, windowMs, max, want) {
      const [granted, ttl] = await client.gatewayLease(key, windowMs, max, want)
      return { granted, resetInMs: ttl }
    },
    async acquireSlot (key, max) {
      return await client.gatewayAcquireSlot(key, INSTANCES_KEY, instanceId, Date.now() - INSTANCE_STALE_MS, max) === 1
    },
    async releaseSlot (key) {
      await client.gatewayReleaseSlot(key, instanceId)
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
      clearInterval(heartbeatTimer)
      // A clean stop frees this instance's slots at once rather than after the staleness window.
      await client.zrem(INSTANCES_KEY, instanceId).catch(() => 0)
      await Promise.allSettled([client.quit(), subscriber.quit()])
    }
  }
}
