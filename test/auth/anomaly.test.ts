import t from 'tap'
import { adminHeaders, buildApp, buildFrom, createKey, isolatedEnv, sleep } from '../helper.js'
import { collectAlerts, outcome, refusalCode, requestToken } from '../support/auth.js'

const env = { ANOMALY_MAX_FAILURES: '5/minute', ANOMALY_BLOCK_SECONDS: '120', RATE_LIMIT_TOKEN: '100000/minute' }

t.test('more than ANOMALY_MAX_FAILURES failures block the IP, valid key or not', async (t) => {
  const app = await buildApp(t, env)
  const alerts = collectAlerts(app)
  const { id, apiKey } = await createKey(app)
  const ip = '10.4.0.1'
  for (let i = 0; i < 5; i++) t.equal(outcome(await requestToken(app, `spk_${id}_wrong`, ip)), '401 UNAUTHORIZED')
  t.equal((await requestToken(app, apiKey, ip)).statusCode, 200, 'five failures are within the limit')
  t.same(alerts, [])
  t.equal(outcome(await requestToken(app, 'spk_unknown-id_wrong', ip)), '401 UNAUTHORIZED', 'the sixth failure is still answered as a failure')

  const blocked = await requestToken(app, apiKey, ip)
  t.equal(outcome(blocked), '429 TEMPORARILY_BLOCKED', 'then even a valid key is refused')
  const retryAfter = Number(blocked.headers['retry-after'])
  t.ok(retryAfter > 110 && retryAfter <= 120, `Retry-After is what is left of ANOMALY_BLOCK_SECONDS (got ${String(blocked.headers['retry-after'])})`)
  t.equal(outcome(await app.inject({ url: '/v1/keys', headers: adminHeaders, remoteAddress: ip })), '429 TEMPORARILY_BLOCKED', 'on every endpoint, the root credential included')
  t.equal(await refusalCode(app.anomaly.assertNotBlocked(ip)), 'TEMPORARILY_BLOCKED')

  t.equal((await requestToken(app, apiKey, '10.4.0.2')).statusCode, 200, 'another IP is unaffected')
  t.match(alerts, [{ kind: 'ip_blocked', ip, count: 6 }], 'one alert, on the failure that crossed the limit')
  t.equal(alerts.length, 1)
  t.ok(Math.abs(Date.parse(alerts[0].at) - Date.now()) < 5000, 'the alert says when')

  for (let i = 0; i < 5; i++) await requestToken(app, `spk_${id}_wrong`, ip)
  t.equal(alerts.length, 1, 'blocked attempts are not failures: no new alert')

  await app.audit.flush()
  // One entry per attempt: a summary row (blocked attempts, SPEC §7) stands for `count` of them.
  const rows = await app.sql<Array<{ outcome: string, reason: string | null }>>`select outcome, reason from auth_attempts cross join generate_series(1, count) where ip = ${ip} order by id`
  t.same(rows.map((r) => r.reason), [...Array(5).fill('UNAUTHORIZED'), null, 'UNAUTHORIZED', ...Array(7).fill('TEMPORARILY_BLOCKED')], 'each attempt audited, blocked ones as refused')
  const metrics = await app.gatewayMetrics.registry.getSingleMetricAsString('gateway_alerts_total')
  t.match(metrics, /gateway_alerts_total\{kind="ip_blocked"\} 1/)
})

t.test('every kind of bad credential counts, on every route', async (t) => {
  const app = await buildApp(t, env)
  const alerts = collectAlerts(app)
  const ip = '10.4.1.1'
  await requestToken(app, 'garbage', ip)
  await requestToken(app, undefined, ip)
  await app.inject({ url: '/v1/keys', headers: { 'x-api-key': 'spk_nope_nope' }, remoteAddress: ip })
  await app.inject({ url: '/v1/keys', headers: { authorization: 'Bearer not.a.token' }, remoteAddress: ip })
  await app.inject({ method: 'POST', url: '/auth/revoke', headers: { authorization: 'Bearer x' }, remoteAddress: ip })
  t.equal(await refusalCode(app.anomaly.assertNotBlocked(ip)), 'ALLOWED', 'five')
  await app.inject({ method: 'POST', url: '/auth/revoke', remoteAddress: ip })
  t.equal(await refusalCode(app.anomaly.assertNotBlocked(ip)), 'TEMPORARILY_BLOCKED', 'six')
  t.match(alerts, [{ kind: 'ip_blocked', ip }])
})

