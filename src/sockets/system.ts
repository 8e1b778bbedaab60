import type { FastifyInstance } from 'fastify'
import { gateNamespace, type NamespaceContext } from './namespace.js'

/** The room of `/system` that receives the gateway's alerts (SPEC §7). */
export const ADMIN_ROOM = 'admin'

/** `/system`: broadcasts from admin and publish keys, alerts in room `admin`, shutdown notices. */
export function registerSystem (app: FastifyInstance, context: NamespaceContext): void {
  const nsp = gateNamespace(app, '/system', context)
  // Each instance forwards the alerts it raises; the adapter carries them to every instance's sockets.
  app.alerts.onAlert((alert) => { nsp.to(ADMIN_ROOM).emit('alert', alert) })
}
