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
  let closed = false
  // eslint-disable-next-line prefer-const -- assigned once, after the onClose hook that reads it is registered
  let store: SharedStore | undefined
  // Hooked before the first await, so a start that outlives the plugin timeout is still closed with the app.
  app.addHook('onClose', async () => {
    closed = true
    await store?.close()
  })
  const redisStore = redisUrl === undefined ? undefined : await createRedisStore(redisUrl, redisKeyPrefix)
  store = redisStore ?? createMemoryStore()
  if (closed) {
    await store.close()
    throw new Error('the app was closed while Redis connected')
  }
  app.decorate('store', store)
  app.decorate('redisStore', redisStore)
}, { name: 'store', fastify: '5.x', dependencies: ['config'] })
