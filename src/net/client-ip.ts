import type { IncomingMessage } from 'node:http'
import proxyAddr from '@fastify/proxy-addr'
import type { Config } from '../config.js'

/**
 * The client address of a raw request under TRUST_PROXY, by the same rule
 * Fastify applies to `request.ip` (it uses this library the same way), so a
 * Socket.IO handshake and an HTTP request from one client resolve alike.
 * A raw `X-Forwarded-For` is never believed unless the peer is trusted.
 */
export function createClientIpResolver (trustProxy: Config['trustProxy']): (req: IncomingMessage) => string {
  if (trustProxy === false) return (req) => req.socket.remoteAddress ?? ''
  const option = fastifyTrustProxy(trustProxy)
  const trust = option === true ? () => true : typeof option === 'function' ? option : proxyAddr.compile(option as string[])
  return (req) => {
    const addresses = proxyAddr.all(req, trust)
    return addresses[addresses.length - 1] ?? ''
  }
}

type TrustFunction = (address: string, hop: number) => boolean

/**
 * TRUST_PROXY as Fastify's `trustProxy` option. A hop count N trusts the N
 * nearest hops (as in Express): Fastify 5 takes a bare number to mean no
 * trust at all, so it is given as a function, and handshakes use the same one.
 */
export function fastifyTrustProxy (trustProxy: Config['trustProxy']): boolean | string[] | TrustFunction {
  if (typeof trustProxy !== 'number') return trustProxy
  return (_address, hop) => hop < trustProxy
}
