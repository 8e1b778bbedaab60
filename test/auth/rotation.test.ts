import t from 'tap'
import type { FastifyInstance } from 'fastify'
import type { Socket as ClientSocket } from 'socket.io-client'
import { adminHeaders, buildApp, listen, sleep } from '../helper.js'
import { outcome, refusalCode, requestToken } from '../support/auth.js'
import { decodeToken, handToken, TEST_JWT_SECRET, validClaims } from '../support/jwt.js'
import { ack, connectAs, disconnection, eventsWithin, handshakeOutcome, keyWithPolicy, nextEvent, ROOMY_LIMITS, tokenFor } from '../support/sockets.js'

// SPEC §3: a rotation stops, at the end of its grace, the old secret and every token minted before it.
const ENV = { ...ROOMY_LIMITS, JWT_SECRET: TEST_JWT_SECRET }
const CHAT_RULES = [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['lobby', 'user:${sub}'] }]

async function rotate (app: FastifyInstance, id: string, gracePeriodSeconds?: number): Promise<string> {
  const res = await app.inject({ method: 'POST', url: `/v1/keys/${id}/rotate`, headers: adminHeaders, payload: gracePeriodSeconds === undefined ? {} : { gracePeriodSeconds } })
  if (res.statusCode !== 200) throw new Error(`rotate failed: ${res.statusCode} ${res.body}`)
  return res.json<{ apiKey: string }>().apiKey
}

/** POST /v1/publish with a bearer token to /chat lobby: `202`, or `401 TOKEN_REVOKED` and the like. */
async function publishWith (app: FastifyInstance, token: string): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/v1/publish', headers: { authorization: `Bearer ${token}` }, payload: { namespace: '/chat', room: 'lobby', event: 'message', data: 'over http' } })
  return res.statusCode === 202 ? '202' : `${res.statusCode} ${res.json<{ code: string }>().code}`
}

/** The gateway:error a socket is told before its forced disconnect, and the disconnect's reason. */
async function toldAndDisconnected (socket: ClientSocket, timeoutMs: number): Promise<{ code: string, event: string, reason: string, at: number }> {
  const [{ code, event }, reason] = await Promise.all([nextEvent<{ code: string, event: string }>(socket, 'gateway:error', timeoutMs), disconnection(socket, timeoutMs)])
  return { code, event, reason, at: Date.now() }
}

const publisherKey = async (app: FastifyInstance): Promise<{ id: string, apiKey: string }> => await keyWithPolicy(app, CHAT_RULES, { scopes: ['publish', 'token:delegate'] })

t.test('rotation without grace: older tokens stop at once, on REST, at the handshake, on refresh and on live sockets', async (t) => {
  const app = await buildApp(t, ENV)
  const url = await listen(app)
  const { id, apiKey } = await publisherKey(app)
  const other = await publisherKey(app)
  const oldToken = await tokenFor(app, apiKey, 'alice')
  const oldBobToken = await tokenFor(app, apiKey, 'bob')
  const live = await connectAs(t, url, '/chat', oldToken)
  const otherKeySocket = await connectAs(t, url, '/chat', await tokenFor(app, other.apiKey, 'dave'))
  t.same(await ack(live, 'join', { room: 'lobby' }), { ok: true })
  t.equal(await publishWith(app, oldToken), '202', 'the token publishes before the rotation')

  const cut = toldAndDisconnected(live, 1000)
  const started = Date.now()
  const newKey = await rotate(app, id)
  const told = await cut
  t.same([told.code, told.event, told.reason], ['TOKEN_REVOKED', 'disconnect', 'io server disconnect'], 'the live socket is told TOKEN_REVOKED, then closed')
  t.ok(told.at - started < 1000, `closed ${told.at - started} ms after the rotate call`)
  t.ok(otherKeySocket.connected, 'another key\'s socket stays')

  t.equal(await publishWith(app, oldToken), '401 TOKEN_REVOKED', 'REST publish with an older token')
  t.equal(await handshakeOutcome(t, `${url}/chat`, { auth: { token: oldToken } }), 'TOKEN_REVOKED', 'a new connection with an older token')
  t.equal(await refusalCode(app.authenticateToken(oldBobToken, '127.0.0.1')), 'TOKEN_REVOKED', 'every token minted before, not only the one in use')

  // Tokens minted after the rotation work everywhere, and cannot be swapped back to an older one.
  const bob = await connectAs(t, url, '/chat', await tokenFor(app, newKey, 'bob'))
  const carol = await connectAs(t, url, '/chat', await tokenFor(app, newKey, 'carol'))
  for (const socket of [bob, carol]) t.same(await ack(socket, 'join', { room: 'lobby' }), { ok: true })
  const heard = nextEvent<{ data: string }>(carol, 'message')
  t.equal((await ack(bob, 'message', { room: 'lobby', data: 'after' })).ok, true, 'a new token relays')
  t.equal((await heard).data, 'after')
  t.equal(await publishWith(app, await tokenFor(app, newKey, 'erin')), '202', 'a new token publishes over REST')
  const refresh = await ack(bob, 'auth:refresh', { token: oldBobToken })
  t.same([refresh.ok, refresh.error?.code], [false, 'TOKEN_REVOKED'], 'auth:refresh with an older token of the same subject is refused')
  t.ok(bob.connected, 'the refused refresh keeps the socket on its current token')
})

