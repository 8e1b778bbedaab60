import type { FastifyInstance } from 'fastify'
import { gatewayError, isGatewayError, type GatewayError } from '../errors.js'
import type { Delivered } from '../plugins/messages.js'
import { HistoryEnvelope, JoinEnvelope, MessageEnvelope, RefreshEnvelope, RoomEnvelope, type MessagePayload } from './envelopes.js'
import { answerRefusal, forceDisconnect, notifySubject, packetRefusal } from './refusal.js'
import { HANDLED_EVENTS, MAX_EVENT_NAME, type GatewaySocket } from './types.js'
import { isManagedRoom, tenantRoom } from '../protocol/rooms.js'
import type { Ack } from '../protocol/messages.js'
import { jsonShapeProblem } from '../protocol/json-shape.js'
import { packetInfo, type PacketInfo } from '../net/socketio-parser.js'
import { answerFault, guarded } from './guarded.js'

// A packet the decoder did not measure is treated as too large: the gate fails closed.
const UNMEASURED: PacketInfo = { bytes: Number.POSITIVE_INFINITY, binary: false }

// Rooms the gateway puts every socket in (its id, user:<sub>, key:<id>): not counted against SOCKET_MAX_ROOMS.
const MANAGED_ROOMS = 3

type Next = (err?: Error) => void

/**
 * Per-packet middleware, in SPEC §5 order: token expiry, size and envelope,
 * policy, per-socket then per-key limits; an event of the client's own is
 * then delivered through the publish pipeline (`app.messages`), the one
 * `POST /v1/publish` uses. Nothing on the common path waits on PostgreSQL or
 * Redis (a per-key limit, when the key has one, is the only shared count).
 * A refused packet is never passed on: the client is told through its ack,
 * or `gateway:error` without one.
 */
