import type { FastifyInstance } from 'fastify'
import { gateNamespace, type NamespaceContext } from './namespace.js'

/**
 * `/error`: the gateway's own error events for a subject (refused packets,
 * forced disconnects), delivered to `user:<sub>` by the packet gate.
 */
export function registerError (app: FastifyInstance, context: NamespaceContext): void {
  gateNamespace(app, '/error', context)
}
