import t from 'tap'
import { buildApp, listen, sleep } from '../helper.js'
import { eventually, keyWithPolicy, replacePolicy, ROOMY_LIMITS, WAIT_MS } from '../support/sockets.js'
import type { GatewaySocket } from '../../src/sockets/types.js'
import { appTokens, CHAT_RULES, FAST, nextMessage, roomSize, sdkClient } from './fixtures.js'

const chatSockets = (app: Awaited<ReturnType<typeof buildApp>>): GatewaySocket[] => [...app.io.of('/chat').sockets.values()] as GatewaySocket[]

t.test('a live connection gets a new token before its token expires (auth:refresh) and stays usable past the first exp', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  // 8 s: the SDK refreshes a quarter of the lifetime before exp, which must leave a loaded machine time for the refresh.
  const client = sdkClient(t, { url, apiKey, tokenRequest: { sub: 'alice', ttl: 8 }, ...FAST })
  const chat = client.namespace('/chat')
  const expired: unknown[] = []
  chat.on('auth:expired', (notice) => { expired.push(notice) })
  await chat.ready()
  const [socket] = chatSockets(app)
  const firstExp = (socket.data.principal.exp ?? 0) * 1000

  await sleep(firstExp - Date.now() + 1500)
  t.match(await chat.publish('message', 'lobby', 'after the first exp'), { ok: true }, 'packets are not refused TOKEN_EXPIRED')
  t.same(chatSockets(app).map((s) => s.id), [socket.id], 'the same socket: no reconnect')
  t.ok((socket.data.principal.exp ?? 0) * 1000 > firstExp, 'the server holds a later exp')
  t.ok(client.seen.tokens >= 2, `refreshed (${client.seen.tokens} tokens)`)
  t.same([expired, client.seen.disconnects, client.seen.errors], [[], [], []], 'never expired, never dropped')
})

t.test('a refresh that fails is retried; auth:expired makes the SDK push the next token without dropping the socket', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const tokens = appTokens(app, apiKey, 'alice', { ttl: 2 })
  let backendDownUntil = 0
  const getToken = async (): Promise<{ accessToken: string, expiresIn: number }> => {
    if (Date.now() < backendDownUntil) throw new Error('backend down')
    return await tokens.getToken()
  }
  const client = sdkClient(t, { url, getToken, ...FAST })
  const chat = client.namespace('/chat')
  const expired = nextMessage(chat, 'auth:expired', WAIT_MS)
  await chat.ready()
  backendDownUntil = Date.now() + 2600
  const [socket] = chatSockets(app)

  const firstExp = socket.data.principal.exp ?? 0
  await expired
  await eventually(() => (socket.data.principal.exp ?? 0) > firstExp, WAIT_MS, 'the server took a new token')
  t.ok(Date.now() >= backendDownUntil, 'once the backend was back')
  t.match(await chat.publish('message', 'lobby', 'x'), { ok: true }, 'packets flow again')
  t.ok(client.seen.errors.some((e) => e.code === 'UNAVAILABLE' && /backend down/.test(e.message)), 'the failed refreshes were reported')
  t.same(chatSockets(app).map((s) => s.id), [socket.id], 'the same socket')
  t.same(client.seen.disconnects, [])
})

