import t from 'tap'
import { adminHeaders, buildApp, connect, createKey, createPolicy, listen, mintToken } from '../helper.js'
import { connectAs, disconnection, eventsWithin, keyWithPolicy, nextEvent, recordEvents, replacePolicy, revokeKey, ROOMY_LIMITS, tokenFor, ack } from '../support/sockets.js'
import type { LightMyRequestResponse } from 'fastify'

const CHAT_RULES = [
  { effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['lobby', 'room:*', 'user:${sub}'] },
  { effect: 'allow', namespace: '/notification', actions: ['connect', 'subscribe'], rooms: ['user:${sub}'] },
  { effect: 'allow', namespace: '/error', actions: ['connect'] }
]

t.test('token expiry: auth:expiring, auth:expired, packets refused until auth:refresh', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const other = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const bob = await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'bob'))
  t.same(await ack(bob, 'join', { room: 'lobby' }), { ok: true })

  const short = await app.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': apiKey }, payload: { sub: 'alice', ttl: 2 } })
  const { accessToken, expiresAt } = short.json<{ accessToken: string, expiresAt: string }>()
  const alice = connect(t, `${url}/chat`, { auth: { token: accessToken } })
  // Listeners are in place before the handshake completes: the notice is sent right after it.
  const expiring = nextEvent(alice, 'auth:expiring', 2000)
  const expired = nextEvent(alice, 'auth:expired', 4000)
  t.same(await expiring, { expiresAt }, 'auth:expiring right away: the token expires within 60 s')
  t.equal((await ack(alice, 'message', { room: 'lobby', data: 'before' })).ok, true, 'packets flow until exp')

  t.same(await expired, { expiresAt }, 'auth:expired at exp')
  t.ok(Date.now() >= Date.parse(expiresAt) - 50, 'not before exp')
  t.ok(alice.connected, 'still connected during the grace period')
  const quiet = eventsWithin(bob, 300)
  const refusal = await ack(alice, 'message', { room: 'lobby', data: 'after' })
  t.same([refusal.ok, refusal.error?.code], [false, 'TOKEN_EXPIRED'])
  const refusedJoin = await ack(alice, 'join', { room: 'room:1' })
  t.same([refusedJoin.ok, refusedJoin.error?.code], [false, 'TOKEN_EXPIRED'], 'joins too')
  const noAck = nextEvent(alice, 'gateway:error')
  alice.emit('message', { room: 'lobby', data: 'after, no ack' })
  t.same([(await noAck).code, (await noAck).event], ['TOKEN_EXPIRED', 'message'])
  t.same(await quiet, [], 'nothing sent after expiry was delivered')

  // A refresh must name the same key and subject, and be a valid token.
  const wrongSub = await ack(alice, 'auth:refresh', { token: await tokenFor(app, apiKey, 'mallory') })
  t.same([wrongSub.ok, wrongSub.error?.code], [false, 'FORBIDDEN'], 'another subject')
  const wrongKey = await ack(alice, 'auth:refresh', { token: await tokenFor(app, other.apiKey, 'alice') })
  t.same([wrongKey.ok, wrongKey.error?.code], [false, 'FORBIDDEN'], 'the same subject from another key')
  const bad = await ack(alice, 'auth:refresh', { token: 'not-a-token' })
  t.same([bad.ok, bad.error?.code], [false, 'UNAUTHORIZED'], 'a bad token')
  const malformed = await ack(alice, 'auth:refresh', { token: 42 })
  t.same([malformed.ok, malformed.error?.code], [false, 'VALIDATION_FAILED'], 'a malformed refresh')
  t.equal((await ack(alice, 'message', { room: 'lobby', data: 'x' })).error?.code, 'TOKEN_EXPIRED', 'a refused refresh changes nothing')

  const fresh = await app.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': apiKey }, payload: { sub: 'alice' } })
  const refreshed = await ack(alice, 'auth:refresh', { token: fresh.json().accessToken })
  t.same(refreshed, { ok: true, expiresAt: fresh.json().expiresAt }, 'auth:refresh → { ok, expiresAt }')
  const delivered = nextEvent(bob, 'message')
  t.equal((await ack(alice, 'message', { room: 'lobby', data: 'again' })).ok, true, 'packets flow again')
  t.same((await delivered).data, 'again')

  // The old token's timers are gone with it.
  const quietNotices = recordEvents(alice, 'auth:expired')
  await eventsWithin(alice, 100)
  t.same(quietNotices.stop(), [], 'no auth:expired for the old token after the refresh')
  t.ok(alice.connected)
})

