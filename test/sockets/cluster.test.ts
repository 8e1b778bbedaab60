import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildFrom, isolatedEnv, listen, realServers } from '../helper.js'
import { collectAlerts } from '../support/auth.js'
import { TEST_JWT_SECRET } from '../support/jwt.js'
import { connectAs, disconnection, eventsWithin, eventually, handshakeOutcome, keyWithPolicy, nextEvent, recordEvents, replacePolicy, revokeKey, ROOMY_LIMITS, tokenFor, ack, WAIT_MS } from '../support/sockets.js'

const CHAT_RULES = [
  { effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['lobby', 'room:*', 'user:${sub}'] },
  { effect: 'allow', namespace: '/notification', actions: ['connect', 'subscribe'], rooms: ['user:${sub}'] }
]

type Tap = Parameters<typeof buildFrom>[0]

/**
 * Two instances on one Redis and one PostgreSQL, each listening on its own
 * port, with one JWT_SECRET (as a deployment has: a token minted by one
 * instance is presented to another).
 */
async function cluster (t: Tap, env: Record<string, string> = {}): Promise<{ a: FastifyInstance, b: FastifyInstance, urlA: string, urlB: string }> {
  const shared = await isolatedEnv(t, { ...ROOMY_LIMITS, JWT_SECRET: TEST_JWT_SECRET, ...env })
  const a = await buildFrom(t, shared)
  const b = await buildFrom(t, shared)
  return { a, b, urlA: await listen(a), urlB: await listen(b) }
}