t.test('after the gateway closes its sockets, the SDK reconnects with the same token and re-joins its rooms', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const alice = sdkClient(t, { url, apiKey, tokenRequest: { sub: 'alice' }, ...FAST })
  const bobTokens = appTokens(app, apiKey, 'bob')
  const bob = sdkClient(t, { url, getToken: bobTokens.getToken, ...FAST })
  const aliceChat = alice.namespace('/chat')
  const bobChat = bob.namespace('/chat')
  await bobChat.join('lobby')
  await bobChat.join('room:2')
  await bobChat.join('room:3')
  await bobChat.leave('room:3')
  t.same([bobChat.rooms, roomSize(app, '/chat', 'room:3')], [['lobby', 'room:2'], 0], 'a room left is forgotten')
  await aliceChat.ready()
  const before = chatSockets(app).map((s) => s.id)

  // Through the adapter (Redis when the real servers run): the sockets go a moment later.
  app.io.of('/chat').disconnectSockets(true)
  await eventually(() => bob.seen.disconnects.length > 0 && alice.seen.disconnects.length > 0, WAIT_MS, 'disconnected')
  await eventually(() => roomSize(app, '/chat', 'lobby') === 1 && roomSize(app, '/chat', 'room:2') === 1 && aliceChat.connected, WAIT_MS, 're-joined')
  t.same(chatSockets(app).map((s) => s.id).filter((id) => before.includes(id)), [], 'new sockets')
  t.same(bob.seen.disconnects, ['/chat io server disconnect'])
  t.same(bob.seen.connects, ['/chat', '/chat'])
  t.equal(bobTokens.calls(), 1, 'the token still valid is reused')
  t.same(bobChat.rooms, ['lobby', 'room:2'])
  t.equal(roomSize(app, '/chat', 'room:3'), 0, 'the room left is not joined again')

  for (const room of ['lobby', 'room:2']) {
    const delivered = nextMessage(bobChat)
    await aliceChat.publish('message', room, `back in ${room}`)
    t.same([(await delivered).room, (await delivered).data], [room, `back in ${room}`])
  }
})

t.test('after the transport drops, one reconnection brings back every namespace of the client', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const alice = sdkClient(t, { url, apiKey, tokenRequest: { sub: 'alice' }, ...FAST })
  const bob = sdkClient(t, { url, apiKey, tokenRequest: { sub: 'bob' }, ...FAST })
  const bobChat = bob.namespace('/chat')
  const bobNotification = bob.namespace('/notification')
  await bobChat.join('lobby')
  await bobNotification.ready()
  const aliceChat = alice.namespace('/chat')
  await aliceChat.ready()
  t.equal(app.io.engine.clientsCount, 2, 'one connection per client, whatever its namespaces')

  const bobConnection = [...app.io.of('/chat').sockets.values()].find((s) => s.data.principal.sub === 'bob')?.conn
  bobConnection?.close()
  await eventually(() => bob.seen.connects.length === 4 && roomSize(app, '/chat', 'lobby') === 1, WAIT_MS, 'both namespaces back')
  t.same(bob.seen.disconnects.sort(), ['/chat transport close', '/notification transport close'])
  t.equal(app.io.engine.clientsCount, 2, 'still one connection for bob')
  t.ok(bobChat.connected && bobNotification.connected)
  const delivered = nextMessage(bobChat)
  await aliceChat.publish('message', 'lobby', 'again')
  t.equal((await delivered).data, 'again')
  t.same(bob.seen.errors, [])
})

t.test('a token revoked on a live connection: the SDK gets a new token and reconnects', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const tokens = appTokens(app, apiKey, 'alice')
  const client = sdkClient(t, { url, getToken: tokens.getToken, ...FAST })
  const chat = client.namespace('/chat')
  await chat.join('lobby')
  const res = await app.inject({ method: 'POST', url: '/auth/revoke', headers: { authorization: `Bearer ${tokens.last()}` } })
  t.equal(res.statusCode, 204)
  await eventually(() => client.seen.connects.length === 2 && roomSize(app, '/chat', 'lobby') === 1, WAIT_MS, 'reconnected')
  t.same(client.seen.errors.map((e) => [e.code, e.details.event]), [['TOKEN_REVOKED', 'disconnect']])
  t.equal(tokens.calls(), 2, 'a new token was fetched')
  t.equal(client.stopped, undefined)
})

t.test('after a reconnect, a room the policy no longer allows is dropped and reported; the others are joined again', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey, policyId } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const client = sdkClient(t, { url, apiKey, tokenRequest: { sub: 'bob' }, ...FAST })
  const chat = client.namespace('/chat')
  await chat.join('lobby')
  await chat.join('room:1')
  await replacePolicy(app, policyId, [{ ...CHAT_RULES[0], rooms: ['lobby'] }])
  app.io.of('/chat').disconnectSockets(true)
  await eventually(() => client.seen.connects.length === 2 && client.seen.errors.length === 1 && roomSize(app, '/chat', 'lobby') === 1, WAIT_MS, 're-joined')
  t.same(client.seen.errors.map((e) => [e.code, e.details.event, e.details.room]), [['FORBIDDEN', 'join', 'room:1']])
  t.same(chat.rooms, ['lobby'])
  t.equal(roomSize(app, '/chat', 'room:1'), 0)
  t.ok(chat.connected, 'the namespace itself goes on')
})

