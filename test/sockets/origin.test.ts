import t from 'tap'
import { buildApp, connect, createKey, createPolicy, listen, mintToken } from '../helper.js'

t.test('a browser on a foreign origin can read the polling refusal, never with credentials', async (t) => {
  const app = await buildApp(t, { CORS_ORIGINS: 'https://app.example' })
  const url = await listen(app)
  const handshake = async (origin: string): Promise<Response> => await fetch(`${url}/socket.io/?EIO=4&transport=polling`, { headers: { origin } })
  const foreign = await handshake('https://evil.example')
  t.equal(foreign.headers.get('access-control-allow-origin'), 'https://evil.example', 'readable, so the client can be told the code')
  t.not(foreign.headers.get('access-control-allow-credentials'), 'true', 'no cookies travel cross-site')
  const allowed = await handshake('https://app.example')
  t.equal(allowed.headers.get('access-control-allow-credentials'), 'true', 'a configured origin may send credentials')

  const policyId = await createPolicy(app, [{ effect: 'allow', namespace: '/chat', actions: ['connect'] }])
  const { apiKey } = await createKey(app, { policyId })
  const socket = connect(t, `${url}/chat`, { transports: ['polling'], extraHeaders: { origin: 'https://evil.example' }, auth: { token: await mintToken(app, apiKey) } })
  const err = await new Promise<Error & { data?: { code: string } }>((resolve) => socket.once('connect_error', resolve))
  t.equal(err.message, 'ORIGIN_NOT_ALLOWED')
  t.equal(err.data?.code, 'ORIGIN_NOT_ALLOWED')
})