t.test('rotation with a grace: older tokens work until it ends, then stop everywhere at once', async (t) => {
  const app = await buildApp(t, ENV)
  const url = await listen(app)
  const { id, apiKey } = await publisherKey(app)
  const oldToken = await tokenFor(app, apiKey, 'alice')
  const early = await connectAs(t, url, '/chat', oldToken)
  t.same(await ack(early, 'join', { room: 'lobby' }), { ok: true })

  const started = Date.now()
  const newKey = await rotate(app, id, 3)
  // Inside the 3 s grace (these take a few hundred ms): the older token publishes, connects and relays.
  t.equal(await publishWith(app, oldToken), '202', 'REST publish inside the grace')
  const late = await connectAs(t, url, '/chat', oldToken)
  const inGrace = await tokenFor(app, apiKey, 'frank')
  const member = await connectAs(t, url, '/chat', await tokenFor(app, newKey, 'bob'))
  t.same(await ack(member, 'join', { room: 'lobby' }), { ok: true })
  const relayed = nextEvent<{ data: string }>(member, 'message')
  t.equal((await ack(early, 'message', { room: 'lobby', data: 'in grace' })).ok, true, 'a live socket of an older token relays inside the grace')
  t.equal((await relayed).data, 'in grace')

  const cuts = await Promise.all([early, late].map(async (socket) => await toldAndDisconnected(socket, 8000)))
  for (const cut of cuts) {
    t.same([cut.code, cut.event], ['TOKEN_REVOKED', 'disconnect'])
    t.ok(cut.at - started >= 2900, `not before the grace ended (${cut.at - started} ms after the rotate call)`)
    t.ok(cut.at - started < 4000, `within a second of its end (${cut.at - started} ms)`)
  }
  t.equal(await publishWith(app, oldToken), '401 TOKEN_REVOKED', 'REST publish after the grace')
  t.equal(await handshakeOutcome(t, `${url}/chat`, { auth: { token: oldToken } }), 'TOKEN_REVOKED', 'a new connection after the grace')
  t.equal(await refusalCode(app.authenticateToken(inGrace, '127.0.0.1')), 'TOKEN_REVOKED', 'a token minted from the old secret during the grace stops with it')
  t.ok(member.connected, 'the socket of a new token stays')
  t.equal((await ack(member, 'message', { room: 'lobby', data: 'after' })).ok, true)
})