export function createPacketGate (app: FastifyInstance, socket: GatewaySocket) {
  const maxBytes = app.config.socketMaxPayload
  const maxDepth = app.config.maxJsonDepth
  const maxRooms = app.config.socketMaxRooms
  // Nesting deeper than maxDepth needs at least this many characters: a smaller packet is not walked.
  const smallestTooDeep = 2 * (maxDepth + 1)
  const socketRate = app.config.rateLimit.socket
  const namespace = socket.nsp.name
  const packets = app.gatewayMetrics.socketPackets
  const relayed = packets.labels({ namespace, outcome: 'relayed' })

  /**
   * Answers a refused packet and mirrors it to `/error`. Rate-limit refusals
   * (and anything refused past the socket's limit) are mirrored once per
   * window: a flood must not become as much cluster-wide traffic.
   */
  function refuse (event: string, ack: Ack | undefined, err: GatewayError, pastSocketLimit = false): void {
    packets.inc({ namespace, outcome: 'refused' })
    const body = packetRefusal(err)
    // Never more of the client's event name than the longest one accepted.
    const echoed = typeof event === 'string' ? event.slice(0, MAX_EVENT_NAME) : event
    answerRefusal(socket, echoed, ack, body)
    const state = socket.data
    if (pastSocketLimit || err.code === 'RATE_LIMITED') {
      if (state.rateNoticeAt === state.windowStart) return
      state.rateNoticeAt = state.windowStart
    }
    notifySubject(app, socket, err, echoed)
  }

  /**
   * Counts the packet in the socket's window, whatever becomes of it, and says
   * whether it is past RATE_LIMIT_SOCKET. Counting every packet first keeps a
   * flood of invalid packets from escaping the limit; which refusal the client
   * is told still follows the SPEC order (see the middleware below).
   */
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

  /** Token expiry, size and envelope, policy: the checks before the limits, in SPEC order. */
  function check (event: string, payload: unknown, payloads: number, info: PacketInfo): GatewayError | undefined {
    const { principal } = socket.data
    // socket.io-parser lets a number through as an event name; it is no event of ours.
    if (typeof event !== 'string') return gatewayError('VALIDATION_FAILED', 'The event name must be a string')
    if (event.length > MAX_EVENT_NAME) return gatewayError('VALIDATION_FAILED', `Event names are limited to ${MAX_EVENT_NAME} characters`)
    if (info.binary) return gatewayError('VALIDATION_FAILED', 'Packets carry JSON only: binary attachments are refused')
    if (event === 'auth:refresh') return payloads === 1 && RefreshEnvelope.Check(payload) ? undefined : gatewayError('VALIDATION_FAILED', 'auth:refresh takes { token }')
    if (principal.exp !== undefined && principal.exp * 1000 <= Date.now()) return gatewayError('TOKEN_EXPIRED', 'The token expired: send auth:refresh')
    if (info.bytes > maxBytes) return gatewayError('PAYLOAD_TOO_LARGE', `Packets are limited to ${maxBytes} bytes`)
    // One envelope per packet: further arguments would be dropped unseen, so they are refused rather than ignored.
    if (payloads !== 1) return gatewayError('VALIDATION_FAILED', `${event} takes one payload`)
    if (event === 'join') {
      if (!JoinEnvelope.Check(payload)) return gatewayError('VALIDATION_FAILED', 'join takes { room, since? }')
      const { room } = payload
      const refused = app.authorize(principal, 'subscribe', namespace, room)
      if (refused !== undefined) return refused
      if (!socket.rooms.has(tenantRoom(principal.tenant, room)) && socket.rooms.size - MANAGED_ROOMS >= maxRooms) {
        return gatewayError('RATE_LIMITED', `A socket may be in at most ${maxRooms} rooms: leave one first`)
      }
      return undefined
    }
    if (event === 'history') {
      if (!HistoryEnvelope.Check(payload)) return gatewayError('VALIDATION_FAILED', 'history takes { room, limit? }')
      return app.authorize(principal, 'subscribe', namespace, payload.room)
    }
    if (event === 'presence') {
      if (!RoomEnvelope.Check(payload)) return gatewayError('VALIDATION_FAILED', 'presence takes { room }')
      return app.authorize(principal, 'subscribe', namespace, payload.room)
    }
    if (event === 'leave') {
      if (!RoomEnvelope.Check(payload)) return gatewayError('VALIDATION_FAILED', 'leave takes { room }')
      return isManagedRoom(payload.room, socket.id) ? gatewayError('FORBIDDEN', 'That room is managed by the gateway') : undefined
    }
    if (!MessageEnvelope.Check(payload)) return gatewayError('VALIDATION_FAILED', `${event} takes { room, data }`)
    if (info.bytes >= smallestTooDeep) {
      const problem = jsonShapeProblem((payload as MessagePayload).data, maxDepth)
      if (problem === 'depth') return gatewayError('VALIDATION_FAILED', `data may be nested at most ${maxDepth} levels deep`)
      if (problem !== undefined) return gatewayError('VALIDATION_FAILED', 'Packets carry JSON only')
    }
    return app.messages.refusePublish(principal, namespace, (payload as MessagePayload).room, event)
  }

  /** The per-key quota and the delivery (or the route), through the publish pipeline; the client is acked with the message id. */
  function publish (event: string, { room, data }: MessagePayload, ack: Ack | undefined, bytes: number): void {
    const answer = (result: Delivered | GatewayError): void => {
      guarded(app, socket, 'packet', ack, () => {
        if (isGatewayError(result)) return refuse(event, ack, result)
        relayed.inc()
        // A route in request mode answered: its data is the ack's (SPEC §10).
        ack?.(result.routed === undefined ? { ok: true, id: result.id } : { ok: true, id: result.id, data: result.routed.data })
      })
    }
    let result: ReturnType<typeof app.messages.deliver>
    try {
      result = app.messages.deliver(socket.data.principal, { namespace, room, event, data }, { exceptSocketId: socket.id, bytes })
    } catch (err) {
      return answerFault(app, socket, 'packet', ack, err)
    }
    if (result instanceof Promise) result.then(answer, (err: unknown) => { answerFault(app, socket, 'packet', ack, err) })
    else answer(result)
  }

  return (packet: unknown[], next: Next): void => {
    const event = packet[0] as string
    const last = packet[packet.length - 1]
    const ack = typeof last === 'function' ? last as Ack : undefined
    const payloads = packet.length - 1 - (ack === undefined ? 0 : 1)
    const payload = payloads > 0 ? packet[1] : undefined
    const info = packetInfo(packet) ?? UNMEASURED

    const limited = overSocketLimit()
    const refusal = check(event, payload, payloads, info) ?? limited
    if (refusal !== undefined) {
      refuse(event, ack, refusal, limited !== undefined)
      if (limited !== undefined && ++socket.data.windowRefused > socketRate.max) disconnectFlooder(app, socket, limited)
      return
    }
    // join, leave and auth:refresh go on to their handlers; every other event is published here
    // (socket.onAny would run before this middleware, so it cannot carry the relay).
    if (HANDLED_EVENTS.has(event)) return next()
    publish(event, payload as MessagePayload, ack, info.bytes)
  }
}

/** A client that keeps sending past its limit is disconnected, and its address counts toward the anomaly block. */
function disconnectFlooder (app: FastifyInstance, socket: GatewaySocket, err: GatewayError): void {
  if (!socket.connected) return
  app.log.warn({ ip: socket.data.ip, keyId: socket.data.principal.keyId, namespace: socket.nsp.name }, 'socket disconnected for flooding')
  void app.anomaly.recordFailure(socket.data.ip, undefined).catch(() => {})
  forceDisconnect(app, socket, err, 'flood')
}
