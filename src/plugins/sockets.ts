import fp from 'fastify-plugin'
import { createClientIpResolver } from '../net/client-ip.js'
import { registerChat } from '../sockets/chat.js'
import { registerError } from '../sockets/error.js'
import { enforcePolicy } from '../sockets/live-policy.js'
import { registerNotification } from '../sockets/notification.js'
import { registerSystem } from '../sockets/system.js'
import type { GatewaySocket } from '../sockets/types.js'
import { NAMESPACES } from './io.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Closes this instance's sockets that use a token (by jti); revocation of one token. */
    disconnectToken: (jti: string) => number
  }
}

/** Broadcast when a token is revoked, so every instance closes the sockets using it. */
export const TOKEN_REVOKED_CHANNEL = 'tokens:revoked'

/** The Socket.IO side of the gateway: it only adapts what the plugins before it decorate. */
export default fp(async (app) => {
  const clientIp = createClientIpResolver(app.config.trustProxy)
  registerChat(app, clientIp)
  registerNotification(app, clientIp)
  registerSystem(app, clientIp)
  registerError(app, clientIp)

  const localSockets = function * (): Generator<GatewaySocket> {
    for (const name of NAMESPACES) yield * app.io.of(name).sockets.values() as Iterable<GatewaySocket>
  }

  // A policy change reaches this instance's live sockets through the policy store's broadcast.
  app.policies.onChange((policyId) => {
    for (const socket of localSockets()) {
      if (socket.data.principal?.policyId === policyId) enforcePolicy(app, socket)
    }
  })

  app.decorate('disconnectToken', (jti: string) => {
    let closed = 0
    for (const socket of localSockets()) {
      if (socket.data.principal?.jti === jti) {
        socket.disconnect(true)
        closed++
      }
    }
    return closed
  })
  await app.store.subscribe(TOKEN_REVOKED_CHANNEL, (jti) => { app.disconnectToken(jti) })
}, { name: 'sockets', dependencies: ['io', 'gatekeeper', 'policies', 'alerts', 'metrics', 'rate-limit'] })
