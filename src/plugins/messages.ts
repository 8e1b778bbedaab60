import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import { namespaceRefusal, type Principal } from '../auth/principal.js'
import type { GatewayError } from '../errors.js'
import type { RelayedMessage } from '../protocol/messages.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The one publish pipeline: a socket's relay and `POST /v1/publish` pass the same checks, in the same order. */
    messages: Messages
  }
}

export interface PublishRequest { namespace: string, room: string, event: string, data: unknown }

/** Where a published event comes from: a socket (left out of its own delivery), and its size on the wire. */
export interface PublishOrigin { exceptSocketId?: string, bytes: number }

export interface Messages {
  /**
   * The checks that count nothing, in SPEC order: the token's namespace
   * down-scope, then `authorize` publish (reserved names, policy). The
   * refusal, or undefined. A transport runs its own limits after this one.
   */
  refusePublish: (principal: Principal, namespace: string, room: string, event: string) => GatewayError | undefined
  /**
   * Spends the key's publish quota, then delivers the message to the room's
   * members on every instance. The delivered message, or the RATE_LIMITED
   * refusal; a promise only when the quota needs a store round trip.
   */
  deliver: (principal: Principal, request: PublishRequest, origin: PublishOrigin) => RelayedMessage | GatewayError | Promise<RelayedMessage | GatewayError>
  /** The wire size of a message being delivered right now (what connection-state recovery stores is bounded in bytes). */
  bytesOf: (message: unknown) => number | undefined
}

export default fp(async (app) => {
  // The message being emitted and its size, for bytesOf (emitting is synchronous).
  let deliveringMessage: RelayedMessage | undefined
  let deliveringBytes = 0

  function emit (principal: Principal, { namespace, room, event, data }: PublishRequest, origin: PublishOrigin): RelayedMessage {
    const message: RelayedMessage = { id: randomUUID(), room, from: { sub: principal.sub }, data, ts: Date.now() }
    const target = app.io.of(namespace).to(room)
    deliveringMessage = message
    deliveringBytes = origin.bytes
    try {
      (origin.exceptSocketId === undefined ? target : target.except(origin.exceptSocketId)).emit(event, message)
    } finally {
      deliveringMessage = undefined
    }
    return message
  }

  app.decorate('messages', {
    refusePublish (principal, namespace, room, event) {
      return namespaceRefusal(principal, namespace) ?? app.authorize(principal, 'publish', namespace, room, event)
    },
    deliver (principal, request, origin) {
      if (principal.rateLimit === null) return emit(principal, request, origin)
      const quota = app.takePublishQuota(principal.keyId, principal.rateLimit)
      if (quota === undefined) return emit(principal, request, origin)
      if (!(quota instanceof Promise)) return quota
      return quota.then((refused) => refused ?? emit(principal, request, origin))
    },
    bytesOf: (message) => message === deliveringMessage ? deliveringBytes : undefined
  } satisfies Messages)
}, { name: 'messages', fastify: '5.x', dependencies: ['authorize', 'rate-limit', 'io'] })
