import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { gatewayError, isGatewayError } from '../errors.js'
import { keyRoom } from '../plugins/io.js'
import type { MessagePayload, RefreshPayload, RoomPayload } from './envelopes.js'
import { forceDisconnect, packetRefusal } from './refusal.js'
import { createPacketGate } from './packet-gate.js'
import type { GatewaySocket, RelayedMessage } from './types.js'

/** UTF-8 size of a frame, computed only when its length alone cannot settle the comparison with `limit`. */
function utf8Length (text: string, limit: number): number {
  if (text.length > limit || text.length * 3 <= limit) return text.length
  return Buffer.byteLength(text, 'utf8')
}

type Ack = ((response: unknown) => void) | undefined

const EXPIRING_NOTICE_MS = 60_000
const EXPIRED_GRACE_MS = 30_000

/**
 * `auth:expiring` 60 s before exp; at exp `auth:expired`; 30 s later, without
 * a refresh, disconnect. The timers live here, not in `socket.data`, which
 * must stay plain data (the Redis adapter serialises it).
 */
function createExpiryClock (app: FastifyInstance, socket: GatewaySocket): { schedule: () => void, clear: () => void } {
  let timers: NodeJS.Timeout[] = []
  const clear = (): void => {
    for (const timer of timers) clearTimeout(timer)
    timers = []
  }
  const schedule = (): void => {
    clear()
    socket.data.expired = false
    const exp = socket.data.principal.exp
    if (exp === undefined) return
    const expiresAt = new Date(exp * 1000).toISOString()
    const untilExpiry = exp * 1000 - Date.now()
    timers.push(
      setTimeout(() => { socket.emit('auth:expiring', { expiresAt }) }, Math.max(0, untilExpiry - EXPIRING_NOTICE_MS)),
      setTimeout(() => {
        socket.data.expired = true
        socket.emit('auth:expired', { expiresAt })
        timers.push(setTimeout(() => { forceDisconnect(app, socket, gatewayError('TOKEN_EXPIRED', 'The token expired and was not refreshed')) }, EXPIRED_GRACE_MS))
      }, Math.max(0, untilExpiry))
    )
  }
  return { schedule, clear }
}

/** Builds the relayed message once; every member of the room receives the same object. */
export function relayedMessage (room: string, sub: string, data: unknown): RelayedMessage {
  return { id: randomUUID(), room, from: { sub }, data, ts: Date.now() }
}

/**
 * The protocol of SPEC §5 on a socket that passed the connection gate. The
 * packet gate validates every payload before these handlers see it.
 */
export function attachProtocol (app: FastifyInstance, socket: GatewaySocket): void {
  const { principal } = socket.data
  const namespace = socket.nsp.name
  const relayed = app.gatewayMetrics.socketPackets.labels({ namespace, outcome: 'relayed' })

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
  const expiry = createExpiryClock(app, socket)
  expiry.schedule()

  socket.on('join', (payload: RoomPayload, ack: Ack) => {
    void socket.join(payload.room)
    ack?.({ ok: true })
  })

  socket.on('leave', (payload: RoomPayload, ack: Ack) => {
    void socket.leave(payload.room)
    ack?.({ ok: true })
  })

  socket.on('auth:refresh', (payload: RefreshPayload, ack: Ack) => {
    void refresh(app, socket, payload.token, expiry.schedule).then(
      (expiresAt) => { ack?.({ ok: true, expiresAt }) },
      (err: unknown) => {
        const refusal = packetRefusal(isGatewayError(err) ? err : gatewayError('UNAVAILABLE'))
        if (ack !== undefined) ack({ ok: false, error: refusal })
        else socket.emit('gateway:error', { ...refusal, event: 'auth:refresh' })
      })
  })

  socket.on('disconnect', () => {
    expiry.clear()
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
      if (p.ns !== undefined && !p.ns.includes(namespace)) throw gatewayError('FORBIDDEN', `The token is not valid for ${namespace}`)
    }
  })
  const key = await app.keys.findForAuth(next.keyId)
  socket.data.principal = next
  socket.data.keyRateLimit = key?.rateLimit ?? null
  rescheduleExpiry()
  return new Date((next.exp ?? 0) * 1000).toISOString()
}
