import type { IncomingMessage, ServerResponse } from 'node:http'
import type { FastifyInstance } from 'fastify'
import cors from 'cors'
import fp from 'fastify-plugin'
import fastifySocketIO from 'fastify-socket.io'
import { RedisAdapter, type createAdapter } from '@socket.io/redis-adapter'
import { NAMESPACES } from '../protocol/namespaces.js'
import { gatewayParser } from '../net/socketio-parser.js'
import type { Namespace, Server, Socket } from 'socket.io'
import type { Principal } from '../auth/principal.js'
import { redisOptions } from '../stores/redis-store.js'

/**
 * What the gateway keeps on each socket (`socket.data`). Plain data only: the
 * Redis adapter serialises it as JSON for `fetchSockets` on other instances,
 * so timers or functions here would break cluster-wide revocation.
 */
export interface SocketState {
  principal: Principal
  ip: string
  /** Per-socket packet window: the limit is local to one connection, so it is counted here, exactly. */
  windowStart: number
  windowCount: number
  windowRefused: number
  /** The window (its start) in which `/error` was last told of a rate limit: once per window is enough. */
  rateNoticeAt: number
  /** Why the gateway closed the socket, when it did (a route's `$disconnect` says so, SPEC §10). */
  closeReason?: DisconnectReason
}

/** Why a socket went, as a route's `$disconnect` tells its backend. */
export type DisconnectReason = 'client' | 'transport' | 'timeout' | 'revoked' | 'expired' | 'flood' | 'policy' | 'shutdown'

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the protocol's events are open-ended (any event E is relayed)
type AnyEvents = Record<string, (...args: any[]) => void>
export type GatewayServer = Server<AnyEvents, AnyEvents, AnyEvents, SocketState>
export type GatewayNamespace = Namespace<AnyEvents, AnyEvents, AnyEvents, SocketState>
export type GatewaySocket = Socket<AnyEvents, AnyEvents, AnyEvents, SocketState>

declare module 'fastify' {
  interface FastifyInstance {
    io: GatewayServer
  }
}

// Instances that do not answer a cluster-wide request within this are reported, not waited for.
const CLUSTER_REQUEST_TIMEOUT_MS = 1000
const NAMESPACE_CONNECT_TIMEOUT_MS = 5000
// Socket.IO's own default ceiling for one transport message.
const TRANSPORT_MAX_BUFFER = 1_000_000

type AdapterOptions = ConstructorParameters<typeof RedisAdapter>[3]

/**
 * The Redis adapter, with what it does for other instances (answering their
 * requests, delivering their broadcasts) unable to stop this one: an error
 * there is reported as a fault and that one request goes unanswered (the
 * asking instance reports it as incomplete), instead of an unhandled
 * rejection or an exception in a Redis event listener.
 */
function guardedRedisAdapter (app: FastifyInstance, pub: unknown, sub: unknown, options: AdapterOptions) {
  const report = (err: unknown): void => { app.reportFault(err, { where: 'adapter' }) }
  // The two handlers are private in the adapter's types; the constructor binds them, so overriding is enough.
  const Base = RedisAdapter as unknown as new (...args: ConstructorParameters<typeof RedisAdapter>) => Omit<RedisAdapter, never> & {
    onrequest (channel: unknown, msg: unknown): Promise<void>
    onmessage (pattern: unknown, channel: unknown, msg: unknown): unknown
  }
  class GuardedRedisAdapter extends Base {
    override async onrequest (channel: unknown, msg: unknown): Promise<void> {
      try {
        await super.onrequest(channel, msg)
      } catch (err) { report(err) }
    }

    override onmessage (pattern: unknown, channel: unknown, msg: unknown): void {
      try {
        const pending = super.onmessage(pattern, channel, msg)
        if (pending instanceof Promise) pending.catch(report)
      } catch (err) { report(err) }
    }
  }
  // Socket.IO constructs its adapter with `new` and the namespace alone.
  class InstanceAdapter extends GuardedRedisAdapter {
    constructor (nsp: ConstructorParameters<typeof RedisAdapter>[0]) { super(nsp, pub, sub, options) }
  }
  return InstanceAdapter as unknown as ReturnType<typeof createAdapter>
}

