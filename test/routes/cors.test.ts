import t from 'tap'
import { buildApp } from '../helper.js'

t.test('a browser on an allowed origin may read Retry-After (the SDK waits by it)', async (t) => {
  const app = await buildApp(t, { CORS_ORIGINS: 'https://app.example' })
  const res = await app.inject({ method: 'POST', url: '/auth/token', headers: { origin: 'https://app.example' } })
  t.equal(res.statusCode, 401)
  t.equal(res.headers['access-control-allow-origin'], 'https://app.example')
  t.match(String(res.headers['access-control-expose-headers']), /Retry-After/i)
  const foreign = await app.inject({ method: 'POST', url: '/auth/token', headers: { origin: 'https://evil.example' } })
  t.notOk(foreign.headers['access-control-allow-origin'], 'no CORS grant for another origin')
})
