import type { IncomingMessage } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { gateNamespace } from './namespace.js'

/**
 * `/error`: the gateway's own error events for a subject (refused packets,
 * forced disconnects), delivered to `user:<sub>` by the packet gate.
 */
export function registerError (app: FastifyInstance, clientIp: (req: IncomingMessage) => string): void {
  gateNamespace(app, '/error', clientIp)
}
