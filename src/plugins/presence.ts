import fp from 'fastify-plugin'
import { createMemoryPresence } from '../presence/memory-presence.js'
import { createRedisPresence } from '../presence/redis-presence.js'
import type { PresenceSnapshot, PresenceStore } from '../presence/types.js'
import { clientNameOf } from '../protocol/rooms.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Who is in the rooms of PRESENCE_NAMESPACES, on every instance, and their join and leave events (SPEC §11). */
    presence: Presence
  }
}

/** The most members a presence answer lists (SPEC §11); `count` is exact beyond it. */
export const MAX_PRESENCE_MEMBERS = 1000
// How often each instance looks for instances whose lease lapsed.
const REAP_EVERY_MS = 1000

export interface Presence {
  /** True for a namespace whose rooms have presence. */
  tracks: (namespace: string) => boolean
  /** A connection of `sub` on this instance joined `room` (its name within the tenant). */
  joined: (namespace: string, room: string, sub: string) => void
  /** A connection of `sub` on this instance left `room`. */
  left: (namespace: string, room: string, sub: string) => void
  members: (namespace: string, room: string) => Promise<PresenceSnapshot>
}

export default fp(async (app) => {
  const { namespaces, graceMs } = app.config.presence
  const tracked: ReadonlySet<string> = new Set(namespaces)
  const store: PresenceStore = app.redisStore === undefined ? createMemoryPresence() : createRedisPresence(app.redisStore.client)
  const graces = new Map<string, NodeJS.Timeout>()
  let closed = false

  const failed = (err: unknown): void => { app.log.warn({ err }, 'presence unavailable') }
  function announce (event: 'presence:join' | 'presence:leave', namespace: string, room: string, sub: string): void {
    if (closed) return
    app.io.of(namespace).to(room).emit(event, { room: clientNameOf(room), sub, ts: Date.now() })
  }

  /** Waits out a subject's grace in a room, then sends its leave unless a connection came back meanwhile (on any instance). */
  function awaitGrace (namespace: string, room: string, sub: string, waitMs: number): void {
    const key = `${namespace}\u0000${room}\u0000${sub}`
    clearTimeout(graces.get(key))
    const timer = setTimeout(() => {
      graces.delete(key)
      Promise.resolve(store.expire(namespace, room, sub, graceMs)).then((wait) => {
        if (wait === 0) announce('presence:leave', namespace, room, sub)
        else if (wait > 0 && !closed) awaitGrace(namespace, room, sub, wait)
      }, failed)
    }, waitMs)
    timer.unref()
    graces.set(key, timer)
  }

  app.decorate('presence', {
    tracks: (namespace: string) => tracked.has(namespace),
    joined (namespace, room, sub) {
      Promise.resolve(store.join(namespace, room, sub)).then((first) => { if (first) announce('presence:join', namespace, room, sub) }, failed)
    },
    left (namespace, room, sub) {
      Promise.resolve(store.leave(namespace, room, sub)).then((last) => { if (last) awaitGrace(namespace, room, sub, graceMs) }, failed)
    },
    members: async (namespace, room) => await store.members(namespace, room, MAX_PRESENCE_MEMBERS)
  } satisfies Presence)

  let reaping: NodeJS.Timeout | undefined
  app.addHook('onReady', async () => {
    if (app.redisStore === undefined || tracked.size === 0) return
    let busy = false
    reaping = setInterval(() => {
      if (busy) return
      busy = true
      Promise.resolve(store.reap(graceMs, (departures) => { for (const { namespace, room, sub } of departures) announce('presence:leave', namespace, room, sub) }))
        .catch(failed)
        .finally(() => { busy = false })
    }, REAP_EVERY_MS)
    reaping.unref()
  })
  app.addHook('onClose', async () => {
    closed = true
    clearInterval(reaping)
    for (const timer of graces.values()) clearTimeout(timer)
    graces.clear()
    await store.close()
  })
}, { name: 'presence', fastify: '5.x', dependencies: ['config', 'store', 'io'] })
