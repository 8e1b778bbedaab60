import type { KeyObject } from 'node:crypto'
import { io, type Socket } from 'socket.io-client'
import { readAnswer, type CallResult, type UpstreamTransport } from './transport.js'
import { signatures } from './signing.js'
import type { RouteEvent } from './types.js'

const RECONNECT_FIRST_MS = 500
const RECONNECT_MAX_MS = 5000
const TIMEOUT: CallResult = { kind: 'timeout' }
const UNREACHABLE: CallResult = { kind: 'unreachable' }

/** What a backend emits as `spark:publish` (SPEC §10), not yet validated. */
export type BackendPublishHandler = (message: unknown, ack: ((answer: unknown) => void) | undefined) => void

export interface SocketIoTransportOptions {
  url: string
  namespace: string
  maxDepth: number
  /** This gateway instance, as the handshake names it. */
  gateway: string
  signingKeys: () => readonly KeyObject[]
  onPublish: BackendPublishHandler
  onStateChange: (connected: boolean) => void
}

/**
 * A Socket.IO upstream: one multiplexed websocket connection per upstream per
 * instance. Its handshake `auth` is `{ gateway, timestamp, signature }`,
 * signed like an HTTP call over `gateway.timestamp` (SPEC §10) and renewed on
 * every reconnect; each event is emitted as `spark:event` with an ack. While
 * the connection is down, calls are refused at once (never buffered).
 */
export function createSocketIoTransport (options: SocketIoTransportOptions): UpstreamTransport {
  const url = new URL(options.url)
  if (url.protocol === 'ws:') url.protocol = 'http:'
  if (url.protocol === 'wss:') url.protocol = 'https:'
  const socket: Socket = io(url.origin + options.namespace, {
    // The URL's path, when it has one, is the server's Engine.IO path.
    path: url.pathname === '/' ? '/socket.io' : url.pathname,
    transports: ['websocket'],
    forceNew: true,
    reconnectionDelay: 250,
    reconnectionDelayMax: 5000,
    randomizationFactor: 0.5,
    auth: (callback) => {
      const timestamp = Math.floor(Date.now() / 1000)
      callback({ gateway: options.gateway, timestamp, signature: signatures(options.signingKeys(), `${options.gateway}.${timestamp}`) })
    }
  })
  // Socket.IO reconnects by itself after a lost connection, but not after its middleware refused the handshake
  // (a secret the backend does not know yet) nor after the server closed the socket: then the gateway retries.
  let closed = false
  let retry: NodeJS.Timeout | undefined
  let refusedInARow = 0
  const retryLater = (): void => {
    if (closed || socket.active || retry !== undefined) return
    const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_FIRST_MS * 2 ** refusedInARow++) * (0.5 + Math.random())
    retry = setTimeout(() => { retry = undefined; if (!closed) socket.connect() }, delay)
    retry.unref()
  }
  socket.on('connect', () => { refusedInARow = 0; options.onStateChange(true) })
  socket.on('connect_error', retryLater)
  socket.on('disconnect', () => {
    options.onStateChange(false)
    retryLater()
  })
  socket.on('spark:publish', (message: unknown, ack?: (answer: unknown) => void) => {
    options.onPublish(message, typeof ack === 'function' ? ack : undefined)
  })

  return {
    get ready () { return socket.connected },
    async call (event: RouteEvent, timeoutMs) {
      if (!socket.connected) return UNREACHABLE
      return await new Promise<CallResult>((resolve) => {
        socket.timeout(timeoutMs).emit('spark:event', event, (err: Error | null, answer: unknown) => {
          resolve(err !== null ? TIMEOUT : readAnswer(answer, 'either', options.maxDepth))
        })
      })
    },
    async close () {
      closed = true
      clearTimeout(retry)
      socket.disconnect()
    }
  }
}
