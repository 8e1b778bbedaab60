import { generateKeyPairSync } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { adminHeaders, buildApp, buildFrom, createKey, isolatedEnv, mintToken, sleep } from '../helper.js'
import { adminWithBearer, outcome, refusalCode, requestToken } from '../support/auth.js'
import { decodeToken, handToken, TEST_JWT_SECRET, validClaims } from '../support/jwt.js'
import { eventually, WAIT_MS } from '../support/sockets.js'

const env = { JWT_SECRET: TEST_JWT_SECRET, JWT_TTL: '600', RATE_LIMIT_TOKEN: '100000/minute', ANOMALY_MAX_FAILURES: '100000/minute' }

t.test('a key mints a token that carries every claim and authenticates', async (t) => {
  const app = await buildApp(t, env)
  const { id, apiKey } = await createKey(app, { scopes: ['publish'] })
  const before = Math.floor(Date.now() / 1000)
  const res = await requestToken(app, apiKey)
  const after = Math.floor(Date.now() / 1000)
  t.equal(res.statusCode, 200, res.body)
  const body = res.json<{ accessToken: string, tokenType: string, expiresIn: number, expiresAt: string }>()
  t.equal(body.tokenType, 'Bearer')
  t.equal(body.expiresIn, 600, 'expiresIn is JWT_TTL by default')
  const { header, payload } = decodeToken(body.accessToken)
  t.equal(header.alg, 'HS256')
  t.equal(payload.sub, id)
  t.equal(payload.kid, id)
  t.match(payload.jti, /^[0-9a-f-]{36}$/)
  t.equal(payload.scope, 'publish')
  t.equal(payload.iss, 'spark-gateway')
  t.equal(payload.aud, 'spark-gateway')
  t.ok((payload.iat as number) >= before && (payload.iat as number) <= after, 'iat is now')
  t.equal((payload.exp as number) - (payload.iat as number), 600, 'exp is iat + ttl')
  t.equal(body.expiresAt, new Date((payload.exp as number) * 1000).toISOString(), 'expiresAt is exp')
  t.notOk('ns' in payload, 'no namespace claim unless asked')

  const principal = await app.authenticateToken(body.accessToken, '127.0.0.1')
  t.equal(payload.kgen, 0, 'the generation of the secret it was minted from: a new key has never been rotated')
  t.same({ ...principal }, { keyId: id, sub: id, tenant: 'default', scopes: ['publish'], policyId: null, ns: undefined, jti: payload.jti, exp: payload.exp, keyGeneration: 0, rateLimit: null, maxConnections: null, via: 'token' })

  const second = decodeToken((await requestToken(app, apiKey)).json<{ accessToken: string }>().accessToken)
  t.not(second.payload.jti, payload.jti, 'every token has its own jti')
})

t.test('ttl shortens a token, never lengthens it past JWT_TTL', async (t) => {
  const app = await buildApp(t, env)
  const { apiKey } = await createKey(app)
  const short = await requestToken(app, apiKey, '127.0.0.1', { ttl: 60 })
  t.equal(short.statusCode, 200, short.body)
  t.equal(short.json().expiresIn, 60)
  const { payload } = decodeToken(short.json<{ accessToken: string }>().accessToken)
  t.equal((payload.exp as number) - (payload.iat as number), 60)
  t.equal((await requestToken(app, apiKey, '127.0.0.1', { ttl: 600 })).statusCode, 200, 'ttl = JWT_TTL is allowed')
  const long = await requestToken(app, apiKey, '127.0.0.1', { ttl: 601 })
  t.equal(outcome(long), '400 VALIDATION_FAILED')
  t.equal(outcome(await requestToken(app, apiKey, '127.0.0.1', { ttl: '60' })), '400 VALIDATION_FAILED', 'no coercion')
  t.equal(outcome(await requestToken(app, apiKey, '127.0.0.1', { ttl: 0 })), '400 VALIDATION_FAILED')
})

t.test('namespaces land in the ns claim and in the principal', async (t) => {
  const app = await buildApp(t, env)
  const { apiKey } = await createKey(app)
  const token = await mintToken(app, apiKey, { namespaces: ['/chat', '/notification'] })
  t.same(decodeToken(token).payload.ns, ['/chat', '/notification'])
  t.same((await app.authenticateToken(token, '127.0.0.1')).ns, ['/chat', '/notification'])
  t.equal(outcome(await requestToken(app, apiKey, '127.0.0.1', { namespaces: ['chat'] })), '400 VALIDATION_FAILED', 'a namespace starts with /')
})

