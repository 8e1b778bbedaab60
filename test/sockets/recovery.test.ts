import t from 'tap'
import type { Socket } from 'socket.io-client'
import type { FastifyInstance } from 'fastify'
import { adminHeaders, buildFrom, connect, connected, createKey, createPolicy, listen, mintToken, sleep, isolatedEnv } from '../helper.js'
import { keyRoom } from '../../src/protocol/rooms.js'
import { eventually, WAIT_MS } from '../support/sockets.js'

const chatRules = (rooms: string[]): unknown[] => [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms }]

/**
 * Socket.IO's connection-state recovery needs an adapter that keeps sessions:
 * the in-memory one (this app has PostgreSQL but no Redis) or the Redis
 * Streams adapter; the Redis pub/sub adapter has none.
 */
async function buildWithoutRedis (t: Parameters<typeof isolatedEnv>[0]): Promise<FastifyInstance> {
  // Off by default (SOCKET_RECOVERY_SECONDS=0): these tests are of the recovery kept for those who turn it on.
  const env = await isolatedEnv(t, { SOCKET_RECOVERY_SECONDS: '120' })
  delete env.REDIS_URL
  return await buildFrom(t, env)
}

/** Drops the transport without a goodbye, as a network cut does; the client reconnects and asks to recover. */
async function cutAndReconnect (socket: Socket): Promise<'recovered' | 'fresh' | string> {
  const outcome = new Promise<string>((resolve) => {
    socket.once('connect', () => resolve(socket.recovered ? 'recovered' : 'fresh'))
    socket.io.once('reconnect_error', (err) => resolve(`error:${err.message}`))
    socket.once('connect_error', (err) => resolve(err.message))
  })
  socket.io.engine.close()
  return await outcome
}

t.test('a recovered session is authenticated again and keeps only the rooms its policy still allows', async (t) => {
  const app = await buildWithoutRedis(t)
  const policyId = await createPolicy(app, chatRules(['lobby', 'room:*']))
  const { apiKey } = await createKey(app, { policyId, scopes: ['token:delegate'] })
  const url = await listen(app)
  const options = { reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100 }
  // The sender has a policy of its own, so narrowing the member's leaves it free to publish to room:a.
  const senderKey = await createKey(app, { policyId: await createPolicy(app, chatRules(['lobby', 'room:*'])) })
  const [memberToken, senderToken] = [await mintToken(app, apiKey, { sub: 'member' }), await mintToken(app, senderKey.apiKey)]
  const member = connect(t, `${url}/chat`, { ...options, auth: { token: memberToken } })
  const sender = connect(t, `${url}/chat`, { auth: { token: senderToken } })
  await Promise.all([connected(member), connected(sender)])
  await member.emitWithAck('join', { room: 'room:a' })
  await member.emitWithAck('join', { room: 'lobby' })
  // Recovery resumes from the last broadcast the client received: give it one.
  const first = new Promise((resolve) => member.once('message', resolve))
  await sender.emitWithAck('message', { room: 'lobby', data: 0 })
  await first

  // Narrow the policy, then cut the member's connection before it hears of it.
  const narrowed = await app.inject({ method: 'PUT', url: `/v1/policies/${policyId}`, headers: adminHeaders, payload: { name: 'narrowed', rules: chatRules(['lobby']) } })
  t.equal(narrowed.statusCode, 200)
  t.equal(await cutAndReconnect(member), 'recovered')
  await sleep(100)
  const got: string[] = []
  let lastSeen = false
  member.on('message', (m: { room: string, data: unknown }) => { if (m.data === 'last') lastSeen = true; else got.push(m.room) })
  await sender.emitWithAck('message', { room: 'lobby', data: 1 })
  t.equal((await sender.emitWithAck('message', { room: 'room:a', data: 2 })).ok, true)
  // One more to lobby: a client gets its messages in order, so once this one is in, room:a's would be too.
  await sender.emitWithAck('message', { room: 'lobby', data: 'last' })
  await eventually(() => lastSeen, WAIT_MS, 'the last message').catch(() => {})
  t.same(got, ['lobby'], 'room:a was left on recovery; lobby kept')
})

t.test('a recovered session whose token was revoked meanwhile is refused', async (t) => {
  const app = await buildWithoutRedis(t)
  const policyId = await createPolicy(app, chatRules(['lobby']))
  const { apiKey } = await createKey(app, { policyId })
  const url = await listen(app)
  const token = await mintToken(app, apiKey)
  // A reconnection delay long enough to revoke the token while the client is away.
  const socket = connect(t, `${url}/chat`, { reconnection: true, reconnectionDelay: 400, reconnectionDelayMax: 400, randomizationFactor: 0, reconnectionAttempts: 1, auth: { token } })
  await connected(socket)
  // A broadcast received gives the client an offset, so its reconnection asks to recover the session.
  const sender = connect(t, `${url}/chat`, { auth: { token: await mintToken(app, apiKey) } })
  await connected(sender)
  await socket.emitWithAck('join', { room: 'lobby' })
  const first = new Promise((resolve) => socket.once('message', resolve))
  await sender.emitWithAck('message', { room: 'lobby', data: 1 })
  await first
  const outcome = cutAndReconnect(socket)
  const revoked = await app.inject({ method: 'POST', url: '/auth/revoke', headers: { authorization: `Bearer ${token}` } })
  t.equal(revoked.statusCode, 204)
  t.equal(await outcome, 'TOKEN_REVOKED', 'the recovery attempt passes the gate again, and is refused')
})

