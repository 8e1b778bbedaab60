import t from 'tap'
import type { FastifyInstance } from 'fastify'
import type { Socket } from 'socket.io-client'
import { adminHeaders, buildApp, connect, connected, listen } from '../helper.js'
import { ack, connectAs, eventsWithin, joinAnnounced, keyWithPolicy, nextEvent, tokenFor, WAIT_MS } from '../support/sockets.js'

const everything = [{ effect: 'allow', namespace: '*', actions: ['connect', 'subscribe', 'publish'] }]

/** `levels` nested arrays around a number, as text: no encoder, the client's included, could send it as a value. */
const deepText = (levels: number): string => `${'['.repeat(levels)}1${']'.repeat(levels)}`
const deepJson = (levels: number): unknown => JSON.parse(deepText(levels))

let nextAckId = 10_000
/**
 * Emits a packet written as text on the client's connection (socket.io-client
 * itself overflows its stack encoding such data), and resolves with the ack
 * the gateway answers, read off the wire.
 */
async function rawEmitWithAck (socket: Socket, namespace: string, packetJson: string): Promise<{ ok?: boolean, error?: { code: string, message: string } }> {
  const id = nextAckId++
  const engine = socket.io.engine as unknown as { write: (data: string) => void, on: (e: string, l: (p: { data?: unknown }) => void) => void, off: (e: string, l: (p: { data?: unknown }) => void) => void }
  const prefix = `3${namespace},${id}`
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { engine.off('packet', listener); reject(new Error(`no ack ${id} within ${WAIT_MS} ms`)) }, WAIT_MS)
    const listener = (packet: { data?: unknown }): void => {
      if (typeof packet.data !== 'string' || !packet.data.startsWith(prefix)) return
      clearTimeout(timer)
      engine.off('packet', listener)
      resolve((JSON.parse(packet.data.slice(prefix.length)) as [never])[0])
    }
    engine.on('packet', listener)
    engine.write(`2${namespace},${id}${packetJson}`)
  })
}

/** The text of `[event, { room, data }]` with `dataJson` as data. */
const eventText = (event: string, room: string, dataJson: string): string => `[${JSON.stringify(event)},{"room":${JSON.stringify(room)},"data":${dataJson}}]`

interface Room { app: FastifyInstance, url: string, apiKey: string, sender: Socket, member: Socket }

/** An app, and two clients of it in room `lobby` of `/chat`: the sender under test and a bystander member. */
async function lobby (t: Tap, env: Record<string, string> = {}): Promise<Room> {
  const app = await buildApp(t, env)
  const { apiKey } = await keyWithPolicy(app, everything)
  const url = await listen(app)
  const [sender, member] = await Promise.all([
    connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'mallory')),
    connectAs(t, url, '/chat', await tokenFor(app, apiKey, 'bob'))
  ])
  await joinAnnounced(member, 'lobby')
  return { app, url, apiKey, sender, member }
}
type Tap = Parameters<typeof buildApp>[0]

/** A round trip through the room still works: what a bystander needs. */
async function roundTrip (t: Tap & { ok: (v: unknown, m: string) => void }, room: Room, what: string): Promise<void> {
  const received = nextEvent<{ data: string }>(room.member, 'message')
  const answer = await ack(room.sender, 'message', { room: 'lobby', data: what })
  t.ok(answer.ok === true && (await received).data === what, `a normal message still goes through (${what})`)
}