t.test('the key in the body works like the header', async (t) => {
  const app = await buildApp(t, env)
  const { id, apiKey } = await createKey(app)
  const res = await app.inject({ method: 'POST', url: '/auth/token', payload: { apiKey, ttl: 30 } })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().expiresIn, 30)
  t.equal((await app.authenticateToken(res.json<{ accessToken: string }>().accessToken, '127.0.0.1')).keyId, id)

  const wrongBody = await app.inject({ method: 'POST', url: '/auth/token', payload: { apiKey: `spk_${id}_wrong` } })
  const wrongHeader = await requestToken(app, `spk_${id}_wrong`)
  t.equal(outcome(wrongBody), '401 UNAUTHORIZED')
  t.same(wrongBody.json(), wrongHeader.json(), 'the same refusal either way')
  t.equal(outcome(await app.inject({ method: 'POST', url: '/auth/token' })), '401 UNAUTHORIZED', 'no key at all')
  t.equal(outcome(await app.inject({ method: 'POST', url: '/auth/token', payload: { apiKey: 42 } })), '401 UNAUTHORIZED', 'a non-string key is no key')
})

t.test('tokens the gateway did not mint as they are are refused, never with a 500', async (t) => {
  const app = await buildApp(t, env)
  const admin = await createKey(app, { scopes: ['admin'] })
  const good = await mintToken(app, admin.apiKey)
  t.equal((await adminWithBearer(app, good)).statusCode, 200, 'the genuine token opens an admin endpoint')
  const now = Math.floor(Date.now() / 1000)
  const hs = { alg: 'HS256', typ: 'JWT' }
  const secret = { hmacKey: TEST_JWT_SECRET }
  const { payload: goodPayload, header: goodHeader, signature: goodSignature } = decodeToken(good)
  // A claim set to undefined is left out of the JSON.
  const claimsWithoutExp = validClaims(admin.id, { exp: undefined })

  const cases: Array<[string, string, string]> = [
    ['expired (signed with the right secret)', app.jwt.sign({ ...validClaims(admin.id), iat: now - 120, exp: now - 60 }), 'TOKEN_EXPIRED'],
    ['expired and signed with another secret', handToken(hs, validClaims(admin.id, { iat: now - 120, exp: now - 60 }), { hmacKey: 'another-secret-0123456789abcdefghijklmnop' }), 'UNAUTHORIZED'],
    ['not yet valid (nbf in the future)', app.jwt.sign({ ...validClaims(admin.id), nbf: now + 300 }), 'UNAUTHORIZED'],
    ['wrong iss', handToken(hs, validClaims(admin.id, { iss: 'someone-else' }), secret), 'UNAUTHORIZED'],
    ['wrong aud', handToken(hs, validClaims(admin.id, { aud: 'another-service' }), secret), 'UNAUTHORIZED'],
    ['no iss or aud', handToken(hs, validClaims(admin.id, { iss: undefined, aud: undefined }), secret), 'UNAUTHORIZED'],
    ['alg none', handToken({ alg: 'none', typ: 'JWT' }, validClaims(admin.id), 'none'), 'UNAUTHORIZED'],
    ['alg none with the genuine signature kept', `${Buffer.from(JSON.stringify({ ...goodHeader, alg: 'none' })).toString('base64url')}.${good.split('.')[1]}.${goodSignature}`, 'UNAUTHORIZED'],
    ['tampered payload (sub changed, signature kept)', `${good.split('.')[0]}.${Buffer.from(JSON.stringify({ ...goodPayload, sub: 'someone-else' })).toString('base64url')}.${goodSignature}`, 'UNAUTHORIZED'],
    ['wrong signature', handToken(hs, validClaims(admin.id), { hmacKey: 'another-secret-0123456789abcdefghijklmnop' }), 'UNAUTHORIZED'],
    ['signature cut off', good.slice(0, good.lastIndexOf('.') + 1), 'UNAUTHORIZED'],
    ['missing exp', handToken(hs, claimsWithoutExp, secret), 'UNAUTHORIZED'],
    ['exp not a number', handToken(hs, validClaims(admin.id, { exp: 'tomorrow' }), secret), 'UNAUTHORIZED'],
    ['missing kid claim', handToken(hs, validClaims(admin.id, { kid: undefined }), secret), 'UNAUTHORIZED'],
    ['kid of no key', handToken(hs, validClaims('no-such-key'), secret), 'UNAUTHORIZED'],
    ['scope not a string', handToken(hs, validClaims(admin.id, { scope: ['admin'] }), secret), 'UNAUTHORIZED'],
    ['header jwk (key of the signer embedded, right secret)', handToken({ ...hs, jwk: { kty: 'oct', k: Buffer.from(TEST_JWT_SECRET).toString('base64url') } }, validClaims(admin.id), secret), 'UNAUTHORIZED'],
    ['header jwk (attacker key embedded and used)', handToken({ ...hs, jwk: { kty: 'oct', k: Buffer.from('attacker-secret-0123456789abcdef').toString('base64url') } }, validClaims(admin.id), { hmacKey: 'attacker-secret-0123456789abcdef' }), 'UNAUTHORIZED'],
    ['header jku', handToken({ ...hs, jku: 'https://attacker.example/jwks.json' }, validClaims(admin.id), secret), 'UNAUTHORIZED'],
    ['header x5u', handToken({ ...hs, x5u: 'https://attacker.example/cert.pem' }, validClaims(admin.id), secret), 'UNAUTHORIZED'],
    ['header x5c', handToken({ ...hs, x5c: ['MIIB'] }, validClaims(admin.id), secret), 'UNAUTHORIZED'],
    ['unknown crit extension', handToken({ ...hs, crit: ['spark-ext'], 'spark-ext': true }, validClaims(admin.id), secret), 'UNAUTHORIZED'],
    ['crit naming a standard parameter', handToken({ ...hs, crit: ['exp'] }, validClaims(admin.id), secret), 'UNAUTHORIZED'],
    ['crit not an array', handToken({ ...hs, crit: 'spark-ext' }, validClaims(admin.id), secret), 'UNAUTHORIZED'],
    ['HS384 with the right secret', handToken({ alg: 'HS384', typ: 'JWT' }, validClaims(admin.id), secret), 'UNAUTHORIZED'],
    ['not a JWT', 'not-a-jwt', 'UNAUTHORIZED'],
    ['three empty parts', '..', 'UNAUTHORIZED'],
    ['header not JSON', `${Buffer.from('{alg').toString('base64url')}.${good.split('.')[1]}.${goodSignature}`, 'UNAUTHORIZED'],
    ['payload not an object', handToken(hs, [] as unknown as Record<string, unknown>, secret), 'UNAUTHORIZED']
  ]
  for (const [name, token, code] of cases) {
    t.equal(await refusalCode(app.authenticateToken(token, '127.0.0.1')), code, `authenticateToken: ${name}`)
    const res = await adminWithBearer(app, token)
    t.equal(outcome(res), `401 ${code}`, `GET /v1/keys: ${name}`)
  }
  t.equal((await adminWithBearer(app, good)).statusCode, 200, 'the genuine token still works (no blanket refusal)')
})