t.test('a session id presented under another key recovers nothing of that session', async (t) => {
  const app = await buildWithoutRedis(t)
  const policyId = await createPolicy(app, chatRules(['secret', 'lobby']))
  const owner = await createKey(app, { policyId, scopes: ['token:delegate'] })
  const thief = await createKey(app, { policyId, scopes: ['token:delegate'] })
  const url = await listen(app)
  const member = connect(t, `${url}/chat`, { auth: { token: await mintToken(app, owner.apiKey, { sub: 'alice' }) } })
  const sender = connect(t, `${url}/chat`, { auth: { token: await mintToken(app, owner.apiKey, { sub: 'sender' }) } })
  await Promise.all([connected(member), connected(sender)])
  await member.emitWithAck('join', { room: 'secret' })
  const first = new Promise((resolve) => member.once('message', resolve))
  await sender.emitWithAck('message', { room: 'secret', data: 'before' })
  await first
  const { _pid: pid, _lastOffset: offset } = member as unknown as { _pid: string, _lastOffset: string }
  t.ok(typeof pid === 'string' && typeof offset === 'string', 'the client holds a private session id and an offset')
  member.io.engine.close()
  await sleep(50)
  await sender.emitWithAck('message', { room: 'secret', data: 'missed' })
  // Another key's token with the stolen session id: it connects (its own policy allows the namespace) but gets nothing.
  const frames: string[] = []
  const stranger = connect(t, `${url}/chat`, { autoConnect: false, auth: { token: await mintToken(app, thief.apiKey, { sub: 'alice' }), pid, offset } })
  stranger.io.on('open', () => { stranger.io.engine.on('packet', (p: { data?: unknown }) => { if (typeof p.data === 'string') frames.push(p.data) }) })
  stranger.connect()
  await connected(stranger)
  await sleep(200)
  t.notOk(frames.some((f) => f.includes('missed')), `none of the session's missed messages (${frames.length} frames)`)
  const [server] = await app.io.of('/chat').in(keyRoom(thief.id)).fetchSockets()
  t.notOk(server.rooms.has('secret'), 'and none of its rooms')
})

t.test('what recovery keeps is bounded, empty rooms included', async (t) => {
  const env = await isolatedEnv(t, { RATE_LIMIT_SOCKET: '100000/second', SOCKET_RECOVERY_SECONDS: '120' })
  delete env.REDIS_URL
  const app = await buildFrom(t, env)
  const { apiKey } = await createKey(app, { policyId: await createPolicy(app, chatRules(['void'])) })
  const url = await listen(app)
  const sender = connect(t, `${url}/chat`, { auth: { token: await mintToken(app, apiKey) } })
  await connected(sender)
  const data = 'x'.repeat(60_000)
  // 400 packets of 60 KB to a room nobody is in: 24 MB sent.
  for (let i = 0; i < 400; i += 20) {
    await Promise.all(Array.from({ length: 20 }, async () => await sender.timeout(5000).emitWithAck('message', { room: 'void', data })))
  }
  const stored = (app.io.of('/chat').adapter as unknown as { packets: Array<{ data: unknown[] }> }).packets
  const bytes = stored.reduce((sum, p) => sum + JSON.stringify(p.data).length, 0)
  t.ok(bytes <= 16 * 1024 * 1024 + 61_000, `the namespace keeps ${(bytes / 1e6).toFixed(1)} MB of 24 MB sent (bound 16 MiB)`)
  t.ok(stored.length > 0, 'recovery still keeps the recent ones')
  // Small packets are bounded by count: the store holds parsed objects, which weigh more than their frames.
  for (let i = 0; i < 2400; i += 100) {
    await Promise.all(Array.from({ length: 100 }, async () => await sender.timeout(5000).emitWithAck('message', { room: 'void', data: 'small' })))
  }
  t.ok(stored.length <= 2000, `${stored.length} packets kept of 2,400 small ones sent (bound 2,000)`)
})

t.test('Socket.IO\'s own recovery is off by default: a cut session comes back fresh (join with since recovers instead)', async (t) => {
  const env = await isolatedEnv(t)
  delete env.REDIS_URL
  const app = await buildFrom(t, env)
  const { apiKey } = await createKey(app, { policyId: await createPolicy(app, chatRules(['lobby'])) })
  const url = await listen(app)
  const member = connect(t, `${url}/chat`, { reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100, auth: { token: await mintToken(app, apiKey) } })
  await connected(member)
  await member.emitWithAck('join', { room: 'lobby' })
  t.equal(await cutAndReconnect(member), 'fresh')
  t.notOk(member.recovered)
})