t.test('a valid key without the scope asked for is not a failed authentication', async (t) => {
  const app = await buildApp(t, env)
  const { apiKey } = await createKey(app, { scopes: ['publish'] })
  const ip = '10.4.2.1'
  for (let i = 0; i < 8; i++) t.equal(outcome(await app.inject({ url: '/v1/keys', headers: { 'x-api-key': apiKey }, remoteAddress: ip })), '403 FORBIDDEN')
  t.equal((await requestToken(app, apiKey, ip)).statusCode, 200, 'not blocked')
})

t.test('an IPv6 /64 is blocked as one client', async (t) => {
  const app = await buildApp(t, env)
  const { apiKey } = await createKey(app)
  for (let i = 1; i <= 6; i++) await requestToken(app, 'spk_x_y', `2001:db8:4:1::${i}`)
  t.equal(outcome(await requestToken(app, apiKey, '2001:db8:4:1:abcd::1')), '429 TEMPORARILY_BLOCKED', 'another address of the /64')
  t.equal((await requestToken(app, apiKey, '2001:db8:4:2::1')).statusCode, 200, 'the next /64 is not')
})

t.test('a block holds on every instance', async (t) => {
  const shared = await isolatedEnv(t, env)
  const a = await buildFrom(t, shared)
  const b = await buildFrom(t, shared)
  const alertsA = collectAlerts(a)
  const alertsB = collectAlerts(b)
  const { apiKey } = await createKey(a)
  for (let i = 0; i < 3; i++) await requestToken(a, 'spk_x_y', '10.4.3.1')
  for (let i = 0; i < 3; i++) await requestToken(b, 'spk_x_y', '10.4.3.1')
  t.equal(outcome(await requestToken(a, apiKey, '10.4.3.1')), '429 TEMPORARILY_BLOCKED', 'failures counted across instances')
  t.equal(outcome(await requestToken(b, apiKey, '10.4.3.1')), '429 TEMPORARILY_BLOCKED')
  t.equal(alertsA.length + alertsB.length, 1, 'one alert in the cluster')
})

t.test('many failures on one key id alert but never block its holder', async (t) => {
  const app = await buildApp(t, env)
  const alerts = collectAlerts(app)
  const { id, apiKey } = await createKey(app)
  const other = await createKey(app)
  for (let i = 1; i <= 6; i++) t.equal(outcome(await requestToken(app, `spk_${id}_guess-${i}`, `10.4.4.${i}`)), '401 UNAUTHORIZED')
  t.match(alerts, [{ kind: 'key_failures', keyId: id, count: 6 }])
  t.equal(alerts.filter((a) => a.kind === 'ip_blocked').length, 0, 'no address crossed the limit')
  t.equal((await requestToken(app, apiKey, '10.4.9.9')).statusCode, 200, 'the holder, from its own address, is not blocked')
  for (let i = 1; i <= 6; i++) t.equal((await requestToken(app, apiKey, `10.4.4.${i}`)).statusCode, 200, `nor is 10.4.4.${i}`)
  t.equal((await requestToken(app, other.apiKey, '10.4.9.9')).statusCode, 200)
  for (let i = 7; i <= 12; i++) await requestToken(app, `spk_${id}_guess-${i}`, `10.4.4.${i}`)
  t.equal(alerts.filter((a) => a.kind === 'key_failures').length, 1, 'one alert per window, not one per failure')
  t.equal((await requestToken(app, apiKey, '10.4.9.9')).statusCode, 200)
})

t.test('an IP still over the limit when its block ends is blocked again at its next failure', async (t) => {
  // A block shorter than the counting window (e.g. 100/hour, blocked 300 s) must not leave the rest of the window open.
  const app = await buildApp(t, { ...env, ANOMALY_MAX_FAILURES: '3/minute', ANOMALY_BLOCK_SECONDS: '1' })
  const alerts = collectAlerts(app)
  const { apiKey } = await createKey(app)
  const ip = '10.4.5.1'
  for (let i = 0; i < 4; i++) await requestToken(app, 'spk_x_y', ip)
  t.equal(outcome(await requestToken(app, apiKey, ip)), '429 TEMPORARILY_BLOCKED')
  await sleep(1100)
  t.equal((await requestToken(app, apiKey, ip)).statusCode, 200, 'the block ends after ANOMALY_BLOCK_SECONDS')
  t.equal(outcome(await requestToken(app, 'spk_x_y', ip)), '401 UNAUTHORIZED')
  t.equal(outcome(await requestToken(app, apiKey, ip)), '429 TEMPORARILY_BLOCKED', 'one more failure in the same window blocks again')
  t.equal(alerts.filter((a) => a.kind === 'ip_blocked').length, 2, 'each block is alerted')
})