t.test('a refused auth:refresh (a token of another subject) makes the namespace reconnect, so a handshake decides', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const first = appTokens(app, apiKey, 'alice', { ttl: 2 })
  const then = appTokens(app, apiKey, 'carol')
  const client = sdkClient(t, { url, getToken: async () => first.calls() === 0 ? await first.getToken() : await then.getToken(), ...FAST })
  const chat = client.namespace('/chat')
  await chat.ready()
  t.same(chatSockets(app).map((s) => s.data.principal.sub), ['alice'])
  await eventually(() => client.seen.connects.length === 2, WAIT_MS, 'reconnected')
  t.same(client.seen.errors.map((e) => [e.code, e.details.event]), [['FORBIDDEN', 'auth:refresh']])
  t.same(chatSockets(app).map((s) => s.data.principal.sub), ['carol'], 'the new handshake carried the new token')
  t.equal(client.stopped, undefined)
})

t.test('an auth:refresh refused for a while (socket rate limit) is pushed again on the same socket, not reconnected', async (t) => {
  const app = await buildApp(t, { ...ROOMY_LIMITS, RATE_LIMIT_SOCKET: '5/second' })
  const { apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const client = sdkClient(t, { url, apiKey, tokenRequest: { sub: 'alice', ttl: 4 }, ...FAST })
  const chat = client.namespace('/chat')
  await chat.ready()
  const [socket] = chatSockets(app)
  const firstExp = socket.data.principal.exp ?? 0
  // 'token' is emitted just before the new token is pushed: use up the socket's window first, so the refresh is refused.
  let flooded = false
  client.on('token', () => {
    if (flooded) return
    flooded = true
    for (let i = 0; i < 5; i++) void chat.publish('message', 'lobby', i)
  })

  await eventually(() => (socket.data.principal.exp ?? 0) > firstExp, WAIT_MS, 'the server took the new token')
  t.ok(flooded, 'the refresh went out behind a full window')
  // Timers may fire a millisecond before the window ends: a second refusal is the same story.
  const refusals = client.seen.errors.map((e) => `${e.code} ${e.details.event ?? ''}`)
  t.ok(refusals.length >= 1 && refusals.every((r) => r === 'RATE_LIMITED auth:refresh'), `refused (${refusals.join(', ')}), then accepted`)
  t.same(chatSockets(app).map((s) => s.id), [socket.id], 'the same socket')
  t.same([client.seen.connects, client.seen.disconnects], [['/chat'], []], 'no new handshake')
  t.match(await chat.publish('message', 'lobby', 'x'), { ok: true })
})

t.test('a revoked token whose renewal fails for a moment: the retry fetches a new token, not the refused one again', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, CHAT_RULES)
  const url = await listen(app)
  const tokens = appTokens(app, apiKey, 'alice')
  let failNext = false
  const getToken = async (): Promise<{ accessToken: string, expiresIn: number }> => {
    if (failNext) {
      failNext = false
      throw new Error('backend busy')
    }
    return await tokens.getToken()
  }
  const client = sdkClient(t, { url, getToken, ...FAST })
  const chat = client.namespace('/chat')
  await chat.join('lobby')
  failNext = true
  const res = await app.inject({ method: 'POST', url: '/auth/revoke', headers: { authorization: `Bearer ${tokens.last()}` } })
  t.equal(res.statusCode, 204)
  await eventually(() => client.seen.connects.length === 2 && roomSize(app, '/chat', 'lobby') === 1, WAIT_MS, 'reconnected')
  t.same(client.seen.errors.map((e) => e.code), ['TOKEN_REVOKED', 'UNAVAILABLE'])
  t.equal(tokens.calls(), 2, 'a new token was fetched once the backend answered')
  t.same([client.stopped, client.seen.stopped], [undefined, []])
})
