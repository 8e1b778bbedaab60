// A server under test, run as its own (pinned) process by bench/lib/processes.ts:
//   baseline        bare Fastify + fastify-socket.io with the gateway's Socket.IO
//                   options, /chat relaying { room, data } as the gateway does, no auth
//   baseline-plain  the same with Socket.IO's defaults (no connection-state recovery)
//   gateway         build(parseConfig(...)) with a policy, a key and minted tokens
// It answers the orchestrator over IPC (never through the gateway's own API):
// CPU and event-loop use over a window, memory after a forced gc, token minting.
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { writeHeapSnapshot } from 'node:v8'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifySocketIO from 'fastify-socket.io'
import type { Server as SocketIOServer } from 'socket.io'
import { serve } from './rpc.js'
import { runQueueWaitUs } from './sched.js'

export type ServerKind = 'baseline' | 'baseline-plain' | 'gateway'

export const ADMIN_KEY = 'bench-admin-key-0123456789abcdefghijklmnopqrstuvwxyz'
const SOCKET_MAX_PAYLOAD = 65_536

/**
 * The options of src/plugins/io.ts that shape the websocket path: the path,
 * connection-state recovery (every broadcast is kept for replay) and the
 * payload ceiling. Its `cors` callback (run by engine.io on every handshake)
 * and shutdown notice are the gateway's own and stay out of the baseline.
 */
const GATEWAY_IO_OPTIONS = {
  path: '/socket.io',
  serveClient: false,
  maxHttpBufferSize: Math.max(4 * SOCKET_MAX_PAYLOAD, 1_000_000),
  connectionStateRecovery: { maxDisconnectionDuration: 2 * 60_000, skipMiddlewares: false }
}

type Ack = ((response: unknown) => void) | undefined

