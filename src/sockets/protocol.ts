import { randomUUID } from 'node:crypto'
import { assertNamespaceAllowed } from '../auth/principal.js'
import type { FastifyInstance } from 'fastify'
import { gatewayError, isGatewayError } from '../errors.js'
import { keyRoom } from '../plugins/io.js'
import type { RefreshPayload, RoomPayload } from './envelopes.js'
import { packetRefusal } from './refusal.js'
import { createPacketGate } from './packet-gate.js'
import type { Counter } from 'prom-client'
import type { ExpiryWatch } from './expiry-watch.js'
import type { GatewaySocket, RelayedMessage } from './types.js'

/** UTF-8 size of a frame, computed only when its length alone cannot settle the comparison with `limit`. */
function utf8Length (text: string, limit: number): number {
  if (text.length > limit || text.length * 3 <= limit) return text.length
  return Buffer.byteLength(text, 'utf8')
}

type Ack = ((response: unknown) => void) | undefined

/** Builds the relayed message once; every member of the room receives the same object. */
export function relayedMessage (room: string, sub: string, data: unknown): RelayedMessage {
  return { id: randomUUID(), room, from: { sub }, data, ts: Date.now() }
}

/**
 * The protocol of SPEC §5 on a socket that passed the connection gate. The
 * packet gate validates every payload before these handlers see it.
 */
export function attachProtocol (app: FastifyInstance, socket: GatewaySocket, expiry: ExpiryWatch, relayed: Counter.Internal): void {
  const { principal } = socket.data

  // The packet's size, read from its engine frames before it reaches the gate (SOCKET_MAX_PAYLOAD is checked there).
  // A Socket.IO packet is one text frame, then one binary frame per attachment: a text frame starts a new count.
  const countFrame = (frame: { type: string, data?: unknown }): void => {
    if (frame.type !== 'message') return
    const { data } = frame
    if (typeof data === 'string') socket.data.packetBytes = utf8Length(data, app.config.socketMaxPayload)
    else socket.data.packetBytes += (data as ArrayBufferLike | ArrayBufferView | undefined)?.byteLength ?? 0
  }
  socket.conn.on('packet', countFrame)

  socket.use(createPacketGate(app, socket, (event, payload, ack) => {
    const message = relayedMessage(payload.room, socket.data.principal.sub, payload.data)
    socket.to(payload.room).emit(event, message)
    relayed.inc()
    ack?.({ ok: true, id: message.id })
  }))
  void socket.join([`user:${principal.sub}`, keyRoom(principal.keyId)])
  expiry.watch(socket)

  socket.on('join', (payload: RoomPayload, ack: Ack) => {
    void socket.join(payload.room)
    ack?.({ ok: true })
  })

  socket.on('leave', (payload: RoomPayload, ack: Ack) => {
    void socket.leave(payload.room)
    ack?.({ ok: true })
  })

  socket.on('auth:refresh', (payload: RefreshPayload, ack: Ack) => {
    void refresh(app, socket, payload.token, () => { expiry.watch(socket) }).then(
      (expiresAt) => { ack?.({ ok: true, expiresAt }) },
      (err: unknown) => {
        const refusal = packetRefusal(isGatewayError(err) ? err : gatewayError('UNAVAILABLE'))
        if (ack !== undefined) ack({ ok: false, error: refusal })
        else socket.emit('gateway:error', { ...refusal, event: 'auth:refresh' })
      })
  })

  socket.on('disconnect', () => {
    expiry.forget(socket)
    // The connection may outlive this namespace's socket (multiplexing): stop counting its frames.
    socket.conn.off('packet', countFrame)
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