export default fp(async (app) => {
  const { config, redisStore } = app
  let adapter
  if (redisStore !== undefined) {
    const url = config.redisUrl as string
    const { Redis } = await import('ioredis')
    // The adapter's channels are not keys, so ioredis' keyPrefix does not apply: the prefix goes in its `key` option.
    const { keyPrefix: _unused, ...options } = redisOptions(config.redisKeyPrefix)
    const pub = new Redis(url, options)
    const sub = new Redis(url, { ...options, enableOfflineQueue: true, commandTimeout: undefined })
    pub.on('error', () => {})
    sub.on('error', () => {})
    await Promise.all([pub.connect(), sub.connect()])
    // The adapter does not catch a failed publish: while Redis is down that would be an unhandled
    // rejection per broadcast. Local delivery goes on; the loss to other instances is logged.
    const publish = pub.publish.bind(pub)
    pub.publish = (async (...args: Parameters<typeof publish>) => await publish(...args).catch((err: Error) => {
      app.log.warn({ err: err.message }, 'Socket.IO adapter publish failed; delivered on this instance only')
      return 0
    })) as typeof pub.publish
    // Likewise its unsubscribes at close, which fail when Redis is already gone.
    for (const method of ['unsubscribe', 'punsubscribe', 'sunsubscribe'] as const) {
      const original = sub[method].bind(sub) as (...args: unknown[]) => Promise<unknown>
      ;(sub as unknown as Record<string, unknown>)[method] = async (...args: unknown[]) => await original(...args).catch(() => 0)
    }
    adapter = guardedRedisAdapter(app, pub, sub, { key: `${config.redisKeyPrefix}socket.io`, requestsTimeout: CLUSTER_REQUEST_TIMEOUT_MS })
    app.addHook('onClose', async () => { await Promise.allSettled([pub.quit(), sub.quit()]) })
  }

  const allowedOrigins = new Set(config.corsOrigins)
  await app.register(fastifySocketIO.default, {
    path: '/socket.io',
    serveClient: false,
    // SOCKET_MAX_PAYLOAD is enforced per packet by the packet gate, which answers PAYLOAD_TOO_LARGE and keeps the
    // connection; this is only the transport's hard ceiling (a polling body carries several packets), past which it closes.
    maxHttpBufferSize: Math.max(4 * config.socketMaxPayload, TRANSPORT_MAX_BUFFER),
    // Measures each packet as it is decoded and never reconstructs binary attachments (see sockets/parser.ts).
    parser: gatewayParser(config.socketMaxPayload),
    // Off by default: it keeps every broadcast in memory for its window, one instance only (the Redis adapter has no
    // sessions) and dies with it; `join` with `since` recovers from the room's history on any instance (SPEC §12).
    ...(config.socketRecoverySeconds > 0 ? { connectionStateRecovery: { maxDisconnectionDuration: config.socketRecoverySeconds * 1000, skipMiddlewares: false } } : {}),
    // A connection that has not connected a namespace by then is closed (SPEC §7); Socket.IO's default is 45 s.
    connectTimeout: NAMESPACE_CONNECT_TIMEOUT_MS,
    // On close, every socket hears `shutdown` before it is disconnected (SPEC §7).
    // eslint-disable-next-line @typescript-eslint/no-unsafe-function-type -- the plugin's own type for this callback
    preClose: (done: Function) => {
      const notice = { reason: 'server shutting down', at: new Date().toISOString() }
      // Every namespace is told (and marked) before any is closed: closing one closes its whole connection,
      // and with it the sockets of the other namespaces that connection carries.
      for (const name of NAMESPACES) {
        for (const socket of app.io.of(name).sockets.values()) (socket as GatewaySocket).data.closeReason ??= 'shutdown'
        app.io.of(name).local.emit('shutdown', notice)
      }
      for (const name of NAMESPACES) app.io.of(name).local.disconnectSockets(true)
      done()
    },
    ...(adapter !== undefined ? { adapter } : {})
  })

  // The Origin check itself is in the connection middleware, where the client can be told ORIGIN_NOT_ALLOWED.
  // Polling responses are readable from any origin (never with credentials, except for CORS_ORIGINS), so
  // that a browser on a foreign page is told ORIGIN_NOT_ALLOWED by the gate instead of a bare transport error.
  // Nothing is exposed by it: authentication is a token in the handshake, never an ambient cookie.
  // This is engine.io's own `cors` option, applied to polling requests only: CORS has no say over a
  // websocket upgrade, and running it there cost every handshake a few percent.
  const corsHeaders = cors((req, callback) => { callback(null, { origin: true, credentials: allowedOrigins.has(req.headers.origin ?? '') }) })
  app.io.engine.use((req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => {
    if (req.headers.upgrade !== undefined) next()
    else corsHeaders(req, res, next)
  })
}, { name: 'io', fastify: '5.x', dependencies: ['config', 'store', 'faults'] })
