import { createServer as createHttpServer } from 'node:http'
import { createServer } from 'node:net'
import { Server } from 'socket.io'
import t from 'tap'
import { GatewayError, type RelayedMessage } from '../../src/sdk/index.js'
import { buildApp, listen, mintToken, sleep } from '../helper.js'
import { handToken, TEST_JWT_SECRET, validClaims } from '../support/jwt.js'
import { eventually, keyWithPolicy, revokeKey, ROOMY_LIMITS, WAIT_MS } from '../support/sockets.js'
import { appTokens, auditTrail, CHAT_RULES, FAST, nextMessage, rejection, sdkClient } from './fixtures.js'

t.test('tokens come from the API key or from getToken; a publish is acked and delivered to the room', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const alice = sdkClient(t, { url, apiKey, tokenRequest: { sub: 'alice' }, ...FAST })
  const bobTokens = appTokens(app, apiKey, 'bob')
  // Bob keeps socket.io's default transports (polling, then upgraded): the browser's path.
  const bob = sdkClient(t, { url, getToken: bobTokens.getToken, backoff: FAST.backoff })

  const bobChat = bob.namespace('/chat')
  t.equal(bob.namespace('/chat'), bobChat, 'one object per namespace')
  await bobChat.join('lobby')
  t.same(bobChat.rooms, ['lobby'])
  t.equal(bobTokens.calls(), 1, 'getToken was asked once, before connecting')

  const aliceChat = alice.namespace('/chat')
  const delivered = nextMessage(bobChat)
  const ack = await aliceChat.publish('message', 'lobby', { text: 'hi' })
  t.match(ack, { ok: true, id: String })
  const message = await delivered
  t.same({ ...message, ts: typeof message.ts }, { id: ack.id, room: 'lobby', from: { sub: 'alice' }, data: { text: 'hi' }, ts: 'number' })
  t.same(await auditTrail(app), ['http allowed', 'socket allowed', 'http allowed', 'socket allowed'], 'bob\'s token, bob\'s handshake, alice\'s token (from the SDK), alice\'s handshake')

  // on() returns its own unsubscribe function.
  const seen: unknown[] = []
  const off = bobChat.on('message', (m: RelayedMessage) => { seen.push(m.data) })
  await aliceChat.publish('message', 'lobby', 1)
  await eventually(() => seen.length === 1, WAIT_MS, 'the subscribed handler')
  off()
  const later = nextMessage(bobChat)
  await aliceChat.publish('message', 'lobby', 2)
  t.equal((await later).data, 2, 'still delivered to other handlers')
  t.same(seen, [1], 'not to the unsubscribed one')
  t.same([alice.seen.errors, bob.seen.errors, alice.stopped], [[], [], undefined])
})

t.test('a refused publish or join rejects with a typed GatewayError and changes nothing else', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const client = sdkClient(t, { url, apiKey, tokenRequest: { sub: 'alice' }, ...FAST })
  const chat = client.namespace('/chat')

  const denied = await rejection(chat.publish('message', 'room:readonly-1', 'x'))
  t.ok(denied instanceof GatewayError)
  t.same([denied.code, denied.status, denied.details], ['FORBIDDEN', undefined, { event: 'message', room: 'room:readonly-1', namespace: '/chat' }])
  t.equal((await rejection(chat.publish('typing', 'lobby', 'x'))).code, 'FORBIDDEN', 'an event the policy does not list')
  const join = await rejection(chat.join('elsewhere'))
  t.same([join.code, join.details.event, join.details.room], ['FORBIDDEN', 'join', 'elsewhere'])
  t.same(chat.rooms, [], 'a refused join is not remembered')
  t.equal((await rejection(chat.publish('connect', 'lobby', 'x'))).code, 'VALIDATION_FAILED', 'a Socket.IO reserved name, refused before sending')
  for (const event of ['join', 'leave', 'auth:refresh', 'auth:expired', 'gateway:error', 'shutdown', 'alert', 'error']) {
    const err = await rejection(chat.publish(event, 'lobby', 'x'))
    t.same([err.code, err.message], ['VALIDATION_FAILED', `${event} is a reserved event name`], `${event}: handled by the gateway, refused before sending`)
  }

  t.match(await chat.publish('message', 'lobby', 'still fine'), { ok: true })
  t.ok(chat.connected)
  t.same([client.stopped, client.seen.stopped], [undefined, []], 'a refused packet stops nothing')
})