t.test('a cluster needs the real servers', { skip: realServers ? false : 'TEST_DATABASE_URL and TEST_REDIS_URL are not set' }, async (t) => {
  t.test('a message sent on A reaches a room member on B exactly once', async (t) => {
    const { a, b, urlA, urlB } = await cluster(t)
    const { apiKey } = await keyWithPolicy(a, CHAT_RULES)
    const alice = await connectAs(t, urlA, '/chat', await tokenFor(a, apiKey, 'alice'))
    const carol = await connectAs(t, urlA, '/chat', await tokenFor(a, apiKey, 'carol'))
    const bob = await connectAs(t, urlB, '/chat', await tokenFor(b, apiKey, 'bob'))
    for (const socket of [alice, bob, carol]) t.same(await ack(socket, 'join', { room: 'lobby' }), { ok: true })
    const onB = recordEvents(bob, 'message')
    const onA = recordEvents(carol, 'message')
    const echo = recordEvents(alice, 'message')
    const sent = await ack(alice, 'message', { room: 'lobby', data: 'across' })
    t.equal(sent.ok, true)
    // Until it arrived (polled: later on a loaded machine), then a while longer for a duplicate or an echo to show.
    await eventually(() => onB.received.length > 0 && onA.received.length > 0, WAIT_MS, 'the message on A and B').catch(() => {})
    await eventsWithin(bob, 300)
    t.same(onB.stop().map((m) => [m.id, m.from.sub, m.data]), [[sent.id, 'alice', 'across']], 'once on B')
    t.same(onA.stop().map((m) => m.id), [sent.id], 'once on A')
    t.same(echo.stop(), [], 'never back to the sender')

    // And back: B to A, into a user room.
    const toAlice = recordEvents(alice, 'message')
    t.equal((await ack(bob, 'message', { room: 'room:9', data: 'nobody here' })).ok, true)
    const aliceB = await connectAs(t, urlB, '/chat', await tokenFor(b, apiKey, 'alice'))
    t.equal((await ack(aliceB, 'message', { room: 'user:alice', data: 'from my other device' })).ok, true)
    await eventually(() => toAlice.received.length > 0, WAIT_MS, 'the message on A').catch(() => {})
    await eventsWithin(alice, 300)
    t.same(toAlice.stop().map((m) => m.data), ['from my other device'], 'a user room spans instances')
  })

  t.test('an HTTP publish on B reaches a socket on A', async (t) => {
    const { a, b, urlA } = await cluster(t)
    const users = await keyWithPolicy(a, CHAT_RULES)
    const publisher = await keyWithPolicy(a, [
      { effect: 'allow', namespace: '/chat', actions: ['publish'], rooms: ['lobby'] },
      { effect: 'allow', namespace: '/notification', actions: ['publish'], rooms: ['user:*'] }
    ], { scopes: ['publish'] })
    const alice = await connectAs(t, urlA, '/chat', await tokenFor(a, users.apiKey, 'alice'))
    const notes = await connectAs(t, urlA, '/notification', await tokenFor(a, users.apiKey, 'alice'))
    t.same(await ack(alice, 'join', { room: 'lobby' }), { ok: true })
    const received = recordEvents(alice, 'news')
    const res = await b.inject({ method: 'POST', url: '/v1/publish', headers: { 'x-api-key': publisher.apiKey }, payload: { namespace: '/chat', room: 'lobby', event: 'news', data: 'from B' } })
    t.equal(res.statusCode, 202, res.body)
    const note = nextEvent(notes, 'notice')
    t.equal((await b.inject({ method: 'POST', url: '/v1/publish', headers: { 'x-api-key': publisher.apiKey }, payload: { namespace: '/notification', room: 'user:alice', event: 'notice', data: 'hi' } })).statusCode, 202)
    t.equal((await note).data, 'hi', '/notification to user:<sub> across instances')
    await eventually(() => received.received.length > 0, WAIT_MS, 'the news on A').catch(() => {})
    await eventsWithin(alice, 200)
    t.same(received.stop().map((m) => [m.id, m.data]), [[res.json().id, 'from B']], 'exactly once')
  })

  t.test('a key revoked through B disconnects its sockets on A within a second and counts them', async (t) => {
    const { a, b, urlA, urlB } = await cluster(t)
    const doomed = await keyWithPolicy(a, CHAT_RULES)
    const kept = await keyWithPolicy(a, CHAT_RULES)
    const doomedToken = await tokenFor(a, doomed.apiKey, 'alice')
    const onA = await connectAs(t, urlA, '/chat', doomedToken)
    const onA2 = await connectAs(t, urlA, '/notification', await tokenFor(a, doomed.apiKey, 'alice'))
    const onB = await connectAs(t, urlB, '/chat', await tokenFor(b, doomed.apiKey, 'bob'))
    const survivor = await connectAs(t, urlA, '/chat', await tokenFor(a, kept.apiKey, 'carol'))
    const gone = Promise.all([onA, onA2, onB].map(async (s) => await disconnection(s, 1000)))
    const started = Date.now()
    const body = await revokeKey(b, doomed.id)
    t.equal(body.disconnected, 3, 'the sockets on both instances are counted')
    t.notOk(body.incomplete, 'both instances answered')
    await gone
    t.ok(Date.now() - started < 1000, `all closed within a second (${Date.now() - started} ms)`)
    t.ok(survivor.connected)
    // And the key stays refused on A, whose cache knew it as active.
    t.equal(await handshakeOutcome(t, `${urlA}/chat`, { auth: { token: doomedToken } }), 'KEY_REVOKED')
  })

  t.test('a policy change through A is enforced on B within a second', async (t) => {
    const { a, urlB } = await cluster(t)
    const { apiKey, policyId } = await keyWithPolicy(a, CHAT_RULES)
    const alice = await connectAs(t, urlB, '/chat', await tokenFor(a, apiKey, 'alice'))
    const bob = await connectAs(t, urlB, '/chat', await tokenFor(a, apiKey, 'bob'))
    for (const socket of [alice, bob]) t.same(await ack(socket, 'join', { room: 'lobby' }), { ok: true })
    t.equal((await ack(alice, 'message', { room: 'lobby', data: 'before' })).ok, true)

    await replacePolicy(a, policyId, [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['room:*'] }])
    const started = Date.now()
    let response
    do {
      response = await ack(alice, 'message', { room: 'lobby', data: 'after' })
    } while (response.ok === true && Date.now() - started < 1000)
    t.equal(response.error?.code, 'FORBIDDEN', `publishing to the removed room is refused on B within a second (${Date.now() - started} ms)`)
    t.equal((await ack(bob, 'join', { room: 'lobby' })).error?.code, 'FORBIDDEN', 'joining it too')
    // bob left lobby on B: a message to it from a key still allowed there no longer reaches him.
    const other = await keyWithPolicy(a, CHAT_RULES)
    const sender = await connectAs(t, urlB, '/chat', await tokenFor(a, other.apiKey, 'dave'))
    const quiet = eventsWithin(bob, 300)
    t.equal((await ack(sender, 'message', { room: 'lobby', data: 'anyone?' })).ok, true)
    t.same(await quiet, [], 'the socket on B left the removed room')
  })

  t.test('limits hold across instances: maxConnections and the key\'s publish limit', async (t) => {
    const { a, b, urlA, urlB } = await cluster(t)
    const { apiKey } = await keyWithPolicy(a, CHAT_RULES, { maxConnections: 1, rateLimit: { max: 2, windowSeconds: 60 } })
    const first = await connectAs(t, urlA, '/chat', await tokenFor(a, apiKey, 'alice'))
    t.equal(await handshakeOutcome(t, `${urlB}/chat`, { auth: { token: await tokenFor(b, apiKey, 'alice') } }), 'RATE_LIMITED', 'the second live socket, on B, is refused')
    t.equal((await ack(first, 'message', { room: 'lobby', data: 1 })).ok, true)
    const viaB = await b.inject({ method: 'POST', url: '/v1/publish', headers: { 'x-api-key': apiKey }, payload: { namespace: '/chat', room: 'lobby', event: 'message', data: 2 } })
    t.equal(viaB.statusCode, 403, 'no scope publish: refused before counting')
    t.equal((await ack(first, 'message', { room: 'lobby', data: 2 })).ok, true)
    t.equal((await ack(first, 'message', { room: 'lobby', data: 3 })).error?.code, 'RATE_LIMITED')
  })

  t.test('an alert raised on A reaches the admin room on B once', async (t) => {
    const { a, b, urlB } = await cluster(t, { ANOMALY_MAX_FAILURES: '2/minute' })
    const admin = await keyWithPolicy(a, [{ effect: 'allow', namespace: '/system', actions: ['connect', 'subscribe'], rooms: ['admin'] }])
    const ops = await connectAs(t, urlB, '/system', await tokenFor(b, admin.apiKey, 'ops'))
    t.same(await ack(ops, 'join', { room: 'admin' }), { ok: true })
    const raisedOnB = collectAlerts(b)
    const alerts = recordEvents(ops, 'alert')
    for (let i = 0; i < 3; i++) await a.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': 'spk_nope_x' }, remoteAddress: '203.0.113.5' })
    await nextEvent(ops, 'alert')
    await eventsWithin(ops, 200)
    t.same(alerts.stop().map((x) => [x.kind, x.ip, x.count]), [['ip_blocked', '203.0.113.5', 3]])
    t.same(raisedOnB, [], 'raised by the instance that saw it, not repeated by B')
  })
})

t.test('a handshake carrying a large extra auth field cannot break a revoke on another instance', { skip: realServers ? false : 'TEST_DATABASE_URL and TEST_REDIS_URL are not set' }, async (t) => {
  const { a, b, urlA } = await cluster(t)
  const { id, apiKey } = await keyWithPolicy(a, CHAT_RULES)
  const token = await tokenFor(a, apiKey, 'alice')
  // Within the depth limit (a deeper one is refused at the gate), but large: nothing of it may stay on the socket.
  let nested: unknown = 'x'.repeat(1000)
  for (let i = 0; i < 30; i++) nested = { nested, pad: 'y'.repeat(10_000) }
  const alice = await connectAs(t, urlA, '/chat', token, { auth: { token, extra: nested } })
  const gone = disconnection(alice, 5000)
  const revoked = await revokeKey(b, id)
  t.same([revoked.disconnected, revoked.incomplete ?? false], [1, false], 'instance B counted the socket on A; A answered')
  await gone
  t.equal((await a.inject({ url: '/health/live' })).statusCode, 200, 'A is alive')
})
