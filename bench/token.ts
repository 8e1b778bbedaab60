// POST /auth/token through the whole gateway against a bare Fastify route that only signs the same JWT:
// what authentication, limits, audit and the rest cost per token. Both run in this one process.
// Run: npx tsx bench/token.ts
import { randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import { createSigner } from 'fast-jwt'
import { build } from '../src/app.js'
import { parseConfig } from '../src/config.js'

interface Histogram { average: number, mean: number, p50: number, p99: number }
interface Result { requests: Histogram, latency: Histogram, non2xx: number, errors: number, timeouts: number, '2xx': number }
type Autocannon = (options: Record<string, unknown>) => Promise<Result>
// autocannon ships no types; its programmatic API returns a promise of the result when no callback is given.
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon

const SECRET = 'bench-jwt-secret-0123456789abcdefghijklmnopqrstuvwxyz'
const ADMIN_KEY = 'bench-admin-key-0123456789abcdefghijklmnopqrstuvwxyz'
const CONNECTIONS = 10
const DURATION_S = 5
const WARM_UP_S = 1
const ROUNDS = 2
const TTL = 900

/** The floor: a route that signs the same claims with the same key and nothing else. */
async function bareServer (): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  const sign = createSigner({ key: SECRET, algorithm: 'HS256', iss: 'spark-gateway', aud: 'spark-gateway' })
  app.post('/auth/token', async () => {
    const iat = Math.floor(Date.now() / 1000)
    const kid = 'bench-key'
    const accessToken = sign({ sub: kid, kid, jti: randomUUID(), scope: 'publish', iat, exp: iat + TTL })
    return { accessToken, tokenType: 'Bearer', expiresIn: TTL, expiresAt: new Date((iat + TTL) * 1000).toISOString() }
  })
  return app
}

/** The gateway on its embedded stores, with a limit high enough never to answer 429. */
async function gatewayServer (): Promise<{ app: FastifyInstance, apiKey: string }> {
  const app = build(parseConfig({
    DATA_DIR: 'memory://', JWT_SECRET: SECRET, ADMIN_API_KEY: ADMIN_KEY, LOG_LEVEL: 'silent', RATE_LIMIT_TOKEN: '100000000/minute'
  }))
  await app.ready()
  const res = await app.inject({ method: 'POST', url: '/v1/keys', headers: { 'x-api-key': ADMIN_KEY }, payload: { name: 'bench', scopes: ['publish'] } })
  if (res.statusCode !== 201) throw new Error(`key creation failed: ${res.statusCode} ${res.body}`)
  return { app, apiKey: res.json<{ apiKey: string }>().apiKey }
}

async function listen (app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/auth/token`
}

async function load (url: string, headers: Record<string, string>, seconds: number): Promise<Result> {
  return await autocannon({ url, method: 'POST', headers, connections: CONNECTIONS, duration: seconds })
}

interface Sample { rps: number, p99: number, failed: number }

async function measure (url: string, headers: Record<string, string>): Promise<Sample> {
  await load(url, headers, WARM_UP_S)
  const r = await load(url, headers, DURATION_S)
  return { rps: r.requests.average, p99: r.latency.p99, failed: r.non2xx + r.errors + r.timeouts }
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length
const line = (name: string, s: Sample): string =>
  `${name.padEnd(8)} ${s.rps.toFixed(0).padStart(8)} req/s   p99 ${s.p99.toFixed(2).padStart(6)} ms${s.failed > 0 ? `   (${s.failed} failed!)` : ''}`

const bare = await bareServer()
const { app: gateway, apiKey } = await gatewayServer()
const bareUrl = await listen(bare)
const gatewayUrl = await listen(gateway)
// Each side is checked once before timing, so a figure never measures refusals.
for (const [url, headers] of [[bareUrl, {}], [gatewayUrl, { 'x-api-key': apiKey }]] as const) {
  const res = await fetch(url, { method: 'POST', headers })
  if (res.status !== 200) throw new Error(`${url}: ${res.status} ${await res.text()}`)
}

console.log(`POST /auth/token, ${CONNECTIONS} connections, ${DURATION_S} s per run after ${WARM_UP_S} s warm-up, ${ROUNDS} rounds alternating (Node ${process.version})`)
const samples: { bare: Sample[], gateway: Sample[] } = { bare: [], gateway: [] }
for (let round = 1; round <= ROUNDS; round++) {
  const b = await measure(bareUrl, {})
  const g = await measure(gatewayUrl, { 'x-api-key': apiKey })
  samples.bare.push(b)
  samples.gateway.push(g)
  console.log(`round ${round}\n  ${line('bare', b)}\n  ${line('gateway', g)}`)
}
const summary = (xs: Sample[]): Sample => ({ rps: mean(xs.map((s) => s.rps)), p99: mean(xs.map((s) => s.p99)), failed: xs.reduce((a, s) => a + s.failed, 0) })
const b = summary(samples.bare)
const g = summary(samples.gateway)
console.log(`mean of ${ROUNDS} rounds\n  ${line('bare', b)}\n  ${line('gateway', g)}`)
console.log(`gateway/bare: throughput ${(g.rps / b.rps).toFixed(3)}x, p99 latency ${(g.p99 / b.p99).toFixed(2)}x`)

await Promise.all([bare.close(), gateway.close()])
