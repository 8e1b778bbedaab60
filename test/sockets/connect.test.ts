import t from 'tap'
import { adminHeaders, buildApp, connect, connected, listen, mintToken } from '../helper.js'
import { handToken, TEST_JWT_SECRET, validClaims } from '../support/jwt.js'
import { handshakeOutcome, keyWithPolicy, liveSockets, refusedHandshake, revokeKey, ROOMY_LIMITS, socketAudit, eventually, tokenFor, type ConnectError, WAIT_MS } from '../support/sockets.js'

const CHAT_ONLY = [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['lobby'] }]
const CHAT_AND_NOTIFICATION = [
  ...CHAT_ONLY,
  { effect: 'allow', namespace: '/notification', actions: ['connect', 'subscribe'], rooms: ['user:${sub}'] }
]

/** What a client learns from a connect_error, in one comparable shape: message = code = data.code. */
function refusal (err: ConnectError): { message: string, code: string | undefined, details: string } {
  return { message: err.message, code: err.data?.code, details: typeof err.data?.message }
}
const refused = (code: string): ReturnType<typeof refusal> => ({ message: code, code, details: 'string' })

/** The socket audit rows as `outcome reason` strings, for one-line comparisons. */
async function auditOutcomes (app: Parameters<typeof socketAudit>[0]): Promise<string[]> {
  return (await socketAudit(app)).map((row) => `${row.outcome}${row.reason === null ? '' : ` ${row.reason}`}`)
}

t.test('no token and a bad token are refused UNAUTHORIZED, one audit row each', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const url = await listen(app)
  t.same(refusal(await refusedHandshake(t, `${url}/chat`)), refused('UNAUTHORIZED'))
  t.same(refusal(await refusedHandshake(t, `${url}/chat`, { auth: { token: 'not-a-jwt' } })), refused('UNAUTHORIZED'))
  t.same(refusal(await refusedHandshake(t, `${url}/chat`, { auth: { token: 42 } })), refused('UNAUTHORIZED'))
  const rows = await socketAudit(app)
  t.same(rows.map((r) => [r.outcome, r.reason, r.namespace, r.keyId]), [
    ['refused', 'UNAUTHORIZED', '/chat', null],
    ['refused', 'UNAUTHORIZED', '/chat', null],
    ['refused', 'UNAUTHORIZED', '/chat', null]
  ])
  t.equal(liveSockets(app, '/chat'), 0)
})

t.test('a valid token connects, by auth.token or by an Authorization header, and each is audited allowed', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { id, apiKey } = await keyWithPolicy(app, CHAT_ONLY)
  const url = await listen(app)
  const token = await tokenFor(app, apiKey, 'alice')
  t.equal(await handshakeOutcome(t, `${url}/chat`, { auth: { token } }), 'ALLOWED', 'auth.token')
  t.equal(await handshakeOutcome(t, `${url}/chat`, { extraHeaders: { authorization: `Bearer ${token}` } }), 'ALLOWED', 'Authorization header, websocket')
  t.equal(await handshakeOutcome(t, `${url}/chat`, { transports: ['polling'], extraHeaders: { authorization: `Bearer ${token}` } }), 'ALLOWED', 'Authorization header, polling')
  t.equal(await handshakeOutcome(t, `${url}/chat`, { extraHeaders: { authorization: 'Bearer nope' } }), 'UNAUTHORIZED', 'a bad bearer header')
  const rows = await socketAudit(app)
  t.same(rows.map((r) => [r.outcome, r.reason, r.keyId, r.namespace]), [
    ['allowed', null, id, '/chat'],
    ['allowed', null, id, '/chat'],
    ['allowed', null, id, '/chat'],
    ['refused', 'UNAUTHORIZED', null, '/chat']
  ])
  t.ok(rows.every((r) => r.ip === '127.0.0.1'), 'the client address is recorded')
})

t.test('an expired token is refused TOKEN_EXPIRED', async (t) => {
  const app = await buildApp(t, { ...ROOMY_LIMITS, JWT_SECRET: TEST_JWT_SECRET })
  const { id } = await keyWithPolicy(app, CHAT_ONLY)
  const url = await listen(app)
  const now = Math.floor(Date.now() / 1000)
  const expired = handToken({ alg: 'HS256', typ: 'JWT' }, validClaims(id, { scope: '', iat: now - 120, exp: now - 60 }), { hmacKey: TEST_JWT_SECRET })
  const fresh = handToken({ alg: 'HS256', typ: 'JWT' }, validClaims(id, { scope: '' }), { hmacKey: TEST_JWT_SECRET })
  t.equal(await handshakeOutcome(t, `${url}/chat`, { auth: { token: fresh } }), 'ALLOWED', 'the same claims, not expired, connect')
  t.same(refusal(await refusedHandshake(t, `${url}/chat`, { auth: { token: expired } })), refused('TOKEN_EXPIRED'))
  t.same(await auditOutcomes(app), ['allowed', 'refused TOKEN_EXPIRED'])
})

