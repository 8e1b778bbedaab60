import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { Departure, PresenceSnapshot, PresenceStore } from './types.js'

// Per room three hashes: `<room>` sub → connections on every instance (the count is its HLEN), `<room>␀by`
// "<instance> <sub>" → that instance's share (what a dead instance's reaper takes back), `<room>␀gone` sub → when
// its last connection went (NUL: no room name holds one, so no room's key is another's hash). Per instance, the set of rooms it has members in; and one sorted set of leases.
const JOIN_SCRIPT = `
local before = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[3])
if before then return 0 end
return 1`

const LEAVE_SCRIPT = `
local mine = redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
if mine <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
if mine < 0 then return 0 end
local total = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if total > 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 0)
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
return 1`

// ARGV: sub, now, grace
const EXPIRE_SCRIPT = `
local total = redis.call('HGET', KEYS[1], ARGV[1])
if total ~= '0' then return -1 end
local gone = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local wait = gone + tonumber(ARGV[3]) - tonumber(ARGV[2])
if wait > 0 then return wait end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 0`

// Takes a dead instance's share of one room back. ARGV: "<instance> " prefix, now, grace. Returns how many subjects
// are still in their grace (the room is looked at again later), then the subjects that left: those whose last
// connections were on it, and those whose grace ran out while only it could have ended it.
const REAP_ROOM_SCRIPT = `
local left = {0}
local by = redis.call('HGETALL', KEYS[2])
local prefix = ARGV[1]
for i = 1, #by, 2 do
  if string.sub(by[i], 1, #prefix) == prefix then
    local sub = string.sub(by[i], #prefix + 1)
    redis.call('HDEL', KEYS[2], by[i])
    if redis.call('HINCRBY', KEYS[1], sub, -tonumber(by[i + 1])) <= 0 then
      redis.call('HDEL', KEYS[1], sub)
      redis.call('HDEL', KEYS[3], sub)
      table.insert(left, sub)
    end
  end
end
local gone = redis.call('HGETALL', KEYS[3])
for i = 1, #gone, 2 do
  if tonumber(gone[i + 1]) + tonumber(ARGV[3]) <= tonumber(ARGV[2]) and redis.call('HGET', KEYS[1], gone[i]) == '0' then
    redis.call('HDEL', KEYS[1], gone[i])
    redis.call('HDEL', KEYS[3], gone[i])
    table.insert(left, gone[i])
  elseif redis.call('HGET', KEYS[1], gone[i]) == '0' then
    left[1] = left[1] + 1
  end
end
return left`

type PresenceRedis = Redis & {
  gatewayPresenceJoin: (total: string, by: string, gone: string, rooms: string, sub: string, field: string, roomRef: string) => Promise<number>
  gatewayPresenceLeave: (total: string, by: string, gone: string, sub: string, field: string, now: number) => Promise<number>
  gatewayPresenceExpire: (total: string, gone: string, sub: string, now: number, grace: number) => Promise<number>
  gatewayPresenceReapRoom: (total: string, by: string, gone: string, prefix: string, now: number, grace: number) => Promise<[number, ...string[]]>
}

/** How often an instance renews its lease, and after how long without a renewal the others take its members (SPEC §11). */
export const LEASE_RENEW_MS = 3000
export const LEASE_LAPSE_MS = 15_000
const LEASES = 'presence:leases'
// How long a survivor's claim on a dead instance lasts: a pass that could not finish is retried after it.
const REAP_CLAIM_MS = 5_000
const roomsOf = (instance: string): string => `presence:rooms:${instance}`
const roomKey = (namespace: string, room: string): string => `presence:${namespace}:${room}`
// A room reference in an instance's set: namespace and room, split at the first NUL (namespaces hold none).
const roomRef = (namespace: string, room: string): string => `${namespace}\u0000${room}`

/**
 * Presence in Redis for a cluster: each instance counts its own share of
 * every room, and renews a lease; the first survivor to see a lease lapse
 * claims the dead instance's share and emits its leaves, once.
 */
