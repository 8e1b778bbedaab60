import type { IncomingMessage } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { createConnectionGate } from './connection-gate.js'
import { enforcePolicy } from './live-policy.js'
import { attachProtocol } from './protocol.js'
import type { GatewayNamespace, GatewaySocket } from './types.js'

/**
 * Puts the gateway in front of one namespace: the connection gate on every
 * handshake (recovered sessions included), then the packet gate and protocol.
 */
export function gateNamespace (app: FastifyInstance, name: string, clientIp: (req: IncomingMessage) => string): GatewayNamespace {
  const nsp = app.io.of(name)
  const gauge = app.gatewayMetrics.socketConnections.labels({ namespace: name })
  nsp.use(createConnectionGate(app, clientIp))
  nsp.on('connection', (socket: GatewaySocket) => {
    gauge.inc()
    socket.on('disconnect', () => { gauge.dec() })
    attachProtocol(app, socket)
    // A recovered session gets its old rooms back: keep only those its policy still allows.
    if (socket.recovered) enforcePolicy(app, socket)
  })
  return nsp
}
