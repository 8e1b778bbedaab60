import t from 'tap'
import { adminHeaders, buildApp, createKey, mintToken } from '../helper.js'
import { adminWithBearer, outcome, refusalCode, requestToken } from '../support/auth.js'
import { decodeToken, TEST_JWT_SECRET } from '../support/jwt.js'

const env = { JWT_SECRET: TEST_JWT_SECRET, RATE_LIMIT_TOKEN: '100000/minute', ANOMALY_MAX_FAILURES: '100000/minute' }

t.test('sub without scope token:delegate is 403 FORBIDDEN', async (t) => {
  const app = await buildApp(t, env)
  for (const scopes of [[], ['publish'], ['admin', 'publish']]) {
    const { apiKey } = await createKey(app, { scopes })
    const res = await requestToken(app, apiKey, '127.0.0.1', { sub: 'user-42' })
    t.equal(outcome(res), '403 FORBIDDEN', `scopes [${scopes.join(', ')}]`)
    t.notOk('accessToken' in res.json(), 'no token')
  }
  t.equal(outcome(await app.inject({ method: 'POST', url: '/auth/token', headers: adminHeaders, payload: { sub: 'user-42' } })), '403 FORBIDDEN', 'nor ADMIN_API_KEY')
})

t.test('a delegated token names the end user, keeps the key, and never widens', async (t) => {
  const app = await buildApp(t, env)
  const { id, apiKey } = await createKey(app, { scopes: ['admin', 'publish', 'token:delegate'] })
  const own = decodeToken(await mintToken(app, apiKey)).payload
  t.equal(own.scope, 'admin publish token:delegate', 'the key itself gets all its scopes')

  const token = await mintToken(app, apiKey, { sub: 'user-42', namespaces: ['/chat'] })
  const { payload } = decodeToken(token)
  t.equal(payload.sub, 'user-42', 'sub is the end user')
  t.equal(payload.kid, id, 'kid is the key')
  t.equal(payload.scope, 'publish', 'admin and token:delegate are never delegated')
  t.same(payload.ns, ['/chat'])
  const principal = await app.authenticateToken(token, '127.0.0.1')
  t.match(principal, { keyId: id, sub: 'user-42', scopes: ['publish'], via: 'token' })

  t.equal(outcome(await adminWithBearer(app, token)), '403 FORBIDDEN', 'a delegated token is not admin even from an admin key')
  const again = await app.inject({ method: 'POST', url: '/auth/token', headers: { authorization: `Bearer ${token}` }, payload: { sub: 'user-43' } })
  t.equal(outcome(again), '401 UNAUTHORIZED', 'a token cannot mint tokens (only a key can)')
  t.equal(outcome(await requestToken(app, apiKey, '127.0.0.1', { sub: 'has space' })), '400 VALIDATION_FAILED')
})

t.test('a delegated token carries nothing its key does not have', async (t) => {
  const app = await buildApp(t, env)
  const delegateOnly = await createKey(app, { scopes: ['token:delegate'] })
  const bare = await mintToken(app, delegateOnly.apiKey, { sub: 'user-1' })
  t.equal(decodeToken(bare).payload.scope, '', 'a key without publish delegates no scope')
  t.same((await app.authenticateToken(bare, '127.0.0.1')).scopes, [])

  const { id, apiKey } = await createKey(app, { scopes: ['publish', 'token:delegate'] })
  const token = await mintToken(app, apiKey, { sub: 'user-2' })
  t.same((await app.authenticateToken(token, '127.0.0.1')).scopes, ['publish'])
  const patched = await app.inject({ method: 'PATCH', url: `/v1/keys/${id}`, headers: adminHeaders, payload: { scopes: ['token:delegate'] } })
  t.equal(patched.statusCode, 200, patched.body)
  t.same((await app.authenticateToken(token, '127.0.0.1')).scopes, [], 'a scope removed from the key leaves its tokens at once')
  t.equal(await refusalCode(app.authenticateToken(token, '127.0.0.1')), 'ALLOWED', 'the token itself stays valid')
})

t.test('a delegated token never wears a key\'s identity (SPEC §14)', async (t) => {
  const app = await buildApp(t, { RATE_LIMIT_TOKEN: '1000/minute' })
  const delegator = await createKey(app, { scopes: ['token:delegate'] })
  const other = await createKey(app)
  const mint = async (sub: string): Promise<{ statusCode: number, code?: string }> => {
    const res = await app.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': delegator.apiKey }, payload: { sub } })
    return { statusCode: res.statusCode, code: res.json().code }
  }
  for (const [what, sub] of [['another key\'s id', other.id], ['its own key\'s id', delegator.id], ['the root admin\'s', 'root']]) {
    t.same(await mint(sub), { statusCode: 400, code: 'VALIDATION_FAILED' }, what)
  }
  t.equal((await mint('6f1c7e2a-5b7d-4c41-9a51-0e8f2d3b4c5d')).statusCode, 200, 'a UUID that is no key is a subject like any')
  t.equal((await mint('6f1c7e2a-5b7d-4c41-9a51-0e8f2d3b4c5d')).statusCode, 200, 'and stays one (the answer is kept)')
  t.equal((await mint(other.id.toUpperCase())).statusCode, 200, 'subjects compare exactly: an upper-cased id is another subject')
  t.equal((await mint('alice')).statusCode, 200)
})