export function createRedisPresence (client: Redis, instance: string = randomUUID()): PresenceStore & { readonly instance: string } {
  const redis = client as PresenceRedis
  const scripts: Array<[string, number, string]> = [
    ['gatewayPresenceJoin', 4, JOIN_SCRIPT], ['gatewayPresenceLeave', 3, LEAVE_SCRIPT],
    ['gatewayPresenceExpire', 2, EXPIRE_SCRIPT], ['gatewayPresenceReapRoom', 3, REAP_ROOM_SCRIPT]
  ]
  for (const [name, numberOfKeys, lua] of scripts) {
    if (typeof (redis as unknown as Record<string, unknown>)[name] !== 'function') redis.defineCommand(name, { numberOfKeys, lua })
  }
  const field = (sub: string): string => `${instance} ${sub}`
  const renew = async (): Promise<void> => { await redis.zadd(LEASES, Date.now(), instance).catch(() => 0) }
  void renew()
  const renewal = setInterval(() => { void renew() }, LEASE_RENEW_MS)
  renewal.unref()

  /**
   * Takes a dead instance's members out, room by room; `announce` hears each
   * room's leaves as soon as they are taken. The instance is forgotten only
   * once no room of it failed nor has a subject still in its grace (else its
   * claim lapses and a later pass finishes).
   */
  async function reapInstance (dead: string, graceMs: number, announce: (left: Departure[]) => void): Promise<void> {
    let unfinished = false
    for (const ref of await redis.smembers(roomsOf(dead))) {
      const split = ref.indexOf('\u0000')
      const namespace = ref.slice(0, split)
      const room = ref.slice(split + 1)
      const key = roomKey(namespace, room)
      try {
        const [pending, ...subs] = await redis.gatewayPresenceReapRoom(key, `${key}\u0000by`, `${key}\u0000gone`, `${dead} `, Date.now(), graceMs)
        if (pending > 0) unfinished = true
        announce(subs.map((sub) => ({ namespace, room, sub })))
      } catch {
        unfinished = true
      }
    }
    if (!unfinished) await redis.multi().del(roomsOf(dead)).zrem(LEASES, dead).exec()
  }

  return {
    instance,
    async join (namespace, room, sub) {
      const key = roomKey(namespace, room)
      return await redis.gatewayPresenceJoin(key, `${key}\u0000by`, `${key}\u0000gone`, roomsOf(instance), sub, field(sub), roomRef(namespace, room)) === 1
    },
    async leave (namespace, room, sub) {
      const key = roomKey(namespace, room)
      return await redis.gatewayPresenceLeave(key, `${key}\u0000by`, `${key}\u0000gone`, sub, field(sub), Date.now()) === 1
    },
    async expire (namespace, room, sub, graceMs) {
      const key = roomKey(namespace, room)
      return await redis.gatewayPresenceExpire(key, `${key}\u0000gone`, sub, Date.now(), graceMs)
    },
    async members (namespace, room, max): Promise<PresenceSnapshot> {
      const key = roomKey(namespace, room)
      const count = await redis.hlen(key)
      const members = []
      let cursor = '0'
      do {
        const [next, flat] = await redis.hscan(key, cursor, 'COUNT', Math.min(max, 1000))
        cursor = next
        for (let i = 0; i < flat.length && members.length < max; i += 2) members.push({ sub: flat[i], connections: Math.max(0, Number(flat[i + 1])) })
      } while (cursor !== '0' && members.length < max)
      return { count, members, truncated: count > members.length }
    },
    async reap (graceMs, announce) {
      const lapsed = await redis.zrangebyscore(LEASES, '-inf', Date.now() - LEASE_LAPSE_MS)
      for (const dead of lapsed) {
        if (dead === instance) continue
        // One survivor takes each dead instance's members, for a few seconds; what it leaves unfinished is taken up after.
        if (await redis.set(`presence:reaping:${dead}`, instance, 'PX', REAP_CLAIM_MS, 'NX') !== 'OK') continue
        await reapInstance(dead, graceMs, announce)
      }
    },
    close () {
      // The lease is left to lapse: the survivors take this instance's members (and graces) as if it had died.
      clearInterval(renewal)
    }
  }
}
