// The routing scenario's backend service, run as its own (pinned) process by
// bench/lib/processes.ts (kind `backend`). One node:http server carries:
//   POST (any path)  a route's HTTP upstream: answers { data } for the event
//   /spark           a route's Socket.IO upstream: acks `spark:event` with { data }
//   /chat            the direct baseline: clients connect here themselves and
//                    every event is acked { ok: true, id, data } as the gateway
//                    acks a routed one (join acked { ok: true })
// Signatures are not verified per call (a backend would; it is the backend's
// CPU, not the gateway's): the scenario checks one call's signature with
// standardwebhooks when it sets up, and `lastCall` hands it that call.
import { randomUUID } from 'node:crypto'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { Server as SocketIOServer } from 'socket.io'
import { serveControls } from './controls.js'

type Ack = ((answer: unknown) => void) | undefined

/** What the backend answers for an event's data: the order accepted, its `seq` echoed. */
function answerFor (data: unknown): { status: string, seq: unknown } {
  return { status: 'accepted', seq: (data as { seq?: unknown } | null)?.seq ?? null }
}

let lastCall: { headers: IncomingHttpHeaders, body: string } | undefined

const http = createServer((req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (chunk: Buffer) => { chunks.push(chunk) })
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8')
    lastCall = { headers: req.headers, body }
    const event = JSON.parse(body) as { data?: unknown }
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ data: answerFor(event.data) }))
  })
})
// The gateway's keep-alive pool stays connected across the scenario's pauses between windows.
http.keepAliveTimeout = 120_000

const io = new SocketIOServer(http, { serveClient: false, transports: ['websocket'] })
io.of('/spark').on('connection', (socket) => {
  socket.on('spark:event', (event: { data?: unknown }, ack: Ack) => { ack?.({ data: answerFor(event?.data) }) })
})
io.of('/chat').on('connection', (socket) => {
  socket.on('join', (payload: { room?: unknown }, ack: Ack) => {
    if (typeof payload?.room === 'string') void socket.join(payload.room)
    ack?.({ ok: true })
  })
  socket.onAny((event: string, payload: { data?: unknown }, ack: Ack) => {
    if (event !== 'join') ack?.({ ok: true, id: randomUUID(), data: answerFor(payload?.data) })
  })
})

http.listen(0, '127.0.0.1', () => {
  serveControls({
    kind: 'backend',
    http,
    io,
    close: async () => { await new Promise<void>((resolve) => { http.closeAllConnections(); void io.close(() => { resolve() }) }) },
    extra: {
      /** Gateways connected to /spark (a route's Socket.IO upstream is up once this is 1). */
      upstreamSockets: () => io.of('/spark').sockets.size,
      lastCall: () => lastCall
    }
  })
})