t.test('an asymmetric gateway serves its public key and refuses algorithm confusion', async (t) => {
  for (const kind of ['ed25519', 'ES256'] as const) {
    t.test(kind, async (t) => {
      const dir = await mkdtemp(join(tmpdir(), 'spark-jwt-'))
      t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
      const pair = kind === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
      const publicPem = pair.publicKey.export({ format: 'pem', type: 'spki' }).toString()
      await writeFile(join(dir, 'private.pem'), pair.privateKey.export({ format: 'pem', type: 'pkcs8' }))
      await writeFile(join(dir, 'public.pem'), publicPem)
      const app = await buildApp(t, { JWT_PRIVATE_KEY_FILE: join(dir, 'private.pem'), JWT_PUBLIC_KEY_FILE: join(dir, 'public.pem'), RATE_LIMIT_TOKEN: '100000/minute' })
      const alg = kind === 'ed25519' ? 'EdDSA' : 'ES256'

      const jwks = await app.inject('/.well-known/jwks.json')
      t.equal(jwks.statusCode, 200)
      const [jwk, ...more] = jwks.json<{ keys: Array<Record<string, unknown>> }>().keys
      t.equal(more.length, 0, 'one key')
      const expected = pair.publicKey.export({ format: 'jwk' })
      t.match(jwk, { ...expected, alg, use: 'sig' }, 'the configured public key')
      t.notOk('d' in jwk, 'never the private part')

      const admin = await createKey(app, { scopes: ['admin'] })
      const token = await mintToken(app, admin.apiKey)
      t.equal(decodeToken(token).header.alg, alg)
      t.equal((await app.authenticateToken(token, '127.0.0.1')).keyId, admin.id)
      t.equal((await adminWithBearer(app, token)).statusCode, 200)

      const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
      const attacks: Array<[string, string]> = [
        ['HS256 signed with the public key PEM as the HMAC secret', handToken({ alg: 'HS256', typ: 'JWT' }, validClaims(admin.id), { hmacKey: publicPem })],
        ['HS256 signed with the public key DER as the HMAC secret', handToken({ alg: 'HS256', typ: 'JWT' }, validClaims(admin.id), { hmacKey: pair.publicKey.export({ format: 'der', type: 'spki' }) })],
        ['RS256 signed by another key', handToken({ alg: 'RS256', typ: 'JWT' }, validClaims(admin.id), { privateKey: rsa.privateKey, digest: 'sha256' })],
        ['RS256 with that key embedded as jwk', handToken({ alg: 'RS256', typ: 'JWT', jwk: rsa.publicKey.export({ format: 'jwk' }) }, validClaims(admin.id), { privateKey: rsa.privateKey, digest: 'sha256' })],
        ['alg none', handToken({ alg: 'none', typ: 'JWT' }, validClaims(admin.id), 'none')]
      ]
      for (const [name, attack] of attacks) {
        t.equal(await refusalCode(app.authenticateToken(attack, '127.0.0.1')), 'UNAUTHORIZED', `authenticateToken: ${name}`)
        t.equal(outcome(await adminWithBearer(app, attack)), '401 UNAUTHORIZED', `GET /v1/keys: ${name}`)
      }
    })
  }
})

