import fp from 'fastify-plugin'
import type { SharedStore } from '../stores/shared-store.js'
import { createMemoryStore } from '../stores/memory-store.js'
import { createRedisStore, type RedisStore } from '../stores/redis-store.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Shared counters, flags and broadcasts: Redis with REDIS_URL, in-process without. */
    store: SharedStore
    /** The Redis store when REDIS_URL is set (the Socket.IO adapter duplicates its connection). */
    redisStore: RedisStore | undefined
  }
}

export default fp(async (app) => {
  const { redisUrl, redisKeyPrefix } = app.config
  const redisStore = redisUrl === undefined ? undefined : await createRedisStore(redisUrl, redisKeyPrefix)
  const store = redisStore ?? createMemoryStore()
  app.decorate('store', store)
  app.decorate('redisStore', redisStore)
  app.addHook('onClose', async () => { await store.close() })
}, { name: 'redis', dependencies: ['config'] })
