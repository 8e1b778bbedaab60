import t from 'tap'
import { buildApp, connect, connected, listen, mintToken } from '../helper.js'
import { ROOMY_LIMITS } from '../support/sockets.js'
import { parseExposition, samplesOf, type PromFamily } from '../support/ops.js'

const BAD_KEYS = ['spk_no-such-key_' + 'A'.repeat(43), 'not-a-key', 'spk_' + 'x'.repeat(20)]

t.test('after a scripted scenario /metrics counts exactly what happened, in a valid exposition', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  // Set up through the stores, not the admin API, so the only authentication attempts are the scenario's.
  const policy = await app.policies.create({ name: 'metrics-chat', rules: [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['lobby'] }] })
  const { apiKey } = await app.keys.create({ name: 'metrics', policyId: policy.id })
  const url = await listen(app)

  const token = await mintToken(app, apiKey)
  await mintToken(app, apiKey)
  for (const key of BAD_KEYS) {
    const res = await app.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': key } })
    t.equal(res.statusCode, 401, `bad key ${key.slice(0, 12)}… refused`)
  }
  const socket = connect(t, `${url}/chat`, { auth: { token } })
  await connected(socket)
  const refused = await socket.emitWithAck('message', { room: 'not-allowed', data: 1 })
  t.equal(refused.error?.code, 'FORBIDDEN', 'one packet refused by policy')

  const res = await app.inject({ url: '/metrics' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  let families = new Map<string, PromFamily>()
  t.doesNotThrow(() => { families = parseExposition(res.body) }, 'the whole exposition parses')

  const attempts = samplesOf(families, 'gateway_auth_attempts_total').map((s) => `${s.labels.transport} ${s.labels.outcome} ${s.labels.reason} ${s.value}`).sort()
  t.same(attempts, [
    'http allowed ok 2',
    'http refused UNAUTHORIZED 3',
    'socket allowed ok 1'
  ], 'auth attempts: 2 tokens, 3 bad keys, the socket connect; nothing else')
  t.same(samplesOf(families, 'gateway_socket_packets_total', { namespace: '/chat', outcome: 'refused' }).map((s) => s.value), [1], 'one refused packet on /chat')
  t.same(samplesOf(families, 'gateway_socket_packets_total', { namespace: '/chat', outcome: 'relayed' }).map((s) => s.value), [0], 'nothing relayed')
  t.same(samplesOf(families, 'gateway_socket_connections', { namespace: '/chat' }).map((s) => s.value), [1], 'one live /chat connection')

  const types: Record<string, string> = {
    gateway_auth_attempts_total: 'counter',
    gateway_socket_connections: 'gauge',
    gateway_socket_packets_total: 'counter',
    gateway_rate_limited_total: 'counter',
    gateway_alerts_total: 'counter',
    gateway_audit_queue_depth: 'gauge',
    http_request_duration_seconds: 'histogram'
  }
  for (const [name, type] of Object.entries(types)) {
    t.equal(families.get(name)?.type, type, `${name} is a ${type}`)
  }
  // Series with known labels exist from the start (a dashboard shows 0, not "no data").
  t.same(samplesOf(families, 'gateway_rate_limited_total').map((s) => `${s.labels.scope} ${s.value}`).sort(), ['connect 0', 'http 0', 'key 0', 'socket 0', 'transport 0'])
  t.same(samplesOf(families, 'gateway_alerts_total').map((s) => `${s.labels.kind} ${s.value}`).sort(), ['internal_error 0', 'ip_blocked 0', 'key_failures 0', 'key_revoked 0', 'upstream_down 0', 'upstream_up 0'])
  t.equal(samplesOf(families, 'gateway_audit_queue_depth').length, 1, 'audit queue depth has a value')
  const timedTokens = (status: string): number[] => samplesOf(families, 'http_request_duration_seconds', { method: 'POST', route: '/auth/token', status_code: status }, 'http_request_duration_seconds_count').map((s) => s.value)
  t.same(timedTokens('200'), [2], 'fastify-metrics timed the two 200s of POST /auth/token')
  t.same(timedTokens('401'), [3], 'and the three 401s')
  t.same(samplesOf(families, 'http_request_summary_seconds', { route: '/auth/token' }, 'http_request_summary_seconds_count'), [], 'no summary samples: quantiles come from the histogram\'s buckets')
  t.notOk(families.get('http_request_duration_seconds')?.samples.some((s) => s.labels.route === '/metrics'), '/metrics does not time itself')
  t.ok([...families.keys()].some((name) => name.startsWith('process_') || name.startsWith('nodejs_')), 'default process metrics are exposed')
})

