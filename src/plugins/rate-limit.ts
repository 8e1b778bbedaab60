import fp from 'fastify-plugin'
import fastifyRateLimit, { type FastifyRateLimitStore, type FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import type { FastifyRequest } from 'fastify'
import type { Rate } from '../config.js'
import { gatewayError, orUnavailable, type GatewayError } from '../errors.js'
import type { KeyRateLimit } from '../keys/types.js'
import { QuotaLeases } from '../limits/quota-leases.js'
import { clientBucket } from '../net/ip.js'
import { httpAttempt } from './gatekeeper.js'
import type { SharedStore } from '../stores/shared-store.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Counts one event against `key` in the shared store and refuses with
     * RATE_LIMITED (with retryAfter) past `rate.max` in the window. REST routes
     * (through @fastify/rate-limit) and sockets count in this same store.
     */
    hitRateLimit: (key: string, rate: Rate, scope: string) => Promise<void>
    /**
     * Spends one publish of a key's cluster-wide `rateLimit` (socket and HTTP
     * publishes alike) from a lease held by this instance: no store round trip
     * on the common path. Undefined when allowed, the RATE_LIMITED refusal
     * otherwise; a promise only when a new lease must be taken.
     */
    takePublishQuota: (keyId: string, limit: KeyRateLimit) => GatewayError | undefined | Promise<GatewayError | undefined>
  }
}

type Callback = (err: Error | null, result?: { current: number, ttl: number }) => void

/** @fastify/rate-limit's store contract over our SharedStore, so both count in one place. */
function sharedStoreClass (store: SharedStore): FastifyRateLimitStoreCtor {
  return class SharedRateLimitStore implements FastifyRateLimitStore {
    constructor (_options?: unknown, private readonly scope = 'rl:') {}

    incr (key: string, cb: Callback, windowMs: number): void {
      store.hit(`${this.scope}${key}`, windowMs).then((r) => { cb(null, { current: r.count, ttl: r.resetInMs }) }, (err: Error) => { cb(err) })
    }

    /** A route with a limit of its own counts in a bucket of its own, whatever its key generator. */
    child (options: Parameters<FastifyRateLimitStore['child']>[0]): SharedRateLimitStore {
      // At run time the plugin passes the merged limit options, the route under `routeInfo`.
      const { method, url } = (options as { routeInfo?: { method?: string | string[], url?: string } }).routeInfo ?? {}
      return new SharedRateLimitStore(undefined, `rl:${String(method)} ${url ?? ''}:`)
    }
  }
}

/** The per-IP key of a request, under TRUST_PROXY (req.ip), IPv6 grouped by /64. */
export function ipRateKey (prefix: string) {
  return (req: FastifyRequest): string => `${prefix}:${clientBucket(req.ip)}`
}

export default fp(async (app) => {
  const { store } = app
  await app.register(fastifyRateLimit, {
    global: false,
    store: sharedStoreClass(store),
    keyGenerator: ipRateKey('http'),
    errorResponseBuilder: (_req, context) => gatewayError('RATE_LIMITED', `Rate limit exceeded, retry in ${context.after}`, context.ttl / 1000),
    onExceeded: (req) => {
      app.gatewayMetrics.rateLimited.inc({ scope: 'http' })
      // A refused attempt is audited like any other (the credential was never looked at, so no key id).
      app.audit.record({ ...httpAttempt(req), keyId: null, outcome: 'refused', reason: 'RATE_LIMITED' })
    }
  })

  const leases = new QuotaLeases(store)
  const sweep = setInterval(() => { leases.sweep() }, 60_000)
  sweep.unref()
  app.addHook('onClose', async () => { clearInterval(sweep) })
  const verdict = (key: string, allowed: boolean): GatewayError | undefined => {
    if (allowed) return undefined
    app.gatewayMetrics.rateLimited.inc({ scope: 'key' })
    return gatewayError('RATE_LIMITED', undefined, leases.retryAfterMs(key) / 1000)
  }
  // A key record's limit object lives as long as the cached record: its Rate is built once, not per packet.
  const rates = new WeakMap<KeyRateLimit, Rate>()
  app.decorate('takePublishQuota', (keyId: string, limit: KeyRateLimit) => {
    let rate = rates.get(limit)
    if (rate === undefined) {
      rate = { max: limit.max, windowMs: limit.windowSeconds * 1000 }
      rates.set(limit, rate)
    }
    const key = `publish:${keyId}`
    const allowed = leases.take(key, rate)
    if (typeof allowed === 'boolean') return verdict(key, allowed)
    return allowed.then((ok) => verdict(key, ok), () => gatewayError('UNAVAILABLE'))
  })

  app.decorate('hitRateLimit', async (key: string, rate: Rate, scope: string) => {
    const result = await orUnavailable(store.hit(`rl:${key}`, rate.windowMs))
    if (result.count > rate.max) {
      app.gatewayMetrics.rateLimited.inc({ scope })
      throw gatewayError('RATE_LIMITED', undefined, result.resetInMs / 1000)
    }
  })
}, { name: 'rate-limit', fastify: '5.x', dependencies: ['store', 'metrics', 'audit'] })
