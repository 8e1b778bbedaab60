import type { IncomingMessage } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { gateNamespace } from './namespace.js'

/** `/notification`: server-to-user delivery; `POST /v1/publish` to room `user:<sub>` reaches every socket of that user. */
export function registerNotification (app: FastifyInstance, clientIp: (req: IncomingMessage) => string): void {
  gateNamespace(app, '/notification', clientIp)
}