t.test('auth:refresh without an ack answers a refusal with gateway:error', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const alice = await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'alice'))
  const error = nextEvent(alice, 'gateway:error')
  alice.emit('auth:refresh', { token: await tokenFor(app, apiKey, 'bob') })
  const body = await error
  t.same([body.code, body.event], ['FORBIDDEN', 'auth:refresh'])
})

t.test('revoking a key disconnects its live sockets within a second and counts them', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const doomed = await keyWithPolicy(app, CHAT_RULES)
  const kept = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const a = await connectAs(t, url, '/chat', await tokenFor(app, doomed.apiKey, 'alice'))
  const b = await connectAs(t, url, '/notification', await tokenFor(app, doomed.apiKey, 'bob'))
  const survivor = await connectAs(t, url, '/chat', await tokenFor(app, kept.apiKey, 'carol'))
  const gone = Promise.all([disconnection(a, 1000), disconnection(b, 1000)])
  const told = nextEvent(a, 'gateway:error', 1000)
  const started = Date.now()
  const body = await revokeKey(app, doomed.id)
  t.equal(body.disconnected, 2, 'both sockets counted')
  t.notOk(body.incomplete, 'every instance answered')
  t.type(body.revokedAt, 'string')
  t.same(await gone, ['io server disconnect', 'io server disconnect'])
  const reason = await told
  t.same([reason.code, reason.event], ['KEY_REVOKED', 'disconnect'], 'the socket is told why before it is closed')
  t.ok(Date.now() - started < 1000, `within a second (${Date.now() - started} ms)`)
  t.ok(survivor.connected, 'another key\'s socket stays')
  const again = await revokeKey(app, doomed.id)
  t.same([again.revokedAt, again.disconnected], [body.revokedAt, 0], 'idempotent')
})

t.test('a policy change applies to live sockets within a second', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey, policyId } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const alice = await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'alice'))
  const bob = await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'bob'))
  for (const room of ['lobby', 'room:1']) {
    t.same(await ack(alice, 'join', { room }), { ok: true })
    t.same(await ack(bob, 'join', { room }), { ok: true })
  }
  const notifications = await connectAs(t, url, '/notification', await tokenFor(app, apiKey, 'alice'))

  // lobby is removed; room:* stays; /notification loses connect.
  await replacePolicy(app, policyId, [
    { effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['room:*', 'user:${sub}'] }
  ])
  const dropped = disconnection(notifications, 1000)
  const why = nextEvent(notifications, 'gateway:error', 1000)
  const started = Date.now()
  let refusal
  do {
    refusal = await ack(alice, 'message', { room: 'lobby', data: 'still?' })
  } while (refusal.ok === true && Date.now() - started < 1000)
  t.equal(refusal.error?.code, 'FORBIDDEN', `publishing to the removed room is refused within a second (${Date.now() - started} ms)`)
  t.equal(await dropped, 'io server disconnect', 'a namespace the policy no longer allows is closed')
  t.same([(await why).code, (await why).event], ['FORBIDDEN', 'connect'], 'and told why')

  // bob left lobby: an HTTP publish there (by a key still allowed) no longer reaches him.
  const publisher = await keyWithPolicy(app, [{ effect: 'allow', namespace: '/chat', actions: ['publish'], rooms: ['*'] }], { scopes: ['publish'] })
  const quiet = eventsWithin(bob, 300)
  const res = await app.inject({ method: 'POST', url: '/v1/publish', headers: { 'x-api-key': publisher.apiKey }, payload: { namespace: '/chat', room: 'lobby', event: 'message', data: 'to lobby' } })
  t.equal(res.statusCode, 202)
  t.same(await quiet, [], 'the socket left the removed room')
  t.same((await ack(bob, 'join', { room: 'lobby' })).error?.code, 'FORBIDDEN', 'and cannot join it again')

  const inRoom = nextEvent(bob, 'message')
  t.equal((await ack(alice, 'message', { room: 'room:1', data: 'kept' })).ok, true, 'rooms still allowed keep working')
  t.equal((await inRoom).data, 'kept')
  t.ok(alice.connected && bob.connected)
})

