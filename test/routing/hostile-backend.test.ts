import fc from 'fast-check'
import t from 'tap'
import { buildApp, listen } from '../helper.js'
import { ack, connectAs, eventually, keyWithPolicy, nextEvent, ROOMY_LIMITS, tokenFor } from '../support/sockets.js'
import { createRoute, httpBackend, socketIoBackend } from '../support/backends.js'

const RULES = [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], events: ['order:*', 'message'], rooms: ['lobby'] }]
const CLIENT_CODES = new Set(['FORBIDDEN', 'VALIDATION_FAILED', 'NOT_FOUND', 'CONFLICT', 'RATE_LIMITED', 'UNAVAILABLE'])

/** Whatever a backend answers, the client gets data or a refusal of the pass-through list or UNAVAILABLE. */
function assertClientAnswer (t: { ok: (value: unknown, message: string) => boolean }, reply: { ok?: unknown, data?: unknown, error?: { code?: string } }): void {
  if (reply.ok === true) return
  t.ok(reply.error?.code !== undefined && CLIENT_CODES.has(reply.error.code), `a known code: ${JSON.stringify(reply).slice(0, 200)}`)
}

// Deeply nested values, proto keys, huge numbers, odd unicode: JSON a broken or hostile backend could send.
const hostileJson = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify({ data: v })),
  fc.constantFrom(
    '{"data":' + '['.repeat(5000) + ']'.repeat(5000) + '}', '{"error":{"code":"FORBIDDEN","message":' + '['.repeat(100) + ']'.repeat(100) + '}}',
    '{"error":{"code":"__proto__"}}', '{"__proto__":{"data":1}}', '{"error":null}', '{"error":{"code":"UNAVAILABLE","message":"x"}}', '{"data":1e400}', '', 'null', '\uFEFF{"data":1}'
  ),
  fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes).toString('latin1'))
)

t.test('hostile HTTP answers never stop the gateway nor reach a client unchecked', async (t) => {
  const app = await buildApp(t, { ...ROOMY_LIMITS, RATE_LIMIT_SOCKET: '10000/second' })
  const key = await keyWithPolicy(app, RULES)
  const url = await listen(app)
  const [alice, bob] = await Promise.all([connectAs(t, url, '/chat', await tokenFor(app, key.apiKey, 'alice')), connectAs(t, url, '/chat', await tokenFor(app, key.apiKey, 'bob'))])
  await ack(bob, 'join', { room: 'lobby' })
  let next = { status: 200, body: '' }
  const backend = await httpBackend(t, (_call, res) => { res.writeHead(next.status, { 'content-type': 'application/json' }); res.end(next.body) })
  await createRoute(app, { events: ['order:*'], upstream: { type: 'http', url: backend.url } })
  await fc.assert(fc.asyncProperty(fc.constantFrom(200, 201, 204, 301, 400, 403, 404, 409, 422, 429, 500, 503), hostileJson, async (status, body) => {
    next = { status, body }
    assertClientAnswer(t, await ack(alice, 'order:create', { room: 'lobby', data: 1 }))
  }), { numRuns: 150, seed: 14_2026 })
  // The breaker may be open after the run: other events are still relayed, and the process serves.
  const message = nextEvent(bob, 'message')
  await ack(alice, 'message', { room: 'lobby', data: 'still here' })
  t.match(await message, { data: 'still here' })
})

t.test('hostile Socket.IO acks never stop the gateway nor reach a client unchecked', async (t) => {
  const app = await buildApp(t, { ...ROOMY_LIMITS, RATE_LIMIT_SOCKET: '10000/second' })
  const key = await keyWithPolicy(app, RULES)
  const url = await listen(app)
  const [alice, bob] = await Promise.all([connectAs(t, url, '/chat', await tokenFor(app, key.apiKey, 'alice')), connectAs(t, url, '/chat', await tokenFor(app, key.apiKey, 'bob'))])
  await ack(bob, 'join', { room: 'lobby' })
  let next: unknown = null
  const backend = await socketIoBackend(t, () => next)
  await createRoute(app, { events: ['order:*'], upstream: { type: 'socketio', url: backend.url, namespace: '/spark' } })
  await eventually(() => backend.gateways().length === 1, 10_000, 'connected')
  const values = fc.oneof(
    fc.jsonValue({ maxDepth: 4 }),
    fc.jsonValue({ maxDepth: 3 }).map((data) => ({ data })),
    fc.constantFrom(Buffer.from('binary'), { data: Buffer.alloc(10) }, { data: JSON.parse('['.repeat(200) + ']'.repeat(200)) }, { error: { code: 'CONFLICT', message: 42 } }, undefined)
  )
  await fc.assert(fc.asyncProperty(values, async (value) => {
    next = value
    assertClientAnswer(t, await ack(alice, 'order:create', { room: 'lobby', data: 1 }))
  }), { numRuns: 150, seed: 14_2026 })
  const message = nextEvent(bob, 'message')
  await ack(alice, 'message', { room: 'lobby', data: 'still here' })
  t.match(await message, { data: 'still here' }, 'the gateway still relays')
})
