import type { IncomingMessage } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { gateNamespace } from './namespace.js'

/** `/chat`: client-to-client rooms; what a client may join and send is its policy's. */
export function registerChat (app: FastifyInstance, clientIp: (req: IncomingMessage) => string): void {
  gateNamespace(app, '/chat', clientIp)
}