t.test('a packet nested 6,000 deep is refused VALIDATION_FAILED; nothing is relayed and the gateway stays up', async (t) => {
  const room = await lobby(t)
  const seen = eventsWithin(room.member, 300)
  const answer = await rawEmitWithAck(room.sender, '/chat', eventText('message', 'lobby', deepText(6000)))
  t.equal(answer.error?.code, 'VALIDATION_FAILED')
  t.match(answer.error?.message, /32 levels/)
  const refusedWithoutAck = nextEvent<{ code: string }>(room.sender, 'gateway:error')
  ;(room.sender.io.engine as unknown as { write: (data: string) => void }).write(`2/chat,${eventText('message', 'lobby', deepText(6000))}`)
  t.equal((await refusedWithoutAck).code, 'VALIDATION_FAILED', 'without an ack: gateway:error')
  t.same(await seen, [], 'the member received nothing')
  t.ok(room.sender.connected, 'the sender keeps its connection')
  await roundTrip(t, room, 'after')
  t.equal((await ack(room.sender, 'message', { room: 'lobby', data: deepJson(31) })).ok, true, 'data 32 levels deep (31 arrays around a number, in an envelope) is accepted')
  t.equal((await ack(room.sender, 'message', { room: 'lobby', data: deepJson(33) })).error?.code, 'VALIDATION_FAILED', '33 levels are not')
})

t.test('SOCKET_MAX_DEPTH sets the limit', async (t) => {
  const room = await lobby(t, { SOCKET_MAX_DEPTH: '4' })
  t.equal((await ack(room.sender, 'message', { room: 'lobby', data: deepJson(4) })).ok, true)
  t.equal((await ack(room.sender, 'message', { room: 'lobby', data: deepJson(5) })).error?.code, 'VALIDATION_FAILED')
})

t.test('deep join, leave and auth:refresh payloads are refused; the socket stays', async (t) => {
  const room = await lobby(t)
  for (const [event, payload] of [['join', `{"room":"r","since":${deepText(6000)}}`], ['leave', `{"room":${deepText(6000)}}`], ['auth:refresh', `{"token":"x","extra":${deepText(6000)}}`]] as const) {
    t.equal((await rawEmitWithAck(room.sender, '/chat', `["${event}",${payload}]`)).error?.code, 'VALIDATION_FAILED', event)
  }
  await roundTrip(t, room, 'after deep envelopes')
})

t.test('a handshake whose auth is nested too deep is refused VALIDATION_FAILED; other clients stay served', async (t) => {
  const room = await lobby(t)
  const token = await tokenFor(room.app, room.apiKey, 'eve')
  // Written on the wire: the client library cannot encode it either.
  const raw = connect(t, room.url, { autoConnect: false })
  raw.io.open()
  await new Promise<void>((resolve) => raw.io.once('open', () => resolve()))
  const engine = raw.io.engine as unknown as { write: (data: string) => void, on: (e: string, l: (p: { data?: unknown }) => void) => void }
  const answer = new Promise<string>((resolve) => engine.on('packet', (p) => { if (typeof p.data === 'string' && p.data.startsWith('4/chat,')) resolve(p.data) }))
  engine.write(`0/chat,{"token":${JSON.stringify(token)},"extra":${deepText(20_000)}}`)
  t.match(JSON.parse((await answer).slice('4/chat,'.length)), { message: 'VALIDATION_FAILED', data: { code: 'VALIDATION_FAILED' } })
  await roundTrip(t, room, 'after a deep handshake')
})

t.test('nothing the client put in the handshake auth is kept on the socket', async (t) => {
  const room = await lobby(t)
  const token = await tokenFor(room.app, room.apiKey, 'eve')
  const socket = await connectAs(t, room.url, '/chat', token, { auth: { token, padding: 'x'.repeat(100_000), nested: { a: [1, 2, 3] } } })
  const [server] = await room.app.io.of('/chat').in('user:eve').fetchSockets()
  t.same(server.handshake.auth, {}, 'auth is empty once the gate has read it')
  t.ok(socket.connected)
})

