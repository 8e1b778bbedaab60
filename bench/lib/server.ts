// A server under test, run as its own (pinned) process by bench/lib/processes.ts:
//   baseline          bare Fastify + fastify-socket.io with the gateway's Socket.IO
//                     options, /chat relaying { room, data } as the gateway does, no auth;
//                     POST /auth/token signs the gateway's claims with fast-jwt (the token scenario's floor)
//   baseline-plain    the same with Socket.IO's defaults (no connection-state recovery)
//   baseline-redis    baseline with @socket.io/redis-adapter (BENCH_REDIS_URL)
//   gateway           build(parseConfig(...)) on PostgreSQL (BENCH_DATABASE_URL) with
//                     in-process limits, a policy, a key and minted tokens
//   gateway-embedded  the same on the embedded defaults (DATA_DIR=memory://)
//   gateway-redis     the same with REDIS_URL (BENCH_REDIS_URL) as well
// argv[3] is an optional JSON overlay of configuration (e.g. a low RATE_LIMIT_TOKEN).
// It answers the orchestrator over IPC (bench/lib/controls.ts), never through
// the gateway's own API.
import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifySocketIO from 'fastify-socket.io'
import { createSigner } from 'fast-jwt'
import type { Server as SocketIOServer } from 'socket.io'
import { serveBareRelay } from './bare-relay.js'
import { configOverlay, serveControls } from './controls.js'
import { ADMIN_KEY, AUDIENCE, GATEWAY_IO_OPTIONS, ISSUER, JWT_SECRET, TOKEN_TTL_SECONDS } from './gateway-shape.js'

/** `backend` is bench/lib/backend.ts (the routing scenario's backend service and direct baseline). */
export type ServerKind = 'baseline' | 'baseline-plain' | 'baseline-redis' | 'gateway' | 'gateway-embedded' | 'gateway-redis' | 'classic' | 'classic-keyobject' | 'backend'

/** @socket.io/redis-adapter on two ioredis connections, closed with the app (as src/plugins/io.ts does). */
async function redisAdapter (app: FastifyInstance): Promise<{ adapter: unknown }> {
  const { Redis } = await import('ioredis')
  const { createAdapter } = await import('@socket.io/redis-adapter')
  const pub = new Redis(required('BENCH_REDIS_URL'))
  const sub = pub.duplicate()
  app.addHook('onClose', async () => { await Promise.all([pub.quit(), sub.quit()]) })
  return { adapter: createAdapter(pub, sub) }
}

async function startBaseline (kind: ServerKind): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  const { connectionStateRecovery, ...plain } = GATEWAY_IO_OPTIONS
  const adapter = kind === 'baseline-redis' ? await redisAdapter(app) : {}
  // Registered as src/plugins/io.ts registers it (a CommonJS module whose plugin is `default`).
  await app.register(fastifySocketIO.default, { ...(kind === 'baseline-plain' ? plain : { ...plain, connectionStateRecovery }), ...adapter })
  // The token scenario's floor: a route that signs the gateway's claims with fast-jwt and does nothing else (no key, no limit, no audit).
  const signToken = createSigner({ key: JWT_SECRET, algorithm: 'HS256', iss: ISSUER, aud: AUDIENCE })
  const kid = randomUUID()
  app.post('/auth/token', async () => {
    const iat = Math.floor(Date.now() / 1000)
    const accessToken = signToken({ sub: kid, kid, jti: randomUUID(), scope: 'token:delegate', iat, exp: iat + TOKEN_TTL_SECONDS })
    return { accessToken, tokenType: 'Bearer', expiresIn: TOKEN_TTL_SECONDS, expiresAt: new Date((iat + TOKEN_TTL_SECONDS) * 1000).toISOString() }
  })
  await app.ready()
  const io = (app as unknown as { io: SocketIOServer }).io
  serveBareRelay(io.of('/chat'), (socket) => typeof socket.handshake.auth?.sub === 'string' ? socket.handshake.auth.sub as string : socket.id)
  return app
}

interface GatewayState { app: FastifyInstance, apiKey: string, policyId: string }

function required (name: string): string {
  const value = process.env[name]
  if (value === undefined || value === '') throw new Error(`${name} is not set (bench/run.ts starts private servers and sets it)`)
  return value
}