t.test('an HS256 gateway refuses a token signed with an asymmetric key', async (t) => {
  const app = await buildApp(t, env)
  const admin = await createKey(app, { scopes: ['admin'] })
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const rs = handToken({ alg: 'RS256', typ: 'JWT' }, validClaims(admin.id), { privateKey: rsa.privateKey, digest: 'sha256' })
  const es = handToken({ alg: 'ES256', typ: 'JWT' }, validClaims(admin.id), { privateKey: ec.privateKey, digest: 'sha256', dsaEncoding: 'ieee-p1363' })
  t.equal(outcome(await adminWithBearer(app, rs)), '401 UNAUTHORIZED')
  t.equal(outcome(await adminWithBearer(app, es)), '401 UNAUTHORIZED')
  t.same((await app.inject('/.well-known/jwks.json')).json(), { keys: [] }, 'no public key to serve')
})

t.test('revoking a key refuses every token minted from it', async (t) => {
  const app = await buildApp(t, env)
  const { id, apiKey } = await createKey(app, { scopes: ['publish'] })
  const other = await createKey(app, { scopes: ['publish'] })
  const tokens = [await mintToken(app, apiKey), await mintToken(app, apiKey)]
  const otherToken = await mintToken(app, other.apiKey)
  const revoked = await app.inject({ method: 'POST', url: `/v1/keys/${id}/revoke`, headers: adminHeaders })
  t.equal(revoked.statusCode, 200, revoked.body)
  for (const token of tokens) {
    t.equal(await refusalCode(app.authenticateToken(token, '127.0.0.1')), 'KEY_REVOKED')
    t.equal(outcome(await app.inject({ method: 'POST', url: '/auth/revoke', headers: { authorization: `Bearer ${token}` } })), '401 KEY_REVOKED')
  }
  t.equal(outcome(await requestToken(app, apiKey)), '401 KEY_REVOKED', 'the right secret of a revoked key learns KEY_REVOKED')
  t.equal(outcome(await requestToken(app, `spk_${id}_not-the-secret`)), '401 UNAUTHORIZED', 'a wrong secret learns nothing')
  t.equal(await refusalCode(app.authenticateToken(otherToken, '127.0.0.1')), 'ALLOWED', 'another key is untouched')
})

t.test('a key revoked on one instance refuses its tokens on another', async (t) => {
  const shared = await isolatedEnv(t, env)
  const a = await buildFrom(t, shared)
  const b = await buildFrom(t, shared)
  const { id, apiKey } = await createKey(a)
  const token = await mintToken(a, apiKey)
  t.equal(await refusalCode(b.authenticateToken(token, '127.0.0.1')), 'ALLOWED', 'B caches the active key')
  t.equal((await a.inject({ method: 'POST', url: `/v1/keys/${id}/revoke`, headers: adminHeaders })).statusCode, 200)
  const revokedAt = Date.now()
  // Polled, not read once after a sleep: B hears of it through Redis, later on a loaded machine.
  await eventually(async () => await refusalCode(b.authenticateToken(token, '127.0.0.1')) === 'KEY_REVOKED', WAIT_MS, 'B refuses the token').catch(() => {})
  const heardAfter = Date.now() - revokedAt
  t.equal(await refusalCode(b.authenticateToken(token, '127.0.0.1')), 'KEY_REVOKED', `B refuses it (${heardAfter} ms after the revoke answered)`)
  t.ok(heardAfter < 1000, 'within one second')
})

