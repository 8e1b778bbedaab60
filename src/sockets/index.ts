import fp from 'fastify-plugin'
import { gatewayError } from '../errors.js'
import { createClientIpResolver } from '../net/client-ip.js'
import { registerChat } from './chat.js'
import { registerError } from './error-namespace.js'
import { applyKeyChange, enforcePolicy } from './live-policy.js'
import { connectRefusal, forceDisconnect, packetRefusal } from './refusal.js'
import { keyRoom } from '../protocol/rooms.js'
import { ExpiryWatch } from './expiry-watch.js'
import { registerNotification } from './notification.js'
import { registerSystem } from './system.js'
import { guardTransport } from './transport-guard.js'
import type { GatewaySocket } from './types.js'
import { NAMESPACES } from '../protocol/namespaces.js'
import { SUPERSEDED_MESSAGE } from '../plugins/auth.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Disconnects every live socket of a key on every instance (after a
     * `gateway:error` KEY_REVOKED) and counts them.
     * `incomplete` is true when an instance did not answer in time.
     */
    disconnectKey: (keyId: string) => Promise<{ disconnected: number, incomplete: boolean }>
  }
}

/** The Socket.IO side of the gateway: it only adapts what the plugins before it decorate. */
export default fp(async (app) => {
  const expiry = new ExpiryWatch({
    expiring: (socket, expiresAt) => { socket.emit('auth:expiring', { expiresAt }) },
    expired: (socket, expiresAt) => { socket.emit('auth:expired', { expiresAt }) },
    cut: (socket) => { forceDisconnect(app, socket, gatewayError('TOKEN_EXPIRED', 'The token expired and was not refreshed')) }
  })
  app.addHook('onClose', async () => { expiry.close() })
  const context = { clientIp: createClientIpResolver(app.config.trustProxy), expiry }
  guardTransport(app, context.clientIp)
  registerChat(app, context)
  registerNotification(app, context)
  registerSystem(app, context)
  registerError(app, context)
  app.decorate('disconnectKey', async (keyId: string) => {
    const counts = await Promise.all(NAMESPACES.map(async (name) => {
      const target = app.io.of(name).in(keyRoom(keyId))
      let found: number | undefined
      try {
        found = (await target.fetchSockets()).length
      } catch {
        // An instance did not answer within the adapter's timeout: say so rather than guess.
      }
      // Told why before the close (the notice is written ahead of it on every instance).
      target.emit('gateway:error', { ...packetRefusal(gatewayError('KEY_REVOKED')), event: 'disconnect' })
      target.disconnectSockets()
      return found
    }))
    return { disconnected: counts.reduce<number>((sum, n) => sum + (n ?? 0), 0), incomplete: counts.includes(undefined) }
  })
  // Socket.IO always serves the main namespace; it is none of the gateway's, so nobody may sit in it unauthenticated.
  app.io.of('/').use((_socket, next) => {
    next(connectRefusal(gatewayError('NOT_FOUND', `Connect to one of ${NAMESPACES.join(', ')}`)))
  })

  const localSockets = function * (): Generator<GatewaySocket> {
    for (const name of NAMESPACES) yield * app.io.of(name).sockets.values() as Iterable<GatewaySocket>
  }

  // A policy change reaches this instance's live sockets through the policy store's broadcast.
  app.policies.onChange((policyId) => {
    for (const socket of localSockets()) {
      if (socket.data.principal?.policyId === policyId) enforcePolicy(app, socket)
    }
  })

  // A key's change (its policy, its publish limit) reaches its live sockets the same way; the key store has
  // already dropped its cached copy, so the record read here is the new one.
  app.onKeyChange((keyId) => {
    const affected = [...localSockets()].filter((socket) => socket.data.principal?.keyId === keyId)
    if (affected.length === 0) return
    app.keys.findForAuth(keyId).then(
      (key) => { for (const socket of affected) applyKeyChange(app, socket, key) },
      (err: unknown) => { app.log.warn({ err, keyId }, 'key reload failed; live sockets keep the cached key') })
  })

  // A revoked token closes the sockets using it, on every instance; they are told why.
  app.onTokenRevoked((jti) => {
    for (const socket of localSockets()) {
      if (socket.data.principal?.jti === jti) forceDisconnect(app, socket, gatewayError('TOKEN_REVOKED'))
    }
  })

  // So do the tokens a key rotation stopped, at the end of its grace, on every instance.
  app.onTokensSuperseded((superseded) => {
    for (const socket of localSockets()) {
      if (socket.data.principal !== undefined && superseded(socket.data.principal)) forceDisconnect(app, socket, gatewayError('TOKEN_REVOKED', SUPERSEDED_MESSAGE))
    }
  })
}, { name: 'sockets', fastify: '5.x', dependencies: ['io', 'gatekeeper', 'keys', 'policies', 'alerts', 'metrics', 'rate-limit', 'audit', 'routing'] })