async function startBaseline (recovery: boolean): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  const { connectionStateRecovery, ...plain } = GATEWAY_IO_OPTIONS
  // Registered as src/plugins/io.ts registers it (a CommonJS module whose plugin is `default`).
  await app.register(fastifySocketIO.default, recovery ? { ...plain, connectionStateRecovery } : plain)
  await app.ready()
  const io = (app as unknown as { io: SocketIOServer }).io
  // The gateway's relay semantics without its checks: join a room, relay { room, data } to it (sender excluded), ack { ok, id }.
  io.of('/chat').on('connection', (socket) => {
    const sub = typeof socket.handshake.auth?.sub === 'string' ? socket.handshake.auth.sub as string : socket.id
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
  return app
}

interface GatewayState { app: FastifyInstance, apiKey: string }

async function startGateway (): Promise<GatewayState> {
  const { build } = await import('../../src/app.js')
  const { parseConfig } = await import('../../src/config.js')
  const app = build(parseConfig({
    DATA_DIR: 'memory://',
    LOG_LEVEL: 'warn',
    ADMIN_API_KEY: ADMIN_KEY,
    RATE_LIMIT_SOCKET: '1000000/second',
    RATE_LIMIT_CONNECT: '1000000/minute',
    RATE_LIMIT_TOKEN: '1000000/minute',
    ANOMALY_MAX_FAILURES: '1000000/minute'
  }))
  await app.ready()
  const headers = { 'x-api-key': ADMIN_KEY }
  const policy = await app.inject({
    method: 'POST',
    url: '/v1/policies',
    headers,
    payload: { name: 'bench-chat', rules: [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'] }] }
  })
  if (policy.statusCode !== 201) throw new Error(`policy creation failed: ${policy.statusCode} ${policy.body}`)
  const key = await app.inject({
    method: 'POST',
    url: '/v1/keys',
    headers,
    payload: { name: 'bench', policyId: policy.json<{ id: string }>().id, scopes: ['token:delegate'] }
  })
  if (key.statusCode !== 201) throw new Error(`key creation failed: ${key.statusCode} ${key.body}`)
  return { app, apiKey: key.json<{ apiKey: string }>().apiKey }
}

async function mintTokens (gateway: GatewayState, subs: string[]): Promise<string[]> {
  const tokens: string[] = new Array(subs.length)
  const BATCH = 50
  for (let i = 0; i < subs.length; i += BATCH) {
    await Promise.all(subs.slice(i, i + BATCH).map(async (sub, j) => {
      const res = await gateway.app.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': gateway.apiKey }, payload: { sub } })
      if (res.statusCode !== 200) throw new Error(`token failed: ${res.statusCode} ${res.body}`)
      tokens[i + j] = res.json<{ accessToken: string }>().accessToken
    }))
  }
  return tokens
}

function forceGc (): void {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error('start the server with --expose-gc')
  // Twice: the first pass can leave objects that only die once their finalizers ran.
  gc()
  gc()
}

async function main (): Promise<void> {
  const kind = process.argv[2] as ServerKind
  let gateway: GatewayState | undefined
  let app: FastifyInstance
  if (kind === 'gateway') {
    gateway = await startGateway()
    app = gateway.app
  } else if (kind === 'baseline' || kind === 'baseline-plain') {
    app = await startBaseline(kind === 'baseline')
  } else {
    throw new Error(`unknown server kind ${String(kind)}`)
  }
  await app.listen({ host: '127.0.0.1', port: 0 })
  const io = (app as unknown as { io: SocketIOServer }).io
  const chat = io.of('/chat')

  let window: { cpu: NodeJS.CpuUsage, at: bigint, elu: ReturnType<typeof performance.eventLoopUtilization>, waitUs: number } | undefined

  serve({
    /** Starts a measured window. `atUs` is CLOCK_MONOTONIC, the clock of --cpu-prof samples. */
    'window:start': () => {
      window = { cpu: process.cpuUsage(), at: process.hrtime.bigint(), elu: performance.eventLoopUtilization(), waitUs: runQueueWaitUs() }
      return { atUs: Number(window.at / 1000n) }
    },
    'window:stop': () => {
      if (window === undefined) throw new Error('window:stop without window:start')
      const cpu = process.cpuUsage(window.cpu)
      const now = process.hrtime.bigint()
      const elu = performance.eventLoopUtilization(window.elu)
      const result = {
        cpuUs: cpu.user + cpu.system,
        userUs: cpu.user,
        systemUs: cpu.system,
        elapsedUs: Number(now - window.at) / 1000,
        eventLoopUtilization: elu.utilization,
        runQueueWaitUs: runQueueWaitUs() - window.waitUs,
        startUs: Number(window.at / 1000n),
        stopUs: Number(now / 1000n),
        rss: process.memoryUsage.rss()
      }
      window = undefined
      return result
    },
    gc: () => { forceGc(); return process.memoryUsage() },
    memory: () => process.memoryUsage(),
    /** A heap snapshot, for looking into what a connection holds (diagnostics; not used by the scenarios). */
    heapSnapshot: (args: { file: string }) => { forceGc(); return writeHeapSnapshot(args.file) },
    /** Sockets connected to /chat. */
    sockets: () => chat.sockets.size,
    /** Engine.IO connections still open (a closed namespace socket's transport can linger a little). */
    connections: () => io.engine.clientsCount,
    /** Work the gateway defers past a handshake (audit rows), done now so it falls inside the window. */
    settle: async () => { if (gateway !== undefined) await gateway.app.audit.flush() },
    mint: async (args: { subs: string[] }) => gateway === undefined ? args.subs.map(() => null) : await mintTokens(gateway, args.subs),
    close: async () => {
      await app.close()
      // Exiting (rather than waiting for handles) lets --cpu-prof write its profile now.
      setImmediate(() => process.exit(0))
    }
  })
  process.send?.({ ready: true, port: (app.server.address() as AddressInfo).port, pid: process.pid, kind })
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