t.test('binary attachments are refused VALIDATION_FAILED and never reach the room', async (t) => {
  const room = await lobby(t)
  const seen = eventsWithin(room.member, 400)
  t.equal((await ack(room.sender, 'message', { room: 'lobby', data: Buffer.alloc(5000) })).error?.code, 'VALIDATION_FAILED', 'a Buffer in data')
  // The amplification of issue 19: one small attachment referenced by 2,000 placeholders.
  const placeholders = Array.from({ length: 2000 }, () => ({ _placeholder: true, num: 0 }))
  const refused = nextEvent<{ code: string }>(room.sender, 'gateway:error')
  const engine = room.sender.io.engine as unknown as { write: (data: string | Buffer) => void }
  engine.write(`51-/chat,${JSON.stringify(['message', { room: 'lobby', data: placeholders }])}`)
  engine.write(Buffer.alloc(5000))
  t.equal((await refused).code, 'VALIDATION_FAILED', 'placeholders with an attachment')
  t.same(await seen, [], 'the member received nothing, and was not disconnected')
  t.ok(room.member.connected && room.sender.connected)
  await roundTrip(t, room, 'after binary')
})

t.test('event names are limited to 128 characters, and a refusal echoes no more than that', async (t) => {
  const room = await lobby(t)
  const { sender } = room
  const mirror = connect(t, `${room.url}/error`, { auth: { token: await tokenFor(room.app, room.apiKey, 'mallory') } })
  await connected(mirror)
  const mirrored = nextEvent<{ event: string }>(mirror, 'gateway:error')
  const refused = nextEvent<{ code: string, event: string }>(sender, 'gateway:error')
  sender.emit('x'.repeat(900_00), { room: 'lobby', data: 1 })
  const body = await refused
  t.equal(body.code, 'VALIDATION_FAILED')
  t.equal(body.event.length, 128, 'the echo is cut to 128 characters')
  t.equal((await mirrored).event.length, 128, 'and so is the /error mirror')
  t.equal((await ack(sender, 'e'.repeat(128), { room: 'lobby', data: 1 })).ok, true, '128 characters pass')
})

t.test('packets sent together are each measured: a large one does not pass on a small one\'s size', async (t) => {
  const room = await lobby(t, { SOCKET_MAX_PAYLOAD: '1024' })
  const polling = connect(t, `${room.url}/chat`, { transports: ['polling'], auth: { token: await tokenFor(room.app, room.apiKey, 'pat') } })
  await connected(polling)
  // Emitted in one tick, they travel in one polling body, and are decoded together.
  const [large, small] = await Promise.all([
    polling.timeout(WAIT_MS).emitWithAck('message', { room: 'lobby', data: 'x'.repeat(5000) }),
    polling.timeout(WAIT_MS).emitWithAck('message', { room: 'lobby', data: 'y' })
  ])
  t.equal(large.error?.code, 'PAYLOAD_TOO_LARGE', 'the large one is refused')
  t.equal(small.ok, true, 'the small one passes')
})

t.test('SOCKET_MAX_ROOMS caps the rooms of one socket; its own rooms are not counted', async (t) => {
  const room = await lobby(t, { SOCKET_MAX_ROOMS: '3' })
  const { sender } = room
  for (const name of ['a', 'b', 'c']) t.equal((await ack(sender, 'join', { room: name })).ok, true, `join ${name}`)
  const refused = await ack(sender, 'join', { room: 'd' })
  t.equal(refused.error?.code, 'RATE_LIMITED')
  t.match(refused.error?.message, /at most 3 rooms/)
  t.equal((await ack(sender, 'join', { room: 'a' })).ok, true, 'joining a room it is in already is no new room')
  await ack(sender, 'leave', { room: 'b' })
  t.equal((await ack(sender, 'join', { room: 'd' })).ok, true, 'after a leave there is room again')
  t.equal((await ack(sender, 'join', { room: 'user:mallory' })).ok, true, 'its own user room is not counted')
})

