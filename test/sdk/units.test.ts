import { readdirSync, readFileSync } from 'node:fs'
import t from 'tap'
import { Backoff, backoffDelay } from '../../src/sdk/backoff.js'
import { GATEWAY_CODES, GatewayError, refusalError, remedyFor, SDK_CODES } from '../../src/sdk/errors.js'
import { jwtLifetimeMs, TokenSource } from '../../src/sdk/tokens.js'
import { b64url } from '../support/jwt.js'

t.test('backoff: the ceiling doubles from baseMs up to maxMs, and each delay is drawn below it', async (t) => {
  const options = { baseMs: 100, maxMs: 3000 }
  const ceilings = [0, 1, 2, 3, 4, 5, 6, 40].map((attempt) => backoffDelay(attempt, { ...options, random: () => 0.999999 }))
  t.same(ceilings, [99, 199, 399, 799, 1599, 2999, 2999, 2999], 'just under min(maxMs, baseMs × 2^attempt)')
  t.same([0, 3, 9].map((attempt) => backoffDelay(attempt, { ...options, random: () => 0 })), [0, 0, 0], 'full jitter reaches down to 0')
  t.equal(backoffDelay(2, { ...options, random: () => 0.5 }), 200, 'uniform within the window')
  t.equal(backoffDelay(1e6, { baseMs: 500, maxMs: 30_000, random: () => 0.5 }), 15_000, 'a huge attempt count stays finite')
})

t.test('backoff: real delays are jittered (not all equal) and their windows grow', async (t) => {
  const samples = (attempt: number): number[] => Array.from({ length: 400 }, () => backoffDelay(attempt, { baseMs: 100, maxMs: 10_000 }))
  const first = samples(0)
  const fifth = samples(4)
  t.ok(first.every((d) => d >= 0 && d < 100), 'attempt 0 within [0, 100)')
  t.ok(fifth.every((d) => d >= 0 && d < 1600), 'attempt 4 within [0, 1600)')
  t.ok(new Set(first).size > 20, 'many distinct delays: jittered')
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length
  t.ok(mean(fifth) > 8 * mean(first), `the window grows (means ${mean(first).toFixed(0)} → ${mean(fifth).toFixed(0)})`)
  t.ok(mean(fifth) > 600 && mean(fifth) < 1000, 'uniform: the mean is about half the ceiling')
})

t.test('Backoff counts attempts until reset', async (t) => {
  const backoff = new Backoff({ baseMs: 10, maxMs: 1000, random: () => 0.999999 })
  t.same([backoff.next(), backoff.next(), backoff.next()], [9, 19, 39])
  backoff.reset()
  t.equal(backoff.next(), 9, 'back to the first window')
})

t.test('the SDK\'s own codes are distinct from the §6 codes', async (t) => {
  t.same(SDK_CODES.filter((code) => (GATEWAY_CODES as readonly string[]).includes(code)), [])
})

t.test('each refusal maps to a remedy', async (t) => {
  const remedies = Object.fromEntries([...GATEWAY_CODES, ...SDK_CODES].map((code) => [code, remedyFor(code)]))
  t.same(remedies, {
    UNAUTHORIZED: 'renew-token',
    TOKEN_EXPIRED: 'renew-token',
    TOKEN_REVOKED: 'renew-token',
    KEY_REVOKED: 'stop-client',
    KEY_EXPIRED: 'stop-client',
    FORBIDDEN: 'stop-namespace',
    IP_NOT_ALLOWED: 'stop-client',
    ORIGIN_NOT_ALLOWED: 'stop-client',
    RATE_LIMITED: 'retry',
    TEMPORARILY_BLOCKED: 'retry',
    VALIDATION_FAILED: 'stop-client',
    PAYLOAD_TOO_LARGE: 'stop-client',
    NOT_FOUND: 'stop-namespace',
    CONFLICT: 'stop-client',
    UNAVAILABLE: 'retry',
    TIMEOUT: 'retry',
    DISCONNECTED: 'retry',
    CLOSED: 'stop-client',
    NETWORK_ERROR: 'retry'
  })
})

