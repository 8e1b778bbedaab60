import t from 'tap'
import { GatewayError } from '../../src/sdk/index.js'
import { buildApp, listen } from '../helper.js'
import { keyWithPolicy, ROOMY_LIMITS } from '../support/sockets.js'
import { answerJson, createRoute, httpBackend } from '../support/backends.js'
import { FAST, rejection, sdkClient } from './fixtures.js'

const RULES = [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], events: ['order:*', 'message'], rooms: ['lobby'] }]

t.test('SDK: publish resolves with the backend\'s data, request with the data alone, and rejects with its refusal', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, RULES)
  const url = await listen(app)
  const backend = await httpBackend(t, (call, res) => {
    if (call.event.data.quantity <= 0) return answerJson(400, { error: { code: 'VALIDATION_FAILED', message: 'quantity must be positive' } })(call, res)
    answerJson(200, { data: { orderId: 'o-1', quantity: call.event.data.quantity } })(call, res)
  })
  await createRoute(app, { events: ['order:*'], upstream: { type: 'http', url: backend.url } })
  const chat = sdkClient(t, { url, apiKey, tokenRequest: { sub: 'alice' }, ...FAST }).namespace('/chat')
  await chat.ready()

  const published = await chat.publish<{ orderId: string }>('order:create', 'lobby', { quantity: 2 })
  t.same(published, { ok: true, id: published.id, data: { orderId: 'o-1', quantity: 2 } })
  const answer = await chat.request<{ orderId: string, quantity: number }>('order:create', 'lobby', { quantity: 3 })
  t.same(answer, { orderId: 'o-1', quantity: 3 })
  const refused = await rejection(chat.request('order:create', 'lobby', { quantity: 0 }))
  t.ok(refused instanceof GatewayError)
  t.match(refused, { code: 'VALIDATION_FAILED', message: 'quantity must be positive' })

  const relayed = await chat.publish('message', 'lobby', 'hi')
  t.notOk('data' in relayed, 'an event no route takes has no data in its ack')
  t.equal(await chat.request('message', 'lobby', 'hi'), undefined, 'request on a relayed event resolves with no answer')
})