t.test('POST /auth/revoke revokes that token only', async (t) => {
  const shared = await isolatedEnv(t, env)
  const app = await buildFrom(t, shared)
  const peer = await buildFrom(t, shared)
  const { apiKey } = await createKey(app, { scopes: ['publish'] })
  const first = await mintToken(app, apiKey)
  const second = await mintToken(app, apiKey)
  const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

  t.equal(outcome(await app.inject({ method: 'POST', url: '/auth/revoke', headers: { 'x-api-key': apiKey } })), '401 UNAUTHORIZED', 'a key has no token to revoke')
  const res = await app.inject({ method: 'POST', url: '/auth/revoke', headers: bearer(first) })
  t.equal(res.statusCode, 204, res.body)
  t.equal(res.body, '')
  t.equal(await refusalCode(app.authenticateToken(first, '127.0.0.1')), 'TOKEN_REVOKED')
  t.equal(await refusalCode(peer.authenticateToken(first, '127.0.0.1')), 'TOKEN_REVOKED', 'on every instance')
  t.equal(outcome(await app.inject({ method: 'POST', url: '/auth/revoke', headers: bearer(first) })), '401 TOKEN_REVOKED')
  t.equal(await refusalCode(app.authenticateToken(second, '127.0.0.1')), 'ALLOWED', 'another token of the same key still works')
  t.equal((await requestToken(app, apiKey)).statusCode, 200, 'the key still mints')
})

t.test('a rotated key stops accepting its old secret after the grace period', async (t) => {
  const app = await buildApp(t, env)
  const { id, apiKey: original } = await createKey(app)
  const tokenBefore = await mintToken(app, original)

  // 3 s of grace: the checks inside it took up to 407 ms on a loaded 2-core machine.
  const rotated = await app.inject({ method: 'POST', url: `/v1/keys/${id}/rotate`, headers: adminHeaders, payload: { gracePeriodSeconds: 3 } })
  const graceOverAt = Date.now() + 3000
  t.equal(rotated.statusCode, 200, rotated.body)
  const next = rotated.json<{ apiKey: string }>().apiKey
  t.not(next, original)
  t.ok(next.startsWith(`spk_${id}_`), 'same key id, new secret')
  t.equal((await requestToken(app, original)).statusCode, 200, 'old secret works within the grace period')
  t.equal((await requestToken(app, next)).statusCode, 200, 'new secret works')
  const tokenInGrace = await mintToken(app, original)
  const tokenAfter = await mintToken(app, next)
  t.equal(await refusalCode(app.authenticateToken(tokenBefore, '127.0.0.1')), 'ALLOWED', 'a token minted before the rotation works within the grace period')
  await sleep(graceOverAt + 300 - Date.now())
  t.equal(outcome(await requestToken(app, original)), '401 UNAUTHORIZED', 'old secret refused after the grace period')
  t.equal((await requestToken(app, next)).statusCode, 200, 'new secret still works')
  t.equal(await refusalCode(app.authenticateToken(tokenBefore, '127.0.0.1')), 'TOKEN_REVOKED', 'a token minted before the rotation stops with the grace period (SPEC §3)')
  t.equal(await refusalCode(app.authenticateToken(tokenInGrace, '127.0.0.1')), 'TOKEN_REVOKED', 'so does one minted from the old secret during the grace')
  t.equal(await refusalCode(app.authenticateToken(tokenAfter, '127.0.0.1')), 'ALLOWED', 'one minted from the new secret works')

  // The body is optional by the route schema, but an empty POST is refused today (reported): send {}.
  const again = await app.inject({ method: 'POST', url: `/v1/keys/${id}/rotate`, headers: adminHeaders, payload: {} })
  t.equal(again.statusCode, 200)
  t.equal(outcome(await requestToken(app, next)), '401 UNAUTHORIZED', 'no grace period: refused at once')
  t.equal((await requestToken(app, again.json<{ apiKey: string }>().apiKey)).statusCode, 200)
})