t.test('a token revoked by POST /auth/revoke is refused TOKEN_REVOKED', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { id, apiKey } = await keyWithPolicy(app, CHAT_ONLY)
  const url = await listen(app)
  const token = await tokenFor(app, apiKey, 'alice')
  const other = await tokenFor(app, apiKey, 'alice')
  const res = await app.inject({ method: 'POST', url: '/auth/revoke', headers: { authorization: `Bearer ${token}` } })
  t.equal(res.statusCode, 204)
  t.same(refusal(await refusedHandshake(t, `${url}/chat`, { auth: { token } })), refused('TOKEN_REVOKED'))
  t.equal(await handshakeOutcome(t, `${url}/chat`, { auth: { token: other } }), 'ALLOWED', 'another token of the same key still connects')
  const rows = await socketAudit(app)
  t.same(rows.map((r) => [r.outcome, r.reason, r.keyId]), [['refused', 'TOKEN_REVOKED', id], ['allowed', null, id]])
})

t.test('a token of a revoked key is refused KEY_REVOKED', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { id, apiKey } = await keyWithPolicy(app, CHAT_ONLY)
  const url = await listen(app)
  const token = await tokenFor(app, apiKey, 'alice')
  await revokeKey(app, id)
  t.same(refusal(await refusedHandshake(t, `${url}/chat`, { auth: { token } })), refused('KEY_REVOKED'))
  const rows = await socketAudit(app)
  t.same(rows.map((r) => [r.outcome, r.reason, r.keyId]), [['refused', 'KEY_REVOKED', id]])
})

t.test('a token of an expired key is refused KEY_EXPIRED', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { id, apiKey } = await keyWithPolicy(app, CHAT_ONLY)
  const url = await listen(app)
  const token = await tokenFor(app, apiKey, 'alice')
  const patch = await app.inject({ method: 'PATCH', url: `/v1/keys/${id}`, headers: adminHeaders, payload: { expiresAt: new Date(Date.now() - 1000).toISOString() } })
  t.equal(patch.statusCode, 200, patch.body)
  t.same(refusal(await refusedHandshake(t, `${url}/chat`, { auth: { token } })), refused('KEY_EXPIRED'))
  t.same(await auditOutcomes(app), ['refused KEY_EXPIRED'])
})

t.test('a key whose IP allowlist does not match the client is refused IP_NOT_ALLOWED', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { id, apiKey } = await keyWithPolicy(app, CHAT_ONLY, { allowedIps: ['10.0.0.0/8'] })
  const url = await listen(app)
  // The token is minted from an allowed address; the socket comes from 127.0.0.1, which is not.
  const token = await mintToken(app, apiKey, { sub: 'alice' }, '10.1.2.3')
  t.same(refusal(await refusedHandshake(t, `${url}/chat`, { auth: { token } })), refused('IP_NOT_ALLOWED'))
  const patch = await app.inject({ method: 'PATCH', url: `/v1/keys/${id}`, headers: adminHeaders, payload: { allowedIps: ['10.0.0.0/8', '127.0.0.1'] } })
  t.equal(patch.statusCode, 200)
  t.equal(await handshakeOutcome(t, `${url}/chat`, { auth: { token } }), 'ALLOWED', 'allowed once the address is listed')
  t.same(await auditOutcomes(app), ['refused IP_NOT_ALLOWED', 'allowed'])
})

