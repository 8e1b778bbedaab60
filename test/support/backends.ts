import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { Server as SocketIoServer, type Socket as ServerSocket } from 'socket.io'
import { adminHeaders } from '../helper.js'

type Tap = { teardown: (fn: () => unknown) => void }

/** One call an HTTP backend received: its headers, raw body and parsed event. */
export interface ReceivedCall {
  headers: IncomingHttpHeaders
  body: string
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the event as the gateway sent it, read field by field
  event: any
}

export type HttpAnswer = (call: ReceivedCall, res: ServerResponse) => void | Promise<void>

/** Answers `{ data }` with status 200. */
export const answerJson = (status: number, body: unknown): HttpAnswer => (_call, res) => {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

/** A real HTTP backend (node:http): records every call, answers with `answer` (replaceable). */
export async function httpBackend (t: Tap, answer: HttpAnswer = answerJson(200, { data: null })): Promise<{ url: string, calls: ReceivedCall[], answer: HttpAnswer, close: () => Promise<void>, port: number }> {
  const backend = {
    url: '',
    port: 0,
    calls: [] as ReceivedCall[],
    answer,
    close: async () => { await new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => { resolve() }) }) }
  }
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => { body += chunk })
    req.on('end', () => {
      const call: ReceivedCall = { headers: req.headers, body, event: JSON.parse(body) }
      backend.calls.push(call)
      void Promise.resolve(backend.answer(call, res)).catch(() => { res.destroy() })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  backend.port = (server.address() as AddressInfo).port
  backend.url = `http://127.0.0.1:${backend.port}/spark`
  t.teardown(async () => { await backend.close().catch(() => {}) })
  return backend
}

/** A real Socket.IO backend on namespace `/spark`: answers each `spark:event` with `answer`. */
export async function socketIoBackend (
  t: Tap, answer: (event: unknown) => unknown = () => ({ data: null }), options: { refuseFirst?: number } = {}
): Promise<{ url: string, io: SocketIoServer, events: unknown[], handshakes: unknown[], gateways: () => ServerSocket[], close: () => Promise<void> }> {
  const server = createServer()
  const io = new SocketIoServer(server, { transports: ['websocket'] })
  const events: unknown[] = []
  const handshakes: unknown[] = []
  // The first handshakes refused by middleware, as a backend that does not know the secret yet would.
  let refuseLeft = options.refuseFirst ?? 0
  io.of('/spark').use((_socket, next) => { next(refuseLeft-- > 0 ? new Error('bad signature') : undefined) })
  io.of('/spark').on('connection', (socket) => {
    handshakes.push(socket.handshake.auth)
    socket.on('spark:event', (event: unknown, ack: (answer: unknown) => void) => {
      events.push(event)
      ack(answer(event))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const close = async (): Promise<void> => { await new Promise<void>((resolve) => { void io.close(() => { resolve() }) }) }
  t.teardown(close)
  return { url, io, events, handshakes, gateways: () => [...io.of('/spark').sockets.values()], close }
}

/** POST /v1/routes; the created route with its secret. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the response's JSON, read field by field by the test
export async function createRoute (app: FastifyInstance, body: Record<string, unknown>): Promise<any> {
  const res = await app.inject({ method: 'POST', url: '/v1/routes', headers: adminHeaders, payload: { name: `route-${Math.random().toString(36).slice(2, 8)}`, namespace: '/chat', mode: 'request', ...body } })
  if (res.statusCode !== 201) throw new Error(`route creation failed: ${res.statusCode} ${res.body}`)
  return res.json()
}
