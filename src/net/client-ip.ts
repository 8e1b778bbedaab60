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
  // Fastify 5 trusts no hop for a bare hop count (it cannot validate the peer); so do we.
  const trust = trustProxy === true ? () => true : typeof trustProxy === 'number' ? () => false : proxyAddr.compile(trustProxy)
  return (req) => {
    const addresses = proxyAddr.all(req, trust)
    return addresses[addresses.length - 1] ?? ''
  }
}