t.test('moving a key to another policy, or changing its publish limit, applies to its live sockets', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { id, apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const narrow = await createPolicy(app, [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['room:*'] }])
  const url = await listen(app)
  const alice = await connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'alice'))
  t.same(await ack(alice, 'join', { room: 'lobby' }), { ok: true })
  const patch = await app.inject({ method: 'PATCH', url: `/v1/keys/${id}`, headers: adminHeaders, payload: { policyId: narrow, rateLimit: { max: 1, windowSeconds: 60 } } })
  t.equal(patch.statusCode, 200, patch.body)
  const started = Date.now()
  let response
  do {
    response = await ack(alice, 'message', { room: 'lobby', data: 'x' })
  } while (response.ok === true && Date.now() - started < 1000)
  t.equal(response.error?.code, 'FORBIDDEN', `the new policy applies within a second (${Date.now() - started} ms)`)
  t.equal((await ack(alice, 'message', { room: 'room:1', data: 1 })).ok, true, 'what it allows is allowed')
  t.equal((await ack(alice, 'message', { room: 'room:1', data: 2 })).error?.code, 'RATE_LIMITED', 'the new publish limit applies')
})

t.test('POST /v1/publish delivers to a room\'s sockets, under scope and policy', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const users = await keyWithPolicy(app, CHAT_RULES)
  const publisher = await keyWithPolicy(app, [
    { effect: 'allow', namespace: '/chat', actions: ['publish'], rooms: ['lobby'] },
    { effect: 'allow', namespace: '/notification', actions: ['publish'], rooms: ['user:*'] }
  ], { scopes: ['publish'] })
  const url = await listen(app)
  const alice = await connectAs(t, url, '/chat', await tokenFor(app, users.apiKey, 'alice'))
  const bob = await connectAs(t, url, '/chat', await tokenFor(app, users.apiKey, 'bob'))
  t.same(await ack(alice, 'join', { room: 'lobby' }), { ok: true })
  const aliceNotes = await connectAs(t, url, '/notification', await tokenFor(app, users.apiKey, 'alice'))
  const bobNotes = await connectAs(t, url, '/notification', await tokenFor(app, users.apiKey, 'bob'))

  const publish = async (payload: Record<string, unknown>, headers: Record<string, string> = { 'x-api-key': publisher.apiKey }): Promise<LightMyRequestResponse> =>
    await app.inject({ method: 'POST', url: '/v1/publish', headers, payload })

  const inLobby = nextEvent(alice, 'news')
  const notInLobby = eventsWithin(bob, 300)
  const res = await publish({ namespace: '/chat', room: 'lobby', event: 'news', data: { headline: 'hi' } })
  t.equal(res.statusCode, 202, res.body)
  const { id } = res.json<{ id: string }>()
  const message = await inLobby
  t.same(message, { id, room: 'lobby', from: { sub: publisher.id }, data: { headline: 'hi' }, ts: message.ts })
  t.same(await notInLobby, [], 'only the room\'s members')

  // /notification to user:<sub>: every socket of that user, no one else.
  const note = nextEvent(aliceNotes, 'notice')
  const othersQuiet = eventsWithin(bobNotes, 300)
  t.equal((await publish({ namespace: '/notification', room: 'user:alice', event: 'notice', data: 'for alice' })).statusCode, 202)
  t.same((await note).data, 'for alice')
  t.same(await othersQuiet, [])

  // A bearer token of the key publishes too.
  const token = await mintToken(app, publisher.apiKey)
  const byToken = nextEvent(alice, 'news')
  t.equal((await publish({ namespace: '/chat', room: 'lobby', event: 'news', data: 2 }, { authorization: `Bearer ${token}` })).statusCode, 202)
  t.equal((await byToken).data, 2)

  const quiet = Promise.all([eventsWithin(alice, 300), eventsWithin(aliceNotes, 300)])
  const noScope = await createKey(app, { policyId: publisher.policyId, scopes: [] })
  const withoutScope = await publish({ namespace: '/chat', room: 'lobby', event: 'news', data: 'x' }, { 'x-api-key': noScope.apiKey })
  t.same([withoutScope.statusCode, withoutScope.json().code], [403, 'FORBIDDEN'], 'without scope publish')
  const wrongRoom = await publish({ namespace: '/chat', room: 'room:1', event: 'news', data: 'x' })
  t.same([wrongRoom.statusCode, wrongRoom.json().code], [403, 'FORBIDDEN'], 'a room the policy does not allow')
  const wrongNamespace = await publish({ namespace: '/system', room: 'admin', event: 'news', data: 'x' })
  t.same([wrongNamespace.statusCode, wrongNamespace.json().code], [403, 'FORBIDDEN'], 'a namespace the policy does not allow')
  const reserved = await publish({ namespace: '/chat', room: 'lobby', event: 'gateway:error', data: 'x' })
  t.same([reserved.statusCode, reserved.json().code], [403, 'FORBIDDEN'], 'a reserved event, refused as over a socket')
  const unknownNamespace = await publish({ namespace: '/nope', room: 'lobby', event: 'news', data: 'x' })
  t.equal(unknownNamespace.statusCode, 400, 'an unknown namespace')
  const noCredential = await publish({ namespace: '/chat', room: 'lobby', event: 'news', data: 'x' }, {})
  t.equal(noCredential.statusCode, 401)
  t.same(await quiet, [[], []], 'nothing refused was delivered')
})

