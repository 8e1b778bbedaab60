// The gateway's /chat relay semantics without any of its checks, for the servers
// it is compared with (the bare baseline and the classic reference stack):
// join and leave a room, relay { room, data } to it (sender excluded), ack { ok, id }.
import { randomUUID } from 'node:crypto'
import type { Namespace, Socket } from 'socket.io'

type Ack = ((response: unknown) => void) | undefined

/** Serves the relay on `namespace`; `subOf` names the sender in relayed messages. */
export function serveBareRelay (namespace: Namespace, subOf: (socket: Socket) => string): void {
  namespace.on('connection', (socket) => {
    const sub = subOf(socket)
    socket.on('join', (payload: { room?: unknown }, ack: Ack) => {
      if (typeof payload?.room === 'string') void socket.join(payload.room)
      ack?.({ ok: true })
    })
    socket.on('leave', (payload: { room?: unknown }, ack: Ack) => {
      if (typeof payload?.room === 'string') void socket.leave(payload.room)
      ack?.({ ok: true })
    })
    socket.onAny((event: string, payload: { room?: unknown, data?: unknown }, ack: Ack) => {
      if (event === 'join' || event === 'leave' || typeof payload?.room !== 'string') return
      const message = { id: randomUUID(), room: payload.room, from: { sub }, data: payload.data, ts: Date.now() }
      socket.to(payload.room).emit(event, message)
      ack?.({ ok: true, id: message.id })
    })
  })
}
