import type { FastifyInstance } from 'fastify'
import { gatewayError } from '../errors.js'
import type { Ack } from '../protocol/messages.js'
import { packetRefusal } from './refusal.js'
import type { GatewaySocket } from './types.js'

/**
 * Runs a handler's work for one client: an error it throws (a bug) is
 * reported as a fault, and the client is answered UNAVAILABLE instead of the
 * process meeting an uncaught exception.
 */
export function guarded (app: FastifyInstance, socket: GatewaySocket, where: string, ack: Ack | undefined, work: () => void): void {
  try {
    work()
  } catch (err) {
    answerFault(app, socket, where, ack, err)
  }
}

/** Reports an error thrown while serving the socket (a bug) and answers the client UNAVAILABLE. */
export function answerFault (app: FastifyInstance, socket: GatewaySocket, where: string, ack: Ack | undefined, err: unknown): void {
  app.reportFault(err, { where, keyId: socket.data.principal.keyId, namespace: socket.nsp.name, owner: socket })
  const refusal = packetRefusal(gatewayError('UNAVAILABLE', 'The gateway could not handle this packet'))
  try {
    if (ack !== undefined) ack({ ok: false, error: refusal })
    else socket.emit('gateway:error', { ...refusal, event: where })
  } catch {}
}
