import fp from 'fastify-plugin'
import { gatewayError, orUnavailable } from '../errors.js'
import { clientBucket } from '../net/ip.js'

declare module 'fastify' {
  interface FastifyInstance {
    anomaly: AnomalyGuard
  }
}

export interface AnomalyGuard {
  /** Refuses with TEMPORARILY_BLOCKED while the client's address is blocked. */
  assertNotBlocked: (ip: string) => Promise<void>
  /** Counts a failed authentication; past the limit the address is blocked and an alert raised. */
  recordFailure: (ip: string, keyId: string | undefined) => Promise<void>
}

export default fp(async (app) => {
  const { store, alerts } = app
  const { maxFailures, blockSeconds } = app.config.anomaly

  app.decorate('anomaly', {
    async assertNotBlocked (ip) {
      const ttl = await orUnavailable(store.flagTtl(`block:ip:${clientBucket(ip)}`))
      if (ttl > 0) throw gatewayError('TEMPORARILY_BLOCKED', undefined, ttl / 1000)
    },
    async recordFailure (ip, keyId) {
      const bucket = clientBucket(ip)
      const perIp = await store.hit(`fail:ip:${bucket}`, maxFailures.windowMs)
      if (perIp.count > maxFailures.max) {
        // Every failure past the limit blocks: a block shorter than the window must not open the rest of it.
        // The alert is raised once per block: on the failure that crosses the limit, or on the first after a block ended.
        const newBlock = perIp.count === maxFailures.max + 1 || await store.flagTtl(`block:ip:${bucket}`) === 0
        await store.setFlag(`block:ip:${bucket}`, blockSeconds * 1000)
        if (newBlock) alerts.raise({ kind: 'ip_blocked', ip: bucket, count: perIp.count })
      }
      if (keyId !== undefined) {
        // Failures on one key id alert but never block the key's holder (SPEC §7).
        const perKey = await store.hit(`fail:key:${keyId}`, maxFailures.windowMs)
        if (perKey.count === maxFailures.max + 1) alerts.raise({ kind: 'key_failures', keyId, count: perKey.count })
      }
    }
  })
}, { name: 'anomaly', fastify: '5.x', dependencies: ['config', 'store', 'alerts'] })
