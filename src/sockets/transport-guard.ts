import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket as NetSocket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { errorBody, gatewayError, isGatewayError, type GatewayError } from '../errors.js'
import { clientBucket } from '../net/ip.js'

type Next = (err?: unknown) => void

/** What an Engine.IO connection is known by here: its request, and a close event. */
interface EngineSocket { request: IncomingMessage, once: (event: 'close', listener: () => void) => unknown }

/**
 * SPEC §7 transport limits, before any credential: at most
 * MAX_CONNECTIONS_PER_IP open Engine.IO connections per client address on
 * this instance, and at most RATE_LIMIT_TRANSPORT handshakes per address
 * (counted in the shared store, so across the cluster). A refused handshake
 * gets HTTP 429 with Retry-After before any Socket.IO packet. Requests of an
 * existing session (polling, upgrades) are not handshakes. With the store
 * away the handshake goes on to the connection gate, which fails closed.
 */
export function guardTransport (app: FastifyInstance, clientIp: (req: IncomingMessage) => string): void {
  const { maxConnectionsPerIp } = app.config
  const handshakeRate = app.config.rateLimit.transport
  const open = new Map<string, number>()
  const engine = app.io.engine

  engine.on('connection', (socket: EngineSocket) => {
    const bucket = clientBucket(clientIp(socket.request))
    open.set(bucket, (open.get(bucket) ?? 0) + 1)
    socket.once('close', () => {
      const left = (open.get(bucket) ?? 1) - 1
      if (left === 0) open.delete(bucket)
      else open.set(bucket, left)
    })
  })

  engine.use((req: IncomingMessage, res: ServerResponse, next: Next) => {
    if (isSessionRequest(req.url ?? '')) return next()
    const ip = clientIp(req)
    const bucket = clientBucket(ip)
    const admitted = (open.get(bucket) ?? 0) >= maxConnectionsPerIp
      ? Promise.reject(gatewayError('RATE_LIMITED', `At most ${maxConnectionsPerIp} open connections per client address`, 1))
      : app.hitRateLimit(`transport:${bucket}`, handshakeRate, 'transport')
    admitted.then(() => { next() }, (err: unknown) => {
      // The store is away: the connection gate, which needs it too, refuses UNAVAILABLE where the client is told why.
      if (!isGatewayError(err) || err.code !== 'RATE_LIMITED') return next()
      app.audit.record({ ip, transport: 'socket', namespace: null, keyId: null, outcome: 'refused', reason: err.code, userAgent: req.headers['user-agent'] ?? null })
      refuseHandshake(req, res, err)
    })
  })
}

/** A request of an existing Engine.IO session (it names its `sid`): checked without parsing the URL, every polling request passes here. */
function isSessionRequest (url: string): boolean {
  return url.includes('?sid=') || url.includes('&sid=')
}

/**
 * Answers a refused handshake with the §4 error body and never passes it on.
 * An upgrade has no HTTP response object: the status line goes to the socket.
 */
function refuseHandshake (req: IncomingMessage, res: ServerResponse, refusal: GatewayError): void {
  const body = JSON.stringify(errorBody(refusal))
  const headers: Record<string, string> = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), connection: 'close' }
  if (refusal.retryAfter !== undefined) headers['retry-after'] = String(refusal.retryAfter)
  if (req.headers.upgrade !== undefined) {
    const socket = req.socket as NetSocket
    socket.on('error', () => {})
    if (socket.writable) {
      const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('')
      socket.write(`HTTP/1.1 ${refusal.statusCode} ${refusal.statusCode === 429 ? 'Too Many Requests' : 'Service Unavailable'}\r\n${lines}\r\n${body}`)
    }
    socket.destroy()
    return
  }
  res.writeHead(refusal.statusCode, headers)
  res.end(body)
}