t.test('a policy without connect on the namespace is refused FORBIDDEN', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, [
    ...CHAT_ONLY,
    // subscribe and publish on /system, but no connect: still refused.
    { effect: 'allow', namespace: '/system', actions: ['subscribe', 'publish'], rooms: ['*'] },
    { effect: 'allow', namespace: '/error', actions: ['connect'] },
    { effect: 'deny', namespace: '/error', actions: ['connect'] }
  ])
  const url = await listen(app)
  const token = await tokenFor(app, apiKey, 'alice')
  t.same(refusal(await refusedHandshake(t, `${url}/notification`, { auth: { token } })), refused('FORBIDDEN'))
  t.same(refusal(await refusedHandshake(t, `${url}/system`, { auth: { token } })), refused('FORBIDDEN'))
  t.same(refusal(await refusedHandshake(t, `${url}/error`, { auth: { token } })), refused('FORBIDDEN'))
  t.equal(await handshakeOutcome(t, `${url}/chat`, { auth: { token } }), 'ALLOWED')
  const rows = await socketAudit(app)
  t.same(rows.map((r) => [r.outcome, r.reason, r.namespace]), [
    ['refused', 'FORBIDDEN', '/notification'],
    ['refused', 'FORBIDDEN', '/system'],
    ['refused', 'FORBIDDEN', '/error'],
    ['allowed', null, '/chat']
  ])
})

t.test('a token down-scoped to /notification is refused FORBIDDEN on /chat', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, CHAT_AND_NOTIFICATION)
  const url = await listen(app)
  const token = await tokenFor(app, apiKey, 'alice', { namespaces: ['/notification'] })
  t.same(refusal(await refusedHandshake(t, `${url}/chat`, { auth: { token } })), refused('FORBIDDEN'))
  t.equal(await handshakeOutcome(t, `${url}/notification`, { auth: { token } }), 'ALLOWED')
  t.same(await auditOutcomes(app), ['refused FORBIDDEN', 'allowed'])
})

t.test('a foreign Origin is refused ORIGIN_NOT_ALLOWED on websocket and polling; no Origin is accepted', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, CHAT_ONLY)
  const url = await listen(app)
  const token = await tokenFor(app, apiKey, 'alice')
  for (const transport of ['websocket', 'polling']) {
    const started = Date.now()
    const err = await refusedHandshake(t, `${url}/chat`, { transports: [transport], auth: { token }, extraHeaders: { origin: 'https://evil.example' } })
    t.same(refusal(err), refused('ORIGIN_NOT_ALLOWED'))
    t.ok(Date.now() - started < 1000, `${transport}: the refusal is prompt (${Date.now() - started} ms)`)
    t.equal(await handshakeOutcome(t, `${url}/chat`, { transports: [transport], auth: { token } }), 'ALLOWED', `${transport}: no Origin is accepted`)
    t.equal(await handshakeOutcome(t, `${url}/chat`, { transports: [transport], auth: { token }, extraHeaders: { origin: url } }), 'ALLOWED', `${transport}: the same origin is accepted`)
  }
  // Refused for the origin before the token is even looked at: a bad token there is still ORIGIN_NOT_ALLOWED.
  t.same(refusal(await refusedHandshake(t, `${url}/chat`, { auth: { token: 'nope' }, extraHeaders: { origin: 'https://evil.example' } })), refused('ORIGIN_NOT_ALLOWED'))
  t.same(await auditOutcomes(app), [
    'refused ORIGIN_NOT_ALLOWED', 'allowed', 'allowed',
    'refused ORIGIN_NOT_ALLOWED', 'allowed', 'allowed',
    'refused ORIGIN_NOT_ALLOWED'
  ])
})

t.test('CORS_ORIGINS lists the origins a handshake may come from', async (t) => {
  const app = await buildApp(t, { ...ROOMY_LIMITS, CORS_ORIGINS: 'https://app.example' })
  const { apiKey } = await keyWithPolicy(app, CHAT_ONLY)
  const url = await listen(app)
  const token = await tokenFor(app, apiKey, 'alice')
  for (const transport of ['websocket', 'polling']) {
    t.equal(await handshakeOutcome(t, `${url}/chat`, { transports: [transport], auth: { token }, extraHeaders: { origin: 'https://app.example' } }), 'ALLOWED', `${transport}: listed origin`)
    t.equal(await handshakeOutcome(t, `${url}/chat`, { transports: [transport], auth: { token }, extraHeaders: { origin: 'https://evil.example' } }), 'ORIGIN_NOT_ALLOWED', `${transport}: other origin`)
    t.equal(await handshakeOutcome(t, `${url}/chat`, { transports: [transport], auth: { token }, extraHeaders: { origin: 'https://app.example.evil.example' } }), 'ORIGIN_NOT_ALLOWED', `${transport}: lookalike origin`)
    t.equal(await handshakeOutcome(t, `${url}/chat`, { transports: [transport], auth: { token } }), 'ALLOWED', `${transport}: no origin`)
  }
})

