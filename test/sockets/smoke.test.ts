import t from 'tap'
import { buildApp, connect, connected, createKey, createPolicy, listen, mintToken } from '../helper.js'

t.test('two sockets relay through a room', async (t) => {
  const app = await buildApp(t)
  const policyId = await createPolicy(app, [
    { effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['lobby'] }
  ])
  const { apiKey } = await createKey(app, { policyId, scopes: ['token:delegate'] })
  const url = await listen(app)
  const alice = connect(t, `${url}/chat`, { auth: { token: await mintToken(app, apiKey, { sub: 'alice' }) } })
  const bob = connect(t, `${url}/chat`, { auth: { token: await mintToken(app, apiKey, { sub: 'bob' }) } })
  await Promise.all([connected(alice), connected(bob)])
  t.same(await bob.emitWithAck('join', { room: 'lobby' }), { ok: true })
  const received = new Promise((resolve) => bob.once('message', resolve))
  const ack = await alice.emitWithAck('message', { room: 'lobby', data: { text: 'hi' } })
  t.equal(ack.ok, true)
  const msg = await received as { id: string, from: { sub: string }, data: unknown }
  t.equal(msg.id, ack.id)
  t.same(msg.from, { sub: 'alice' })
  t.same(msg.data, { text: 'hi' })
  const refused = await alice.emitWithAck('message', { room: 'elsewhere', data: 1 })
  t.equal(refused.error.code, 'FORBIDDEN')
  const bad = connect(t, `${url}/chat`, { auth: { token: 'nope' } })
  const err = await connected(bad).catch((e) => e)
  t.equal(err.message, 'UNAUTHORIZED')
  t.equal(err.data.code, 'UNAUTHORIZED')
})