t.test('a socket refusal body becomes a typed GatewayError', async (t) => {
  const err = refusalError({ code: 'RATE_LIMITED', message: 'slow down', retryAfter: 2 }, { namespace: '/chat', event: 'connect' })
  t.ok(err instanceof GatewayError)
  t.ok(err instanceof Error)
  t.same([err.name, err.code, err.message, err.status, err.fromGateway], ['GatewayError', 'RATE_LIMITED', 'slow down', undefined, true])
  t.same(err.details, { namespace: '/chat', event: 'connect', retryAfter: 2 })
  const unknown = refusalError({ code: 'SOMETHING_NEW' }, {})
  t.same([unknown.code, unknown.message], ['UNAVAILABLE', 'SOMETHING_NEW'], 'an unknown code is retried as UNAVAILABLE')
  t.equal(new GatewayError('TIMEOUT', 'x').fromGateway, false)
})

t.test('jwtLifetimeMs reads exp − iat of a JWT, and nothing else', async (t) => {
  const jwt = (claims: unknown): string => `${b64url({ alg: 'HS256' })}.${b64url(claims)}.sig`
  t.equal(jwtLifetimeMs(jwt({ iat: 1000, exp: 1900, sub: 'zoë' })), 900_000)
  t.equal(jwtLifetimeMs(jwt({ exp: 1900 })), undefined, 'no iat')
  t.equal(jwtLifetimeMs(jwt({ iat: 1900, exp: 1900 })), undefined, 'no lifetime')
  t.equal(jwtLifetimeMs('opaque-token'), undefined)
  t.equal(jwtLifetimeMs('a.!!!.c'), undefined)
})

t.test('the SDK sources import nothing from Node, and the protocol module they share with the server imports nothing', async (t) => {
  const dir = new URL('../../src/sdk/', import.meta.url)
  const sources = readdirSync(dir).filter((name) => name.endsWith('.ts'))
  t.ok(sources.length >= 5)
  const importsOf = (text: string): string[] => [...text.matchAll(/from '([^']+)'/g)].map((m) => m[1])
  for (const name of sources) {
    const text = readFileSync(new URL(name, dir), 'utf8')
    t.same(importsOf(text).filter((spec) => !spec.startsWith('./') && !spec.startsWith('../protocol/') && spec !== 'socket.io-client'), [], `${name} imports only the SDK, src/protocol/ and socket.io-client`)
    t.notMatch(text, /\b(Buffer|process)\./, `${name} uses no Node globals`)
  }
  const protocol = new URL('../../src/protocol/', import.meta.url)
  for (const name of readdirSync(protocol).filter((n) => n.endsWith('.ts'))) {
    t.same(importsOf(readFileSync(new URL(name, protocol), 'utf8')), [], `src/protocol/${name} imports nothing`)
  }
})

type Tap = { teardown: (fn: () => unknown) => void }

/** A TokenSource whose grants come from `fetchGrant`, with no listeners, closed after the test. */
function quietTokenSource (t: Tap, fetchGrant: () => Promise<{ accessToken: string, expiresIn: number }>): TokenSource {
  const tokens = new TokenSource({ fetchGrant, refreshMarginMs: 90_000, backoff: { baseMs: 10, maxMs: 100 }, onToken: () => {}, onError: () => {}, onFatal: () => {} })
  t.teardown(() => { tokens.close() })
  return tokens
}

t.test('a token of lifetime 0 does not make the refresh timer spin: at most one refresh a second', async (t) => {
  let fetches = 0
  const tokens = quietTokenSource(t, async () => ({ accessToken: `t${++fetches}`, expiresIn: 0 }))
  t.equal(await tokens.renew(), 't1')
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(fetches, 1, 'no refresh within the first second')
  await new Promise((resolve) => setTimeout(resolve, 700))
  t.equal(fetches, 2, 'then one')
})

t.test('discard() forgets the held token only when it is the one refused', async (t) => {
  let fetches = 0
  const tokens = quietTokenSource(t, async () => ({ accessToken: `t${++fetches}`, expiresIn: 3600 }))
  t.equal(await tokens.usable(), 't1')
  tokens.discard('other')
  t.equal(tokens.current(), 't1', 'another token: kept')
  tokens.discard('t1')
  t.equal(tokens.current(), undefined)
  t.equal(await tokens.usable(), 't2', 'the next handshake fetches anew')
})
