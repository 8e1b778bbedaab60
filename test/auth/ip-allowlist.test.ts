import t from 'tap'
import { adminHeaders, buildApp, createKey, mintToken } from '../helper.js'
import { outcome, refusalCode, requestToken } from '../support/auth.js'

const env = { RATE_LIMIT_TOKEN: '100000/minute', ANOMALY_MAX_FAILURES: '100000/minute' }

t.test('an IPv4 allowlist admits its range and refuses the rest', async (t) => {
  const app = await buildApp(t, env)
  const { apiKey } = await createKey(app, { allowedIps: ['10.1.0.0/16'] })
  t.equal((await requestToken(app, apiKey, '10.1.2.3')).statusCode, 200)
  t.equal((await requestToken(app, apiKey, '10.1.255.254')).statusCode, 200)
  t.equal(outcome(await requestToken(app, apiKey, '10.2.0.1')), '403 IP_NOT_ALLOWED')
  t.equal(outcome(await requestToken(app, apiKey, '127.0.0.1')), '403 IP_NOT_ALLOWED', 'loopback gets no exemption')
  t.equal(outcome(await requestToken(app, apiKey, '2001:db8::1')), '403 IP_NOT_ALLOWED', 'an IPv6 client is not in an IPv4 range')
  t.equal((await requestToken(app, apiKey, '::ffff:10.1.2.3')).statusCode, 200, 'IPv4-mapped IPv6 matches the IPv4 range')
  t.equal(outcome(await requestToken(app, apiKey, '::ffff:10.2.0.1')), '403 IP_NOT_ALLOWED')
})

t.test('an IPv6 allowlist admits its range and refuses the rest', async (t) => {
  const app = await buildApp(t, env)
  const { apiKey } = await createKey(app, { allowedIps: ['2001:db8::/32', '192.0.2.7'] })
  t.equal((await requestToken(app, apiKey, '2001:db8::1')).statusCode, 200)
  t.equal((await requestToken(app, apiKey, '2001:db8:ffff:1::99')).statusCode, 200)
  t.equal(outcome(await requestToken(app, apiKey, '2001:db9::1')), '403 IP_NOT_ALLOWED')
  t.equal(outcome(await requestToken(app, apiKey, '::1')), '403 IP_NOT_ALLOWED')
  t.equal((await requestToken(app, apiKey, '192.0.2.7')).statusCode, 200, 'a single address in the list')
  t.equal(outcome(await requestToken(app, apiKey, '192.0.2.8')), '403 IP_NOT_ALLOWED')
})

t.test('an allowlist written as IPv4-mapped IPv6 matches IPv4 clients', async (t) => {
  const app = await buildApp(t, env)
  const { apiKey } = await createKey(app, { allowedIps: ['::ffff:10.1.0.0/112'] })
  t.equal((await requestToken(app, apiKey, '10.1.2.3')).statusCode, 200)
  t.equal((await requestToken(app, apiKey, '::ffff:10.1.2.3')).statusCode, 200)
  t.equal(outcome(await requestToken(app, apiKey, '10.2.0.1')), '403 IP_NOT_ALLOWED')
})

t.test('the refusal comes only after the secret is right', async (t) => {
  const app = await buildApp(t, env)
  const { id } = await createKey(app, { allowedIps: ['10.1.0.0/16'] })
  t.equal(outcome(await requestToken(app, `spk_${id}_wrong-secret`, '10.2.0.1')), '401 UNAUTHORIZED', 'a wrong secret never learns about the allowlist')
})

