import type { FastifyInstance } from 'fastify'
import { gateNamespace, type NamespaceContext } from './namespace.js'

/** `/notification`: server-to-user delivery; `POST /v1/publish` to room `user:<sub>` reaches every socket of that user. */
export function registerNotification (app: FastifyInstance, context: NamespaceContext): void {
  gateNamespace(app, '/notification', context)
}
