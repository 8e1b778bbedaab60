import fp from 'fastify-plugin'
import { createMemoryHistory } from '../history/memory-history.js'
import { createRedisHistory } from '../history/redis-history.js'
import type { HistoryStore } from '../history/types.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Recent messages of the rooms of HISTORY_NAMESPACES (SPEC §12): Redis streams with REDIS_URL, in process without. */
    history: History
  }
}

export interface History extends HistoryStore {
  /** True for a namespace whose rooms keep history (called on every relay: a set lookup). */
  keeps: (namespace: string) => boolean
  /** HISTORY_SIZE: the most a room keeps, and the cap of a `history` read. */
  readonly size: number
}

export default fp(async (app) => {
  const { namespaces, size, ttlSeconds } = app.config.history
  const limits = { size, ttlMs: ttlSeconds * 1000 }
  const store = app.redisStore === undefined ? createMemoryHistory(limits) : createRedisHistory(app.redisStore.client, limits)
  const keeping: ReadonlySet<string> = new Set(namespaces)
  app.decorate('history', { ...store, keeps: (namespace: string) => keeping.has(namespace), size } satisfies History)
  app.addHook('onClose', async () => { store.close() })
}, { name: 'history', fastify: '5.x', dependencies: ['config', 'store'] })
