import fp from 'fastify-plugin'
import { gatewayError } from '../errors.js'
import { compileCidrs, type IpMatcher } from '../net/ip.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Refuses with IP_NOT_ALLOWED unless `ip` is inside the key's allowlist
     * (an empty list allows any address). Matchers are compiled once per list.
     */
    checkIp: (allowedIps: readonly string[], ip: string) => void
  }
}

export default fp(async (app) => {
  // Keyed by the list itself: a key record that changes gets a new array, so a stale matcher is never used.
  const matchers = new WeakMap<readonly string[], IpMatcher>()
  app.decorate('checkIp', (allowedIps: readonly string[], ip: string) => {
    if (allowedIps.length === 0) return
    let matcher = matchers.get(allowedIps)
    if (matcher === undefined) {
      matcher = compileCidrs(allowedIps)
      matchers.set(allowedIps, matcher)
    }
    if (!matcher(ip)) throw gatewayError('IP_NOT_ALLOWED')
  })
}, { name: 'ip-allowlist', fastify: '5.x' })