t.test('the connection rate per IP: the handshake past RATE_LIMIT_CONNECT is RATE_LIMITED with retryAfter', async (t) => {
  const app = await buildApp(t, { ...ROOMY_LIMITS, RATE_LIMIT_CONNECT: '2/minute' })
  const { apiKey } = await keyWithPolicy(app, CHAT_ONLY)
  const url = await listen(app)
  const token = await tokenFor(app, apiKey, 'alice')
  t.equal(await handshakeOutcome(t, `${url}/chat`, { auth: { token } }), 'ALLOWED')
  t.equal(await handshakeOutcome(t, `${url}/chat`, { auth: { token } }), 'ALLOWED')
  const err = await refusedHandshake(t, `${url}/chat`, { auth: { token } })
  t.same(refusal(err), refused('RATE_LIMITED'))
  t.type(err.data?.retryAfter, 'number')
  t.ok((err.data?.retryAfter ?? 0) >= 1 && (err.data?.retryAfter ?? 0) <= 60, `retryAfter ${err.data?.retryAfter} is within the window`)
  // Whatever the credential: the limit comes before the token is checked.
  t.same(refusal(await refusedHandshake(t, `${url}/chat`, { auth: { token: 'nope' } })), refused('RATE_LIMITED'))
  t.same(await auditOutcomes(app), ['allowed', 'allowed', 'refused RATE_LIMITED', 'refused RATE_LIMITED'])
})

t.test('maxConnections caps the live sockets of a key; a slot frees when a socket leaves', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, CHAT_AND_NOTIFICATION, { maxConnections: 1 })
  const url = await listen(app)
  const token = await tokenFor(app, apiKey, 'alice')
  const first = connect(t, `${url}/chat`, { auth: { token } })
  await connected(first)
  const err = await refusedHandshake(t, `${url}/chat`, { auth: { token } })
  t.equal(err.message, err.data?.code, 'refused with a §6 code')
  t.equal(err.message, 'RATE_LIMITED')
  t.equal(await handshakeOutcome(t, `${url}/notification`, { auth: { token } }), 'RATE_LIMITED', 'the cap spans namespaces')
  first.close()
  await eventually(() => liveSockets(app, '/chat') === 0, WAIT_MS, 'the server saw the disconnect')
  // The slot is released asynchronously (a shared counter): retry briefly rather than sleep.
  let attempts = 3
  let outcome = ''
  await eventually(async () => { attempts++; return (outcome = await handshakeOutcome(t, `${url}/chat`, { auth: { token } })) === 'ALLOWED' }, WAIT_MS, 'a new socket is accepted')
  t.equal(outcome, 'ALLOWED', 'a new socket is accepted once the first left')
  await eventually(() => liveSockets(app, '/chat') === 0, WAIT_MS, 'the server saw the disconnect')
  let second: ReturnType<typeof connect> | undefined
  await eventually(async () => {
    attempts++
    second?.close()
    second = connect(t, `${url}/chat`, { auth: { token } })
    return await connected(second).then(() => true, () => false)
  }, WAIT_MS, 'one more socket fits')
  attempts++
  t.equal(await handshakeOutcome(t, `${url}/chat`, { auth: { token } }), 'RATE_LIMITED', 'still one at a time')
  const rows = await auditOutcomes(app)
  t.equal(rows.length, attempts, 'one audit row per attempt')
  t.equal(rows.filter((r) => r === 'allowed').length, 3, 'three sockets were accepted')
  t.ok(rows.every((r) => r === 'allowed' || r === 'refused RATE_LIMITED'), 'every other attempt was refused for the cap')
})

t.test('the main namespace is not a gateway namespace: every handshake there is refused', async (t) => {
  const app = await buildApp(t, ROOMY_LIMITS)
  const { apiKey } = await keyWithPolicy(app, [{ effect: 'allow', namespace: '*', actions: ['connect'] }])
  const url = await listen(app)
  t.same(refusal(await refusedHandshake(t, url)), refused('NOT_FOUND'), 'without a token')
  t.same(refusal(await refusedHandshake(t, url, { auth: { token: await tokenFor(app, apiKey, 'alice') } })), refused('NOT_FOUND'), 'even with a token whose policy allows every namespace')
  t.equal(await handshakeOutcome(t, `${url}/elsewhere`), 'Invalid namespace', 'unknown namespaces are refused by Socket.IO')
})