t.test('joining one\'s own user room is the policy\'s call; leaving it never is', async (t) => {
  const app = await buildApp(t)
  const url = await listen(app)
  const allowed = await keyWithPolicy(app, [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe'], rooms: ['user:${sub}'] }])
  const denied = await keyWithPolicy(app, [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe'], rooms: ['lobby'] }])
  const alice = await connectAs(t, url, '/chat', await tokenFor(app, allowed.apiKey, 'alice'))
  const carol = await connectAs(t, url, '/chat', await tokenFor(app, denied.apiKey, 'carol'))
  t.same(await ack(alice, 'join', { room: 'user:alice' }), { ok: true }, 'allowed by the policy: ok')
  t.equal((await ack(carol, 'join', { room: 'user:carol' })).error?.code, 'FORBIDDEN', 'not allowed by the policy: refused')
  t.equal((await ack(alice, 'join', { room: 'user:bob' })).error?.code, 'FORBIDDEN', 'another user\'s room stays refused')
  t.equal((await ack(alice, 'leave', { room: 'user:alice' })).error?.code, 'FORBIDDEN', 'leaving it is refused')
  const [server] = await app.io.of('/chat').in('user:alice').fetchSockets()
  t.ok(server.rooms.has('user:alice'), 'still in it')
})

t.test('an error thrown while relaying is answered UNAVAILABLE, counted and alerted; the process goes on', async (t) => {
  const room = await lobby(t)
  const admin = connect(t, `${room.url}/system`, { auth: { token: await tokenFor(room.app, room.apiKey, 'ops') } })
  await connected(admin)
  await ack(admin, 'join', { room: 'admin' })
  const alert = nextEvent<{ kind: string }>(admin, 'alert')
  // A stand-in for a bug below the gateway: the namespace's broadcast throws.
  const adapter = room.app.io.of('/chat').adapter
  const broadcast = adapter.broadcast.bind(adapter)
  adapter.broadcast = () => { throw new Error('simulated bug') }
  const answer = await ack(room.sender, 'message', { room: 'lobby', data: 'boom' })
  t.equal(answer.error?.code, 'UNAVAILABLE')
  t.equal((await alert).kind, 'internal_error')
  const metrics = await room.app.inject({ url: '/metrics' })
  t.match(metrics.body, /gateway_internal_errors_total\{where="packet"\} 1/)
  adapter.broadcast = broadcast
  await roundTrip(t, room, 'after the fault')
})

t.test('REST bodies nested too deep, or carrying prototype keys, are 400 with what was refused', async (t) => {
  const app = await buildApp(t)
  const { apiKey } = await keyWithPolicy(app, everything, { scopes: ['publish'] })
  const deepBody = `{"namespace":"/chat","room":"lobby","event":"message","data":${deepText(6000)}}`
  const publish = await app.inject({ method: 'POST', url: '/v1/publish', headers: { 'x-api-key': apiKey, 'content-type': 'application/json' }, payload: deepBody })
  t.same([publish.statusCode, publish.json().code], [400, 'VALIDATION_FAILED'], 'a deep publish body')
  t.match(publish.json().message, /nested more than 32 levels/)
  const keys = await app.inject({ method: 'POST', url: '/v1/keys', headers: { ...adminHeaders, 'content-type': 'application/json' }, payload: `{"name":"k","scopes":${'['.repeat(5000)}${']'.repeat(5000)}}` })
  t.same([keys.statusCode, keys.json().code], [400, 'VALIDATION_FAILED'], 'a deep admin body')
  const proto = await app.inject({ method: 'POST', url: '/v1/keys', headers: { ...adminHeaders, 'content-type': 'application/json' }, payload: '{"name":"k","__proto__":{"scopes":["admin"]}}' })
  t.same([proto.statusCode, proto.json().code], [400, 'VALIDATION_FAILED'])
  t.match(proto.json().message, /__proto__/, 'the message says what is refused')
  const token = await app.inject({ method: 'POST', url: '/auth/token', headers: { 'content-type': 'application/json' }, payload: `{"apiKey":"x","ttl":${'['.repeat(5000)}${']'.repeat(5000)}}` })
  t.same([token.statusCode, token.json().code], [401, 'UNAUTHORIZED'], 'without a credential, /auth/token stays 401 whatever the body')
  t.equal((await app.inject({ url: '/health/live' })).statusCode, 200)
})