t.test('/metrics is served to loopback and METRICS_ALLOW only', async (t) => {
  const app = await buildApp(t)
  t.equal((await app.inject({ url: '/metrics', remoteAddress: '127.0.0.1' })).statusCode, 200, 'loopback')
  t.equal((await app.inject({ url: '/metrics', remoteAddress: '::1' })).statusCode, 200, 'IPv6 loopback')
  const outside = await app.inject({ url: '/metrics', remoteAddress: '10.9.9.9' })
  t.equal(outside.statusCode, 403, 'another address')
  t.equal(outside.json().code, 'FORBIDDEN')
  t.notMatch(outside.body, /gateway_/, 'no metric in the refusal')

  const allowing = await buildApp(t, { METRICS_ALLOW: '10.9.0.0/16' })
  t.equal((await allowing.inject({ url: '/metrics', remoteAddress: '10.9.9.9' })).statusCode, 200, 'inside METRICS_ALLOW')
  t.equal((await allowing.inject({ url: '/metrics', remoteAddress: '::ffff:10.9.9.9' })).statusCode, 200, 'the same address IPv4-mapped')
  t.equal((await allowing.inject({ url: '/metrics', remoteAddress: '10.8.9.9' })).statusCode, 403, 'outside METRICS_ALLOW')
  t.equal((await allowing.inject({ url: '/metrics', remoteAddress: '127.0.0.1' })).statusCode, 200, 'loopback still served')
})

t.test('helmet sets the security headers on a normal response', async (t) => {
  const app = await buildApp(t)
  const res = await app.inject({ url: '/health/live' })
  t.equal(res.statusCode, 200)
  t.match(res.headers, {
    'content-security-policy': "default-src 'none';frame-ancestors 'none'",
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'cross-origin-opener-policy': 'same-origin',
    'cross-origin-resource-policy': 'same-origin',
    'strict-transport-security': /max-age=\d+/
  })
  t.notOk(res.headers['x-powered-by'], 'no x-powered-by')
  const refused = await app.inject({ method: 'POST', url: '/auth/token' })
  t.equal(refused.headers['x-content-type-options'], 'nosniff', 'on an error response too')
  // The docs UI loads its own scripts and styles: it gets a policy that allows them, and only it does.
  const docs = await app.inject({ url: '/docs' })
  t.match(docs.headers['content-security-policy'], /script-src 'self'/)
  t.equal(docs.headers['x-content-type-options'], 'nosniff', 'the rest of helmet\'s headers on the docs too')
})

t.test('the exposition check refuses what a Prometheus scrape would', async (t) => {
  t.doesNotThrow(() => parseExposition('# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 1\na_total{x="2"} 2e3\n'))
  t.throws(() => parseExposition('a{x="1"} 1\na{x="1"} 2\n'), /repeated/, 'a series twice')
  t.throws(() => parseExposition('a 1\nb 1\na 2\n'), /twice/, 'a family split in two')
  t.throws(() => parseExposition('a one\n'), /not a number/, 'a value that is not a number')
  t.throws(() => parseExposition('a{x="1} 1\n'), 'an unterminated label value')
  t.throws(() => parseExposition('1a 1\n'), 'a bad metric name')
  t.throws(() => parseExposition('a 1\n# TYPE a counter\n'), /TYPE after samples/, 'TYPE after samples')
  t.throws(() => parseExposition('a 1'), /newline/, 'no final newline')
})