t.test('X-Forwarded-For is believed only with TRUST_PROXY', async (t) => {
  t.test('without TRUST_PROXY a spoofed header changes nothing', async (t) => {
    const app = await buildApp(t, env)
    const { apiKey } = await createKey(app, { allowedIps: ['10.1.0.0/16'] })
    t.equal(outcome(await requestToken(app, apiKey, '10.2.0.1', {}, { 'x-forwarded-for': '10.1.2.3' })), '403 IP_NOT_ALLOWED')
    t.equal(outcome(await requestToken(app, apiKey, '10.2.0.1', {}, { 'x-forwarded-for': '10.1.2.3, 10.1.2.4', 'x-real-ip': '10.1.2.3' })), '403 IP_NOT_ALLOWED')
    t.equal((await requestToken(app, apiKey, '10.1.2.3', {}, { 'x-forwarded-for': '10.2.0.1' })).statusCode, 200, 'nor can it get a real client refused')
  })
  t.test('TRUST_PROXY=true takes the client from the proxy', async (t) => {
    const app = await buildApp(t, { ...env, TRUST_PROXY: 'true' })
    const { apiKey } = await createKey(app, { allowedIps: ['10.1.0.0/16'] })
    t.equal((await requestToken(app, apiKey, '10.2.0.1', {}, { 'x-forwarded-for': '10.1.2.3' })).statusCode, 200)
    t.equal(outcome(await requestToken(app, apiKey, '10.1.2.3', {}, { 'x-forwarded-for': '10.2.0.1' })), '403 IP_NOT_ALLOWED')
  })
  t.test('TRUST_PROXY as a CIDR list trusts those proxies only', async (t) => {
    const app = await buildApp(t, { ...env, TRUST_PROXY: '10.2.0.0/16' })
    const { apiKey } = await createKey(app, { allowedIps: ['10.1.0.0/16'] })
    t.equal((await requestToken(app, apiKey, '10.2.0.1', {}, { 'x-forwarded-for': '10.1.2.3' })).statusCode, 200, 'from a trusted proxy')
    t.equal(outcome(await requestToken(app, apiKey, '10.3.0.1', {}, { 'x-forwarded-for': '10.1.2.3' })), '403 IP_NOT_ALLOWED', 'from anyone else')
    t.equal(outcome(await requestToken(app, apiKey, '10.2.0.1', {}, { 'x-forwarded-for': '10.1.2.3, 10.9.9.9' })), '403 IP_NOT_ALLOWED', 'the hop nearest the trusted proxy is the client')
  })
  t.test('TRUST_PROXY as a hop count trusts that many nearest hops', async (t) => {
    const app = await buildApp(t, { ...env, TRUST_PROXY: '1' })
    const { apiKey } = await createKey(app, { allowedIps: ['10.1.0.0/16'] })
    t.equal((await requestToken(app, apiKey, '10.2.0.1', {}, { 'x-forwarded-for': '10.1.2.3' })).statusCode, 200, 'one proxy hop is trusted')
    t.equal(outcome(await requestToken(app, apiKey, '10.2.0.1', {}, { 'x-forwarded-for': '10.1.2.3, 10.9.9.9' })), '403 IP_NOT_ALLOWED', 'a second, spoofable hop is not')
  })
})

t.test('a token is refused from an address its key does not allow', async (t) => {
  const app = await buildApp(t, env)
  const { id, apiKey } = await createKey(app, { allowedIps: ['10.1.0.0/16'] })
  const token = await mintToken(app, apiKey, {}, '10.1.2.3')
  const bearer = { authorization: `Bearer ${token}` }
  t.equal(await refusalCode(app.authenticateToken(token, '10.1.9.9')), 'ALLOWED')
  t.equal(await refusalCode(app.authenticateToken(token, '10.2.0.1')), 'IP_NOT_ALLOWED')
  t.equal(await refusalCode(app.authenticateToken(token, '::ffff:10.2.0.1')), 'IP_NOT_ALLOWED')
  t.equal(outcome(await app.inject({ method: 'POST', url: '/auth/revoke', headers: bearer, remoteAddress: '10.2.0.1' })), '403 IP_NOT_ALLOWED', 'over HTTP too')

  const patched = await app.inject({ method: 'PATCH', url: `/v1/keys/${id}`, headers: adminHeaders, payload: { allowedIps: ['10.1.9.0/24'] } })
  t.equal(patched.statusCode, 200, patched.body)
  t.equal(await refusalCode(app.authenticateToken(token, '10.1.2.3')), 'IP_NOT_ALLOWED', 'a narrowed allowlist applies to tokens already minted')
  t.equal(await refusalCode(app.authenticateToken(token, '10.1.9.9')), 'ALLOWED')
  t.equal((await app.inject({ method: 'POST', url: '/auth/revoke', headers: bearer, remoteAddress: '10.1.9.9' })).statusCode, 204)
})

t.test('checkIp on its own', async (t) => {
  const app = await buildApp(t, env)
  const list = ['10.1.0.0/16', '2001:db8::/32']
  const check = (ip: string): string => { try { app.checkIp(list, ip); return 'ok' } catch (err) { return (err as { code: string }).code } }
  t.equal(check('10.1.0.0'), 'ok')
  t.equal(check('10.0.255.255'), 'IP_NOT_ALLOWED')
  t.equal(check('2001:db8:0:0:0:0:0:1'), 'ok')
  t.equal(check('not-an-ip'), 'IP_NOT_ALLOWED', 'an unparsable address is refused, not allowed')
  t.equal(check(''), 'IP_NOT_ALLOWED')
  t.doesNotThrow(() => { app.checkIp([], '203.0.113.9') }, 'an empty list allows any address')
})
