import t from 'tap'
import { buildApp, buildFrom, createKey, isolatedEnv, sleep } from '../helper.js'
import { collectAlerts, outcome, refusalCode, requestToken } from '../support/auth.js'

const env = { RATE_LIMIT_TOKEN: '3/minute', ANOMALY_MAX_FAILURES: '100000/minute' }

t.test('the 4th token request from one IP in a minute is 429 RATE_LIMITED with Retry-After', async (t) => {
  const app = await buildApp(t, env)
  const { apiKey } = await createKey(app)
  for (let i = 1; i <= 3; i++) t.equal((await requestToken(app, apiKey, '10.9.0.1')).statusCode, 200, `request ${i}`)
  const limited = await requestToken(app, apiKey, '10.9.0.1')
  t.equal(outcome(limited), '429 RATE_LIMITED')
  const retryAfter = Number(limited.headers['retry-after'])
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After is whole seconds within the window (got ${String(limited.headers['retry-after'])})`)
  t.equal(outcome(await requestToken(app, 'spk_whatever_bad', '10.9.0.1')), '429 RATE_LIMITED', 'whatever the credential')
  t.equal((await requestToken(app, apiKey, '10.9.0.2')).statusCode, 200, 'another IP is unaffected')
  t.equal((await requestToken(app, apiKey, '127.0.0.1')).statusCode, 200)
  await app.audit.flush()
  // Refusals before the credential is read are summary rows (SPEC §7): their counts add up to the attempts.
  const rows = await app.sql<Array<{ n: string }>>`select sum(count) as n from auth_attempts where ip = '10.9.0.1' and outcome = 'refused' and reason = 'RATE_LIMITED' and key_id is null`
  t.equal(Number(rows[0].n), 2, 'each rate-limited attempt is counted in a refused audit row')
})

t.test('loopback gets no exemption', async (t) => {
  const app = await buildApp(t, env)
  const { apiKey } = await createKey(app)
  for (let i = 0; i < 3; i++) await requestToken(app, apiKey, '127.0.0.1')
  t.equal(outcome(await requestToken(app, apiKey, '127.0.0.1')), '429 RATE_LIMITED')
  t.equal(outcome(await requestToken(app, apiKey, '::1')), '200', 'IPv6 loopback is another client')
})

t.test('IPv6 addresses in one /64 share a bucket', async (t) => {
  const app = await buildApp(t, env)
  const { apiKey } = await createKey(app)
  for (const ip of ['2001:db8:aa:1::1', '2001:db8:aa:1::2', '2001:db8:aa:1:ffff:ffff:ffff:fffe']) {
    t.equal((await requestToken(app, apiKey, ip)).statusCode, 200, ip)
  }
  t.equal(outcome(await requestToken(app, apiKey, '2001:db8:aa:1:1234::9')), '429 RATE_LIMITED', 'a fourth address in the same /64')
  t.equal((await requestToken(app, apiKey, '2001:db8:aa:2::1')).statusCode, 200, 'the next /64 is another client')
})

t.test('IPv4-mapped addresses count as their IPv4 address', async (t) => {
  const app = await buildApp(t, env)
  const { apiKey } = await createKey(app)
  await requestToken(app, apiKey, '10.9.1.1')
  await requestToken(app, apiKey, '::ffff:10.9.1.1')
  await requestToken(app, apiKey, '10.9.1.1')
  t.equal(outcome(await requestToken(app, apiKey, '::ffff:10.9.1.1')), '429 RATE_LIMITED')
})

t.test('the limit is shared by instances on one Redis', async (t) => {
  const shared = await isolatedEnv(t, env)
  const a = await buildFrom(t, shared)
  const b = await buildFrom(t, shared)
  const { apiKey } = await createKey(a)
  for (let i = 0; i < 3; i++) t.equal((await requestToken(a, apiKey, '10.9.2.1')).statusCode, 200)
  t.equal(outcome(await requestToken(b, apiKey, '10.9.2.1')), '429 RATE_LIMITED', '3 on A + 1 on B')
  t.equal((await requestToken(b, apiKey, '10.9.2.2')).statusCode, 200)
})

t.test('rate-limited attempts are not counted as failed authentications', async (t) => {
  const app = await buildApp(t, { RATE_LIMIT_TOKEN: '3/minute', ANOMALY_MAX_FAILURES: '3/minute' })
  const alerts = collectAlerts(app)
  const { id } = await createKey(app)
  for (let i = 0; i < 3; i++) t.equal(outcome(await requestToken(app, `spk_${id}_wrong`, '10.9.3.1')), '401 UNAUTHORIZED')
  for (let i = 0; i < 10; i++) t.equal(outcome(await requestToken(app, `spk_${id}_wrong`, '10.9.3.1')), '429 RATE_LIMITED', 'limited, not blocked')
  t.equal(await refusalCode(app.anomaly.assertNotBlocked('10.9.3.1')), 'ALLOWED', 'the IP is not blocked: the limit answered before the anomaly counter')
  t.same(alerts.filter((a) => a.kind === 'ip_blocked'), [])
})

t.test('hitRateLimit counts in the shared store', async (t) => {
  const shared = await isolatedEnv(t, {})
  const a = await buildFrom(t, shared)
  const b = await buildFrom(t, shared)
  const rate = { max: 2, windowMs: 1000 }
  await a.hitRateLimit('test:one', rate, 'test')
  await b.hitRateLimit('test:one', rate, 'test')
  let refusal: { code?: string, retryAfter?: number, statusCode?: number } = {}
  try { await a.hitRateLimit('test:one', rate, 'test') } catch (err) { refusal = err as typeof refusal }
  t.match(refusal, { code: 'RATE_LIMITED', statusCode: 429, retryAfter: 1 }, 'the third in the window, across instances')
  t.equal(await refusalCode(b.hitRateLimit('test:two', rate, 'test')), 'ALLOWED', 'keys are counted apart')
  await sleep(1100)
  t.equal(await refusalCode(a.hitRateLimit('test:one', rate, 'test')), 'ALLOWED', 'a new window')
  const metrics = await a.gatewayMetrics.registry.getSingleMetricAsString('gateway_rate_limited_total')
  t.match(metrics, /gateway_rate_limited_total\{scope="test"\} 1/, 'counted in /metrics by scope')
})