t.test('a rotation during another\'s grace stops the oldest tokens at once and keeps the previous ones for its own grace', async (t) => {
  const app = await buildApp(t, ENV)
  const url = await listen(app)
  const { id, apiKey: first } = await publisherKey(app)
  const firstToken = await tokenFor(app, first, 'alice')
  const firstSocket = await connectAs(t, url, '/chat', firstToken)
  const second = await rotate(app, id, 60)
  const secondToken = await tokenFor(app, second, 'bob')
  const secondSocket = await connectAs(t, url, '/chat', secondToken)
  t.equal(decodeToken(secondToken).payload.kgen, 1, 'a token carries the generation of the secret that minted it')

  const firstCut = toldAndDisconnected(firstSocket, 1000)
  const third = await rotate(app, id, 60)
  t.equal((await firstCut).code, 'TOKEN_REVOKED', 'the first generation\'s socket is closed at the second rotation')
  t.equal(await refusalCode(app.authenticateToken(firstToken, '127.0.0.1')), 'TOKEN_REVOKED')
  t.equal(await refusalCode(app.authenticateToken(secondToken, '127.0.0.1')), 'ALLOWED', 'the second generation is inside its grace')
  t.same(await eventsWithin(secondSocket, 300), [], 'and its socket hears nothing')
  t.ok(secondSocket.connected)

  const secondCut = toldAndDisconnected(secondSocket, 1000)
  const fourth = await rotate(app, id)
  t.equal((await secondCut).code, 'TOKEN_REVOKED', 'a rotation without grace ends the previous one\'s grace')
  t.equal(outcome(await requestToken(app, third)), '401 UNAUTHORIZED', 'the third secret no longer mints')
  t.equal(await refusalCode(app.authenticateToken(await tokenFor(app, fourth, 'carol'), '127.0.0.1')), 'ALLOWED')
})

t.test('a token minted in the same second as the rotation is judged by the secret that minted it, not by its iat', async (t) => {
  const app = await buildApp(t, ENV)
  let before = ''
  let after = ''
  // Start just after a second boundary, so minting, rotating and minting again (≈ 50 ms of work) fit in one
  // second; a busy machine may still cross one, hence a few tries.
  for (let attempt = 0; attempt < 5 && (attempt === 0 || decodeToken(before).payload.iat !== decodeToken(after).payload.iat); attempt++) {
    const { id, apiKey } = await publisherKey(app)
    await sleep(1000 - (Date.now() % 1000) + 5)
    before = await tokenFor(app, apiKey, 'alice')
    after = await tokenFor(app, await rotate(app, id), 'alice')
  }
  t.equal(decodeToken(before).payload.iat, decodeToken(after).payload.iat, 'both carry the same iat')
  t.equal(await refusalCode(app.authenticateToken(before, '127.0.0.1')), 'TOKEN_REVOKED', 'the one minted before is stopped')
  t.equal(await refusalCode(app.authenticateToken(after, '127.0.0.1')), 'ALLOWED', 'the one minted after is not')
})

t.test('a generation claim the gateway did not mint is refused UNAUTHORIZED', async (t) => {
  const app = await buildApp(t, ENV)
  const { id } = await publisherKey(app)
  const signed = (kgen: unknown): string => handToken({ alg: 'HS256', typ: 'JWT' }, validClaims(id, { scope: 'publish', kgen }), { hmacKey: TEST_JWT_SECRET })
  t.equal(await refusalCode(app.authenticateToken(signed(0), '127.0.0.1')), 'ALLOWED', 'the key\'s current generation')
  t.equal(await refusalCode(app.authenticateToken(signed(3), '127.0.0.1')), 'UNAUTHORIZED', 'a generation the key never had')
  t.equal(await refusalCode(app.authenticateToken(signed(-1), '127.0.0.1')), 'UNAUTHORIZED', 'a negative one')
  t.equal(await refusalCode(app.authenticateToken(signed('0'), '127.0.0.1')), 'UNAUTHORIZED', 'a string')
  t.equal(await refusalCode(app.authenticateToken(handToken({ alg: 'HS256', typ: 'JWT' }, validClaims(id, { scope: 'publish' }), { hmacKey: TEST_JWT_SECRET }), '127.0.0.1')), 'ALLOWED',
    'none at all: a token minted before generations existed belongs to the first secret')
  await rotate(app, id)
  t.equal(await refusalCode(app.authenticateToken(handToken({ alg: 'HS256', typ: 'JWT' }, validClaims(id, { scope: 'publish' }), { hmacKey: TEST_JWT_SECRET }), '127.0.0.1')), 'TOKEN_REVOKED',
    'and stops at that secret\'s rotation')
})