t.test('an anomaly block raises an alert on /system room admin', async (t) => {
  const app = await buildApp(t, { ...ROOMY_LIMITS, ANOMALY_MAX_FAILURES: '3/minute' })
  const admin = await keyWithPolicy(app, [{ effect: 'allow', namespace: '/system', actions: ['connect', 'subscribe'], rooms: ['admin'] }])
  const bystander = await keyWithPolicy(app, [{ effect: 'allow', namespace: '/system', actions: ['connect'] }])
  const url = await listen(app)
  const watcher = await connectAs(t, url, '/system', await tokenFor(app, admin.apiKey, 'ops'))
  t.same(await ack(watcher, 'join', { room: 'admin' }), { ok: true })
  const outsider = await connectAs(t, url, '/system', await tokenFor(app, bystander.apiKey, 'someone'))

  const alert = nextEvent(watcher, 'alert')
  const outsiderQuiet = eventsWithin(outsider, 500)
  const before = Date.now()
  for (let i = 0; i < 4; i++) {
    const res = await app.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': 'spk_nope_wrong' }, remoteAddress: '198.51.100.7' })
    t.equal(res.statusCode, 401)
  }
  const body = await alert
  t.same(Object.keys(body).sort(), ['at', 'count', 'ip', 'kind'])
  t.same([body.kind, body.ip, body.count], ['ip_blocked', '198.51.100.7', 4])
  t.ok(Date.parse(body.at) >= before - 1000, 'at is the time of the block')
  t.same(await outsiderQuiet, [], 'only the admin room receives alerts')
  const blocked = await app.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': admin.apiKey }, remoteAddress: '198.51.100.7' })
  t.equal(blocked.json().code, 'TEMPORARILY_BLOCKED', 'the address is blocked, even with a good key')
})