t.test('a bad or revoked API key stops the client with UNAUTHORIZED or KEY_REVOKED (HTTP 401), tried once', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { id, apiKey } = await keyWithPolicy(app, CHAT_RULES)
  await revokeKey(app, id)
  const url = await listen(app)

  const bad = sdkClient(t, { url, apiKey: 'spk_nope_0123456789', ...FAST })
  const badError = await rejection(bad.namespace('/chat').ready())
  t.same([badError.code, badError.status], ['UNAUTHORIZED', 401])
  t.equal(bad.stopped, badError)

  const revoked = sdkClient(t, { url, apiKey, ...FAST })
  const chat = revoked.namespace('/chat')
  const revokedError = await rejection(chat.ready())
  t.same([revokedError.code, revokedError.status, revokedError.details], ['KEY_REVOKED', 401, {}])
  t.same(revoked.seen.stopped.map((e) => e.code), ['KEY_REVOKED'])
  t.equal((await rejection(chat.publish('message', 'lobby', 'x'))).code, 'KEY_REVOKED', 'operations reject with the reason')

  await sleep(500)
  t.same(await auditTrail(app), ['http refused KEY_REVOKED'], 'one token request each (the unknown key has no id to audit under), no handshake')
})

t.test('a handshake refused KEY_REVOKED stops the client: no reconnect loop', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { id, apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const token = await mintToken(app, apiKey, { sub: 'alice' })
  await revokeKey(app, id)
  const url = await listen(app)
  let calls = 0
  const client = sdkClient(t, { url, getToken: () => { calls++; return token }, ...FAST })
  const err = await rejection(client.namespace('/chat').ready())
  t.same([err.code, err.status, err.details.namespace, err.details.event], ['KEY_REVOKED', undefined, '/chat', 'connect'])
  await sleep(600)
  t.equal(calls, 1)
  t.same((await auditTrail(app)).filter((row) => row.startsWith('socket')), ['socket refused KEY_REVOKED'], 'one handshake')
})

t.test('a live connection whose key is revoked stops with KEY_REVOKED and does not reconnect', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { id, apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const tokens = appTokens(app, apiKey, 'alice')
  const client = sdkClient(t, { url, getToken: tokens.getToken, ...FAST })
  const chat = client.namespace('/chat')
  await chat.join('lobby')
  await revokeKey(app, id)
  await eventually(() => client.seen.stopped.length > 0, WAIT_MS, 'stopped')
  t.same(client.seen.stopped.map((e) => [e.code, e.details.event]), [['KEY_REVOKED', 'disconnect']])
  await sleep(600)
  t.equal(tokens.calls(), 1, 'no new token asked for')
  t.same((await auditTrail(app)).filter((row) => row.startsWith('socket')), ['socket allowed'], 'no handshake after the revocation')
  t.notOk(chat.connected)
  t.equal((await rejection(chat.join('lobby'))).code, 'KEY_REVOKED')
})

t.test('a namespace the policy refuses stops alone (FORBIDDEN); the client and its other namespaces go on', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const client = sdkClient(t, { url, apiKey, tokenRequest: { sub: 'alice' }, ...FAST })
  const system = client.namespace('/system')
  const chat = client.namespace('/chat')
  const err = await rejection(system.ready())
  t.same([err.code, err.details.namespace, err.details.event], ['FORBIDDEN', '/system', 'connect'])
  t.equal(system.stopped, err)
  await chat.ready()
  t.match(await chat.publish('message', 'lobby', 'x'), { ok: true })
  t.same([client.stopped, client.seen.stopped.map((e) => e.details.namespace)], [undefined, ['/system']])
  t.equal(client.seen.tokens, 1, 'one token for both namespaces')
})

