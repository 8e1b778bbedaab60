import type { IncomingMessage } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { createConnectionGate } from './connection-gate.js'
import { guardRecovery, resumeSession } from './recovery.js'
import { attachProtocol } from './client-events.js'
import { holdableBroadcasts } from './broadcast-hold.js'
import { trackPresence } from './presence-tracking.js'
import type { ExpiryWatch } from './expiry-watch.js'
import type { GatewayNamespace, GatewaySocket } from './types.js'

/** What every namespace of an instance shares. */
export interface NamespaceContext {
  clientIp: (req: IncomingMessage) => string
  expiry: ExpiryWatch
}

/**
 * Puts the gateway in front of one namespace: the connection gate on every
 * handshake (recovered sessions included), then the packet gate and protocol.
 */
export function gateNamespace (app: FastifyInstance, name: string, context: NamespaceContext): GatewayNamespace {
  const nsp = app.io.of(name)
  const gauge = app.gatewayMetrics.socketConnections.labels({ namespace: name })
  const takeHeldSession = guardRecovery(nsp, app.messages.bytesOf)
  const holdRoom = holdableBroadcasts(nsp)
  if (app.presence.tracks(name)) trackPresence(app, nsp)
  nsp.use(createConnectionGate(app, context.clientIp))
  nsp.on('connection', (socket: GatewaySocket) => {
    gauge.inc()
    socket.on('disconnect', () => { gauge.dec() })
    attachProtocol(app, socket, context.expiry, holdRoom)
    const held = socket.recovered ? takeHeldSession(socket) : undefined
    if (held !== undefined) resumeSession(app, socket, held)
  })
  return nsp
}
