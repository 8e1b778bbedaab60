import t from 'tap'
import type { FastifyInstance } from 'fastify'
import type { Socket as ClientSocket } from 'socket.io-client'
import { adminHeaders, buildFrom, isolatedEnv, listen, realServers } from '../helper.js'
import { TEST_JWT_SECRET } from '../support/jwt.js'
import { ack, connectAs, disconnection, handshakeOutcome, keyWithPolicy, nextEvent, ROOMY_LIMITS, tokenFor } from '../support/sockets.js'

// SPEC §3: the tokens a rotation stops stop on every instance, whichever one answered the rotate.
const CHAT_RULES = [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['lobby'] }]

type Tap = Parameters<typeof buildFrom>[0]

async function rotate (app: FastifyInstance, id: string, gracePeriodSeconds: number): Promise<string> {
  const res = await app.inject({ method: 'POST', url: `/v1/keys/${id}/rotate`, headers: adminHeaders, payload: { gracePeriodSeconds } })
  if (res.statusCode !== 200) throw new Error(`rotate failed: ${res.statusCode} ${res.body}`)
  return res.json<{ apiKey: string }>().apiKey
}

async function publishWith (app: FastifyInstance, token: string): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/v1/publish', headers: { authorization: `Bearer ${token}` }, payload: { namespace: '/chat', room: 'lobby', event: 'message', data: 'over http' } })
  return res.statusCode === 202 ? '202' : `${res.statusCode} ${res.json<{ code: string }>().code}`
}

async function toldAndDisconnected (socket: ClientSocket, timeoutMs: number): Promise<{ code: string, at: number }> {
  const [told] = await Promise.all([nextEvent<{ code: string }>(socket, 'gateway:error', timeoutMs), disconnection(socket, timeoutMs)])
  return { code: told.code, at: Date.now() }
}

t.test('rotation across instances needs the real servers', { skip: realServers ? false : 'TEST_DATABASE_URL and TEST_REDIS_URL are not set' }, async (t) => {
  /** Instances built from one environment: one PostgreSQL database, one Redis prefix, one JWT secret. */
  async function instances (t: Tap): Promise<{ env: Record<string, string>, a: FastifyInstance, b: FastifyInstance, urlB: string }> {
    const env = await isolatedEnv(t, { ...ROOMY_LIMITS, JWT_SECRET: TEST_JWT_SECRET })
    const a = await buildFrom(t, env)
    const b = await buildFrom(t, env)
    return { env, a, b, urlB: await listen(b) }
  }

  t.test('a rotation without grace through A closes the older tokens\' sockets on B and B refuses them', async (t) => {
    const { a, b, urlB } = await instances(t)
    const { id, apiKey } = await keyWithPolicy(a, CHAT_RULES, { scopes: ['publish', 'token:delegate'] })
    const oldToken = await tokenFor(a, apiKey, 'alice')
    const onB = await Promise.all([connectAs(t, urlB, '/chat', oldToken), connectAs(t, urlB, '/chat', await tokenFor(b, apiKey, 'bob'))])
    t.equal(await publishWith(b, oldToken), '202', 'B takes the token before')

    const cuts = Promise.all(onB.map(async (socket) => await toldAndDisconnected(socket, 2000)))
    const started = Date.now()
    const newKey = await rotate(a, id, 0)
    for (const cut of await cuts) {
      t.equal(cut.code, 'TOKEN_REVOKED')
      t.ok(cut.at - started < 1000, `closed on B ${cut.at - started} ms after the rotate call on A`)
    }
    t.equal(await publishWith(b, oldToken), '401 TOKEN_REVOKED', 'REST publish on B')
    t.equal(await handshakeOutcome(t, `${urlB}/chat`, { auth: { token: oldToken } }), 'TOKEN_REVOKED', 'a handshake on B')
    const fresh = await connectAs(t, urlB, '/chat', await tokenFor(a, newKey, 'carol'))
    t.same(await ack(fresh, 'join', { room: 'lobby' }), { ok: true }, 'a token minted after the rotation (on A) works on B')
    t.equal(await publishWith(b, await tokenFor(b, newKey, 'dave')), '202')
  })

  t.test('with a grace, B keeps the older tokens until it ends, then closes their sockets', async (t) => {
    const { a, b, urlB } = await instances(t)
    const { id, apiKey } = await keyWithPolicy(a, CHAT_RULES, { scopes: ['publish', 'token:delegate'] })
    const oldToken = await tokenFor(a, apiKey, 'alice')
    const live = await connectAs(t, urlB, '/chat', oldToken)
    t.same(await ack(live, 'join', { room: 'lobby' }), { ok: true })

    const started = Date.now()
    const newKey = await rotate(a, id, 3)
    const cut = toldAndDisconnected(live, 8000)
    const member = await connectAs(t, urlB, '/chat', await tokenFor(b, newKey, 'bob'))
    t.same(await ack(member, 'join', { room: 'lobby' }), { ok: true })
    const relayed = nextEvent<{ data: string }>(member, 'message')
    t.equal((await ack(live, 'message', { room: 'lobby', data: 'in grace' })).ok, true, 'the older token\'s socket relays inside the grace')
    t.equal((await relayed).data, 'in grace')
    t.equal(await publishWith(b, oldToken), '202', 'and publishes over REST on B')

    const { code, at } = await cut
    t.equal(code, 'TOKEN_REVOKED')
    t.ok(at - started >= 2900 && at - started < 4000, `closed when the grace ended (${at - started} ms after the rotate call)`)
    t.equal(await publishWith(b, oldToken), '401 TOKEN_REVOKED')
    t.equal(await publishWith(a, oldToken), '401 TOKEN_REVOKED')
    t.ok(member.connected, 'the new token\'s socket stays')
  })

  t.test('an instance started after the rotation still closes, at the grace\'s end, a socket an older token opened on it', async (t) => {
    const { env, a } = await instances(t)
    const { id, apiKey } = await keyWithPolicy(a, CHAT_RULES)
    const oldToken = await tokenFor(a, apiKey, 'alice')
    const started = Date.now()
    await rotate(a, id, 4)
    // C was not subscribed when the rotation was broadcast: it learns the cut-off from the key record at the handshake.
    const c = await buildFrom(t, env)
    const live = await connectAs(t, await listen(c), '/chat', oldToken)
    const { code, at } = await toldAndDisconnected(live, 8000)
    t.equal(code, 'TOKEN_REVOKED')
    t.ok(at - started >= 3900 && at - started < 5000, `closed when the grace ended (${at - started} ms after the rotate call)`)
  })
})