t.test('TOKEN_EXPIRED at the handshake gets a new token at once; a new token refused again stops the client', async (t) => {
  const app = await buildApp(t, { ...ROOMY_LIMITS, JWT_SECRET: TEST_JWT_SECRET })
  const { id, apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const now = Math.floor(Date.now() / 1000)
  const expired = handToken({ alg: 'HS256', typ: 'JWT' }, validClaims(id, { sub: 'alice', scope: '', iat: now - 120, exp: now - 60 }), { hmacKey: TEST_JWT_SECRET })
  const fresh = appTokens(app, apiKey, 'alice')
  let calls = 0
  const client = sdkClient(t, { url, getToken: async () => ++calls === 1 ? expired : await fresh.getToken(), ...FAST })
  await client.namespace('/chat').ready()
  t.equal(calls, 2)
  t.same(client.seen.errors.map((e) => e.code), ['TOKEN_EXPIRED'])

  let garbageCalls = 0
  const garbage = sdkClient(t, { url, getToken: () => { garbageCalls++; return 'not-a-jwt' }, ...FAST })
  const err = await rejection(garbage.namespace('/chat').ready())
  t.equal(err.code, 'UNAUTHORIZED')
  await sleep(400)
  t.equal(garbageCalls, 2, 'one new token, then it stopped')
  t.same(garbage.seen.errors.map((e) => e.code), ['UNAUTHORIZED', 'UNAUTHORIZED'])
})

t.test('a handshake refused RATE_LIMITED is tried again after its retryAfter', async (t) => {
  const app = await buildApp(t, { ...ROOMY_LIMITS, RATE_LIMIT_CONNECT: '1/second' })
  const { apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const client = sdkClient(t, { url, apiKey, tokenRequest: { sub: 'alice' }, ...FAST })
  const chat = client.namespace('/chat')
  await chat.ready()
  const notification = client.namespace('/notification')
  await notification.ready()
  const limited = client.seen.errors.filter((e) => e.code === 'RATE_LIMITED')
  t.ok(limited.length >= 1, 'the second handshake was refused first')
  t.ok(limited.every((e) => e.details.namespace === '/notification' && (e.details.retryAfter ?? 0) >= 1))
  t.ok(limited.length <= 2, `not hammered: ${limited.length} refusals (a 50 ms backoff alone would give many more)`)
  t.ok(chat.connected && notification.connected)
})

t.test('no ack within ackTimeoutMs rejects with TIMEOUT; close() rejects what is pending with CLOSED', async (t) => {
  // A port nothing listens on: the transport never opens, so nothing is ever acked.
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as { port: number }
  await new Promise((resolve) => probe.close(resolve))
  const client = sdkClient(t, { url: `http://127.0.0.1:${port}`, getToken: () => 'token', ...FAST, ackTimeoutMs: 300 })
  const chat = client.namespace('/chat')
  const started = Date.now()
  const timeout = await rejection(chat.publish('message', 'lobby', 'x'))
  t.same([timeout.code, timeout.details], ['TIMEOUT', { event: 'message', room: 'lobby', namespace: '/chat' }])
  // Well under 300: a timer may fire a little before 300 ms by the wall clock (it counts from the loop's last tick).
  t.ok(Date.now() - started >= 200, `after the timeout, not at once (${Date.now() - started} ms)`)
  t.ok(client.seen.errors.some((e) => e.code === 'NETWORK_ERROR'), 'the failed transport was reported')

  const pending = [rejection(chat.join('lobby')), rejection(chat.ready())]
  client.close()
  t.same((await Promise.all(pending)).map((e) => e.code), ['CLOSED', 'CLOSED'])
  t.equal(client.stopped?.code, 'CLOSED')
  t.same(client.seen.stopped, [], 'closing is not a failure')
})

t.test('an unknown namespace stops with NOT_FOUND instead of hanging; the client goes on', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  // A hang is what this catches: the bound is generous (a token and a handshake first), the ack timeout longer still.
  const client = sdkClient(t, { url, apiKey, tokenRequest: { sub: 'alice' }, ...FAST, ackTimeoutMs: 20_000 })
  const nope = client.namespace('/nope')
  const hang = async (): Promise<never> => { await sleep(15_000); throw new Error('still waiting after 15 s') }
  const err = await rejection(Promise.race([nope.ready(), hang()]))
  t.same([err.code, err.message, err.details], ['NOT_FOUND', 'Invalid namespace', { namespace: '/nope', event: 'connect' }])
  t.equal(nope.stopped, err)
  t.equal((await rejection(Promise.race([nope.publish('message', 'lobby', 'x'), hang()]))).code, 'NOT_FOUND', 'publish rejects at once')
  t.same([client.seen.stopped, client.seen.errors], [[err], [err]], 'surfaced through stopped and error')
  t.equal(client.stopped, undefined, 'the namespace only')
  t.match(await client.namespace('/chat').publish('message', 'lobby', 'x'), { ok: true })
})

t.test('a publish ack without a string id is rejected, not turned into the id "undefined"', async (t) => {
  const http = createHttpServer()
  const io = new Server(http)
  io.of('/chat').on('connection', (socket) => {
    socket.on('message', (_payload: unknown, ack: (answer: unknown) => void) => { ack({ ok: true }) })
  })
  await new Promise<void>((resolve) => { http.listen(0, '127.0.0.1', resolve) })
  t.teardown(async () => { await io.close() })
  const { port } = http.address() as { port: number }
  const client = sdkClient(t, { url: `http://127.0.0.1:${port}`, getToken: () => 'opaque', ...FAST })
  const err = await rejection(client.namespace('/chat').publish('message', 'lobby', 'x'))
  t.same([err.code, err.message], ['UNAVAILABLE', 'The gateway acked without a message id'])
})
