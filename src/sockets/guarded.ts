import type { FastifyInstance } from 'fastify'
import { gatewayError } from '../errors.js'
import type { Ack } from '../protocol/messages.js'
import { answerRefusal, packetRefusal } from './refusal.js'
import type { GatewaySocket } from './types.js'

/** What `guarded` returns when the work threw (and the client was answered). */
export const FAULTED = Symbol('faulted')

/**
 * Runs a handler's work for one client: an error it throws (a bug) is
 * reported as a fault, and the client is answered UNAVAILABLE instead of the
 * process meeting an uncaught exception. The work's result, or FAULTED.
 */
export function guarded<T> (app: FastifyInstance, socket: GatewaySocket, where: string, ack: Ack | undefined, work: () => T): T | typeof FAULTED {
  try {
    return work()
  } catch (err) {
    answerFault(app, socket, where, ack, err)
    return FAULTED
  }
}

/** Reports an error thrown while serving the socket (a bug) and answers the client UNAVAILABLE. */
export function answerFault (app: FastifyInstance, socket: GatewaySocket, where: string, ack: Ack | undefined, err: unknown): void {
  app.reportFault(err, { where, keyId: socket.data.principal.keyId, namespace: socket.nsp.name, owner: socket })
  try {
    answerRefusal(socket, where, ack, packetRefusal(gatewayError('UNAVAILABLE', 'The gateway could not handle this packet')))
  } catch {}
}
