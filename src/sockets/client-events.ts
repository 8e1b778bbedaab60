import { assertNamespaceAllowed } from '../auth/principal.js'
import type { FastifyInstance } from 'fastify'
import { gatewayError, isGatewayError, type GatewayError } from '../errors.js'
import { keyRoom, tenantRoom, userRoom } from '../protocol/rooms.js'
import type { HistoryPayload, JoinPayload, RefreshPayload, RoomPayload } from './envelopes.js'
import { joinSince, type HoldRoom } from './room-recovery.js'
import { answerRefusal, packetRefusal } from './refusal.js'
import { createPacketGate } from './packet-gate.js'
import type { Ack } from '../protocol/messages.js'
import type { ExpiryWatch } from './expiry-watch.js'
import type { GatewaySocket } from './types.js'
import { answerFault, FAULTED, guarded } from './guarded.js'
import { askRoute, tellDisconnect, tellLeave } from './route-hooks.js'

/**
 * The protocol of SPEC §5 on a socket that passed the connection gate. The
 * packet gate validates every payload before these handlers see it.
 */
export function attachProtocol (app: FastifyInstance, socket: GatewaySocket, expiry: ExpiryWatch, holdRoom: HoldRoom): void {
  const { principal } = socket.data

  socket.use(createPacketGate(app, socket))
  void socket.join([tenantRoom(principal.tenant, userRoom(principal.sub)), keyRoom(principal.keyId)])
  expiry.watch(socket)

  // Rooms whose join awaits a backend's word: a leave meanwhile cancels the join (made only when the socket needs one).
  let awaitingJoin: Set<string> | undefined

  socket.on('join', (payload: JoinPayload, ack: Ack | undefined) => {
    const { room, since } = payload
    const joined = tenantRoom(principal.tenant, room)
    const finish = (refused: GatewayError | undefined, asked: boolean): void => {
      guarded(app, socket, 'join', ack, () => {
        const cancelled = asked && awaitingJoin?.delete(room) !== true
        if (refused !== undefined) return answerRefusal(socket, 'join', ack, packetRefusal(refused))
        // In the room already (its own user room, a repeated join): it got every message live, nothing to replay.
        if (since !== undefined && socket.rooms.has(joined)) return ack?.({ ok: true, recovered: true, missed: 0 })
        if (since !== undefined && !cancelled && socket.connected) {
          // SPEC §12: the missed messages, then the ack that counts them.
          joinSince(app, socket, holdRoom, joined, since).then(
            (recovered) => { guarded(app, socket, 'join', ack, () => { ack?.({ ok: true, ...recovered }) }) },
            (err: unknown) => { answerFault(app, socket, 'join', ack, err) })
          return
        }
        // The socket's own user room is joined already (the gate checked the policy allows it).
        if (!cancelled && !socket.rooms.has(joined) && socket.connected) void socket.join(joined)
        ack?.({ ok: true })
      })
    }
    // A room the socket is in needs no backend's word; a new one may (a route taking `$join`, SPEC §10).
    const decision = socket.rooms.has(joined) ? undefined : guarded(app, socket, 'join', ack, () => askRoute(app, socket, socket.data.principal, '$join', room))
    if (decision === FAULTED) return
    if (decision === undefined) return finish(undefined, false)
    ;(awaitingJoin ??= new Set()).add(room)
    decision.then((refused) => { finish(refused, true) }, (err: unknown) => { answerFault(app, socket, 'join', ack, err) })
  })

  socket.on('leave', (payload: RoomPayload, ack: Ack | undefined) => {
    awaitingJoin?.delete(payload.room)
    guarded(app, socket, 'leave', ack, () => {
      const joined = tenantRoom(socket.data.principal.tenant, payload.room)
      if (socket.rooms.has(joined)) {
        void socket.leave(joined)
        tellLeave(app, socket, payload.room)
      }
      ack?.({ ok: true })
    })
  })

  socket.on('history', (payload: HistoryPayload, ack: Ack | undefined) => {
    const namespace = socket.nsp.name
    const limit = Math.min(payload.limit ?? app.history.size, app.history.size)
    answerRead(app, socket, 'history', ack, async () => {
      // A namespace without history keeps no message: none to give.
      if (!app.history.keeps(namespace)) return { messages: [] }
      const kept = await app.history.recent(namespace, tenantRoom(socket.data.principal.tenant, payload.room), limit)
      return { messages: kept.map(({ event, message }) => ({ event, ...message })) }
    })
  })

  socket.on('presence', (payload: RoomPayload, ack: Ack | undefined) => {
    const namespace = socket.nsp.name
    answerRead(app, socket, 'presence', ack, async () => {
      if (!app.presence.tracks(namespace)) throw gatewayError('VALIDATION_FAILED', `${namespace} keeps no presence (PRESENCE_NAMESPACES)`)
      return { ...await app.presence.members(namespace, tenantRoom(socket.data.principal.tenant, payload.room)) }
    })
  })

  socket.on('disconnecting', (reason: string) => {
    guarded(app, socket, 'disconnect', undefined, () => { tellDisconnect(app, socket, reason) })
  })

  socket.on('auth:refresh', (payload: RefreshPayload, ack: Ack | undefined) => {
    void refresh(app, socket, payload.token, () => { expiry.watch(socket) }).then(
      (expiresAt) => { guarded(app, socket, 'auth:refresh', ack, () => { ack?.({ ok: true, expiresAt }) }) },
      (err: unknown) => {
        guarded(app, socket, 'auth:refresh', ack, () => { answerRefusal(socket, 'auth:refresh', ack, packetRefusal(isGatewayError(err) ? err : gatewayError('UNAVAILABLE'))) })
      })
  })

  socket.on('disconnect', () => { expiry.forget(socket) })
}

/**
 * Answers a read of shared state (`history`, `presence`): `{ ok: true, ...fields }`,
 * the refusal it threw, or UNAVAILABLE when its store failed (logged).
 */
function answerRead (app: FastifyInstance, socket: GatewaySocket, event: 'history' | 'presence', ack: Ack | undefined, read: () => Promise<Record<string, unknown>>): void {
  read().then(
    (fields) => { guarded(app, socket, event, ack, () => { ack?.({ ok: true, ...fields }) }) },
    (err: unknown) => {
      if (!isGatewayError(err)) app.log.warn({ err, namespace: socket.nsp.name }, `${event} unavailable`)
      const refusal = isGatewayError(err) ? err : gatewayError('UNAVAILABLE', `The gateway could not read the room's ${event}`)
      guarded(app, socket, event, ack, () => { answerRefusal(socket, event, ack, packetRefusal(refusal)) })
    })
}

/** Swaps the token of a live connection: same key and subject, checked like a new connection. */
async function refresh (app: FastifyInstance, socket: GatewaySocket, token: string, rescheduleExpiry: () => void): Promise<string> {
  const current = socket.data.principal
  const namespace = socket.nsp.name
  const next = await app.admit({ kind: 'token', value: token }, {
    ip: socket.data.ip,
    transport: 'socket',
    namespace,
    userAgent: socket.handshake.headers['user-agent'] ?? null,
    authorize: (p) => {
      if (p.keyId !== current.keyId || p.sub !== current.sub) throw gatewayError('FORBIDDEN', 'auth:refresh needs a token of the same key and subject')
      assertNamespaceAllowed(p, namespace)
    }
  })
  socket.data.principal = next
  rescheduleExpiry()
  return new Date((next.exp ?? 0) * 1000).toISOString()
}