/** Where each gateway kind keeps its data: PostgreSQL (and Redis), or the embedded defaults. */
function storage (kind: ServerKind): Record<string, string> {
  if (kind === 'gateway-embedded') return { DATA_DIR: 'memory://' }
  const db = { DATABASE_URL: required('BENCH_DATABASE_URL') }
  return kind === 'gateway-redis' ? { ...db, REDIS_URL: required('BENCH_REDIS_URL'), JWT_SECRET } : db
}

async function startGateway (kind: ServerKind): Promise<GatewayState> {
  const { build } = await import('../../src/app.js')
  const { parseConfig } = await import('../../src/config.js')
  const app = build(parseConfig({
    ...storage(kind),
    LOG_LEVEL: 'info',
    ADMIN_API_KEY: ADMIN_KEY,
    RATE_LIMIT_SOCKET: '1000000/second',
    RATE_LIMIT_CONNECT: '1000000/minute',
    RATE_LIMIT_TRANSPORT: '1000000/minute',
    MAX_CONNECTIONS_PER_IP: '1000000',
    RATE_LIMIT_TOKEN: '1000000/minute',
    ANOMALY_MAX_FAILURES: '1000000/minute',
    ...configOverlay()
  }))
  await app.ready()
  const headers = { 'x-api-key': ADMIN_KEY }
  const policy = await app.inject({
    method: 'POST',
    url: '/v1/policies',
    headers,
    payload: { name: `bench-chat-${randomUUID()}`, rules: [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'] }] }
  })
  if (policy.statusCode !== 201) throw new Error(`policy creation failed: ${policy.statusCode} ${policy.body}`)
  const policyId = policy.json<{ id: string }>().id
  const [apiKey] = await createKeys(app, policyId, 1)
  return { app, apiKey, policyId }
}

/** Keys as the bench key, made through the admin API. KeyStore.create does not cache what it inserts, so each one's first authentication reads PostgreSQL (the token scenario's cold keys). */
async function createKeys (app: FastifyInstance, policyId: string, count: number): Promise<string[]> {
  const keys: string[] = []
  const BATCH = 20
  for (let i = 0; i < count; i += BATCH) {
    keys.push(...await Promise.all(Array.from({ length: Math.min(BATCH, count - i) }, async () => {
      const res = await app.inject({ method: 'POST', url: '/v1/keys', headers: { 'x-api-key': ADMIN_KEY }, payload: { name: 'bench', policyId, scopes: ['token:delegate'] } })
      if (res.statusCode !== 201) throw new Error(`key creation failed: ${res.statusCode} ${res.body}`)
      return res.json<{ apiKey: string }>().apiKey
    })))
  }
  return keys
}

/**
 * Tokens for end users from the decorators POST /auth/token runs (authenticateKey, issueToken), not
 * the route: a gateway started with a low RATE_LIMIT_TOKEN (the token scenario's 429 case) must still mint.
 */
async function mintTokens (gateway: GatewayState, subs: string[]): Promise<string[]> {
  const principal = await gateway.app.authenticateKey(gateway.apiKey, '127.0.0.1')
  return await Promise.all(subs.map(async (sub) => (await gateway.app.issueToken(principal, { sub })).accessToken))
}

async function main (): Promise<void> {
  const kind = process.argv[2] as ServerKind
  let gateway: GatewayState | undefined
  let app: FastifyInstance
  if (kind === 'gateway' || kind === 'gateway-embedded' || kind === 'gateway-redis') {
    gateway = await startGateway(kind)
    app = gateway.app
  } else if (kind === 'baseline' || kind === 'baseline-plain' || kind === 'baseline-redis') {
    app = await startBaseline(kind)
  } else {
    throw new Error(`unknown server kind ${String(kind)}`)
  }
  await app.listen({ host: '127.0.0.1', port: 0 })
  const withGateway = gateway
  serveControls({
    kind,
    http: app.server,
    io: (app as unknown as { io: SocketIOServer }).io,
    close: async () => { await app.close() },
    ...(withGateway === undefined
      ? {}
      : {
          settle: async () => { await withGateway.app.audit.flush() },
          mint: async (subs) => await mintTokens(withGateway, subs),
          extra: {
            apiKey: () => withGateway.apiKey,
            coldKeys: async (args: { count: number }) => await createKeys(withGateway.app, withGateway.policyId, args.count)
          }
        })
  })
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
