import t from 'tap'
import { adminHeaders, buildApp, createKey } from '../helper.js'

t.test('a key mints a token that authenticates', async (t) => {
  const app = await buildApp(t)
  const ready = await app.inject('/health/ready')
  t.equal(ready.statusCode, 200)
  const { apiKey } = await createKey(app, { scopes: ['publish'] })
  const res = await app.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': apiKey } })
  t.equal(res.statusCode, 200, res.body)
  const body = res.json()
  t.equal(body.tokenType, 'Bearer')
  const principal = await app.authenticateToken(body.accessToken, '127.0.0.1')
  t.same(principal.scopes, ['publish'])
  const list = await app.inject({ url: '/v1/keys', headers: adminHeaders })
  t.equal(list.json().items.length, 1)
})
