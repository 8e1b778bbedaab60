import type { FastifyInstance } from 'fastify'
import { gateNamespace, type NamespaceContext } from './namespace.js'

/** `/chat`: client-to-client rooms; what a client may join and send is its policy's. */
export function registerChat (app: FastifyInstance, context: NamespaceContext): void {
  gateNamespace(app, '/chat', context)
}
