import type { FastifyInstance } from 'fastify'
import { gatewayError, type GatewayError } from '../errors.js'
import { can } from '../policies/engine.js'
import { MessageEnvelope, RefreshEnvelope, RoomEnvelope, type MessagePayload } from './envelopes.js'
import { packetRefusal } from './refusal.js'
import { RESERVED_EVENTS, isInternalRoom, type GatewaySocket } from './types.js'

export type Ack = (response: unknown) => void
type Next = (err?: Error) => void

/**
 * Per-packet middleware, in SPEC §5 order: token expiry, size and envelope,
 * policy, per-socket then per-key limits. Nothing on the common path waits on
 * PostgreSQL or Redis (a per-key limit, when the key has one, is the only
 * shared count). A refused packet is never passed on: the client is told
 * through its ack, or `gateway:error` without one.
 */
export function createPacketGate (app: FastifyInstance, socket: GatewaySocket, relay: (event: string, payload: MessagePayload, ack: Ack | undefined) => void) {
  const maxBytes = app.config.socketMaxPayload
  const socketRate = app.config.rateLimit.socket
  const namespace = socket.nsp.name
  const packets = app.gatewayMetrics.socketPackets

  function refuse (event: string, ack: Ack | undefined, err: GatewayError): void {
    packets.inc({ namespace, outcome: 'refused' })
    const body = packetRefusal(err)
    if (ack !== undefined) ack({ ok: false, error: body })
    else socket.emit('gateway:error', { ...body, event })
    // A flood's refusals are not mirrored one by one: that would turn one client's flood into cluster-wide traffic.
    if (err.code === 'RATE_LIMITED') return
    app.io.of('/error').to(`user:${socket.data.principal.sub}`).emit('gateway:error', { ...body, event, namespace })
  }

  /** The per-socket window; past twice the limit within one window the socket is flooding and is cut off. */
  function overSocketLimit (): GatewayError | undefined {
    const state = socket.data
    const now = Date.now()
    if (now - state.windowStart >= socketRate.windowMs) {
      state.windowStart = now
      state.windowCount = 0
      state.windowRefused = 0
    }
    if (++state.windowCount <= socketRate.max) return undefined
    app.gatewayMetrics.rateLimited.inc({ scope: 'socket' })
    return gatewayError('RATE_LIMITED', 'Too many packets on this connection', (state.windowStart + socketRate.windowMs - now) / 1000)
  }

  function check (event: string, payload: unknown): GatewayError | undefined {
    const { principal } = socket.data
    if (event === 'auth:refresh') return RefreshEnvelope.Check(payload) ? undefined : gatewayError('VALIDATION_FAILED', 'auth:refresh takes { token }')
    if (socket.data.expired || (principal.exp !== undefined && principal.exp * 1000 <= Date.now())) return gatewayError('TOKEN_EXPIRED', 'The token expired: send auth:refresh')
    if (socket.data.packetBytes > maxBytes) return gatewayError('PAYLOAD_TOO_LARGE', `Packets are limited to ${maxBytes} bytes`)
    const policy = app.policies.compiled(principal.policyId)
    if (event === 'join' || event === 'leave') {
      if (!RoomEnvelope.Check(payload)) return gatewayError('VALIDATION_FAILED', `${event} takes { room }`)
      if (isInternalRoom(payload.room, socket)) return gatewayError('FORBIDDEN', 'That room is managed by the gateway')
      if (event === 'join' && !can(policy, principal, 'subscribe', namespace, payload.room)) return gatewayError('FORBIDDEN', `Policy does not allow subscribe to ${payload.room}`)
      return undefined
    }
    if (RESERVED_EVENTS.has(event) || event.startsWith('gateway:')) return gatewayError('FORBIDDEN', `${event} is reserved`)
    if (!MessageEnvelope.Check(payload)) return gatewayError('VALIDATION_FAILED', `${event} takes { room, data }`)
    if (!can(policy, principal, 'publish', namespace, (payload as MessagePayload).room, event)) return gatewayError('FORBIDDEN', `Policy does not allow ${event} in ${(payload as MessagePayload).room}`)
    return undefined
  }

  return (packet: unknown[], next: Next): void => {
    const event = packet[0] as string
    const last = packet[packet.length - 1]
    const ack = typeof last === 'function' ? last as Ack : undefined
    const payload = packet.length > (ack === undefined ? 1 : 2) ? packet[1] : undefined

    const limited = overSocketLimit()
    if (limited !== undefined) {
      refuse(event, ack, limited)
      if (++socket.data.windowRefused > socketRate.max) disconnectFlooder(app, socket, limited)
      return
    }
    const refusal = check(event, payload)
    if (refusal !== undefined) return refuse(event, ack, refusal)

    // join, leave and auth:refresh go on to their handlers; every other event is relayed here
    // (socket.onAny would run before this middleware, so it cannot carry the relay).
    if (RESERVED_EVENTS.has(event)) return next()
    const keyLimit = socket.data.keyRateLimit
    if (keyLimit === null) return relay(event, payload as MessagePayload, ack)
    app.consume(`publish:${socket.data.principal.keyId}`, { max: keyLimit.max, windowMs: keyLimit.windowSeconds * 1000 }, 'key')
      .then(() => { relay(event, payload as MessagePayload, ack) }, (err: GatewayError) => { refuse(event, ack, err) })
  }
}

/** A client that keeps sending past its limit is disconnected, and its address counts toward the anomaly block. */
function disconnectFlooder (app: FastifyInstance, socket: GatewaySocket, err: GatewayError): void {
  if (!socket.connected) return
  socket.emit('gateway:error', { ...packetRefusal(err), event: 'flood' })
  app.log.warn({ ip: socket.data.ip, keyId: socket.data.principal.keyId, namespace: socket.nsp.name }, 'socket disconnected for flooding')
  void app.anomaly.recordFailure(socket.data.ip, undefined).catch(() => {})
  socket.disconnect(true)
}
