import { writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { ConfigError, parseConfig } from '../../src/config.js'
import { ADMIN_KEY, buildApp, connect, connected, createKey, createPolicy, mintToken } from '../helper.js'
import { failedStart, selfSignedCert } from '../support/ops.js'

/* SPEC §2 TLS_CERT_FILE/TLS_KEY_FILE: HTTPS and WSS served directly; bad TLS, CORS or METRICS_ALLOW input stops the start. */

async function httpsPost (port: number, path: string, headers: Record<string, string>, ca: Buffer): Promise<{ status: number, headers: Record<string, unknown>, body: string }> {
  return await new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, method: 'POST', ca, headers: { ...headers, 'content-type': 'application/json' } }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (chunk: string) => { body += chunk }).on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body }) })
    })
    req.on('error', reject)
    req.end('{}')
  })
}

/** A plain-HTTP request: resolves with its status, or the network error's code. */
async function plainHttp (port: number): Promise<string> {
  return await new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/health/live', timeout: 3000 }, (res) => { res.resume(); resolve(`HTTP ${res.statusCode}`) })
    req.on('timeout', () => { req.destroy(new Error('timeout')) })
    req.on('error', (err: NodeJS.ErrnoException) => { resolve(err.code ?? err.message) })
    req.end()
  })
}

t.test('with TLS_CERT_FILE/TLS_KEY_FILE: HTTPS and WSS work, plain HTTP does not', async (t) => {
  const { certFile, keyFile, cert } = await selfSignedCert(t)
  const app = await buildApp(t, { TLS_CERT_FILE: certFile, TLS_KEY_FILE: keyFile })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  const policyId = await createPolicy(app, [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], rooms: ['lobby'] }])
  const { apiKey } = await createKey(app, { policyId, scopes: ['token:delegate'] })

  const res = await httpsPost(port, '/auth/token', { 'x-api-key': apiKey }, cert)
  t.equal(res.status, 200, 'HTTPS POST /auth/token, certificate verified against its CA')
  t.type(JSON.parse(res.body).accessToken, 'string')
  t.match(res.headers['strict-transport-security'], /max-age=/, 'HSTS over HTTPS')

  const url = `https://127.0.0.1:${port}`
  const alice = connect(t, `${url}/chat`, { ca: cert.toString('utf8'), auth: { token: await mintToken(app, apiKey, { sub: 'alice' }) } })
  const bob = connect(t, `${url}/chat`, { rejectUnauthorized: false, auth: { token: await mintToken(app, apiKey, { sub: 'bob' }) } })
  await Promise.all([connected(alice), connected(bob)])
  t.ok(alice.io.engine.transport.name === 'websocket', 'WSS transport')
  t.same(await bob.emitWithAck('join', { room: 'lobby' }), { ok: true })
  const received = new Promise<{ data: unknown }>((resolve) => bob.once('message', resolve))
  t.equal((await alice.emitWithAck('message', { room: 'lobby', data: 'over tls' })).ok, true)
  t.same((await received).data, 'over tls', 'relayed over WSS')

  const plain = await plainHttp(port)
  t.notMatch(plain, /^HTTP /, `plain HTTP to the TLS port gets no HTTP answer (${plain})`)
  const plainSocket = connect(t, `http://127.0.0.1:${port}/chat`, { auth: { token: 'x' }, timeout: 3000 })
  await t.rejects(connected(plainSocket), 'plain WebSocket to the TLS port fails')
  const untrusted = connect(t, `${url}/chat`, { auth: { token: 'x' }, timeout: 3000 })
  const err = await connected(untrusted).catch((e: Error) => e)
  t.ok(err instanceof Error, `an unknown CA is refused by the client (${String(err)})`)
})

t.test('bad TLS files are a ConfigError naming the variable', async (t) => {
  const { dir, certFile, keyFile } = await selfSignedCert(t)
  const other = await selfSignedCert(t)
  const textFile = join(dir, 'text.pem')
  await writeFile(textFile, 'hello, not a certificate\n')
  const armoured = join(dir, 'armoured.pem')
  await writeFile(armoured, '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n')
  const env = (overrides: Record<string, string>): Record<string, string> => ({ DATA_DIR: 'memory://', TLS_CERT_FILE: certFile, TLS_KEY_FILE: keyFile, ...overrides })
  /** The ConfigError parseConfig throws for `overrides` ('accepted' when it throws none). */
  const refusal = (overrides: Record<string, string>): string => {
    try {
      parseConfig(env(overrides))
      return 'accepted'
    } catch (err) {
      return err instanceof ConfigError ? err.message : `not a ConfigError: ${String(err)}`
    }
  }

  t.ok(parseConfig(env({})).tls, 'the good pair is accepted')
  t.match(refusal({ TLS_CERT_FILE: join(dir, 'missing.pem') }), /^TLS_CERT_FILE: /, 'a missing certificate file')
  t.match(refusal({ TLS_CERT_FILE: textFile }), /^TLS_CERT_FILE: /, 'a certificate file that is not PEM')
  t.match(refusal({ TLS_CERT_FILE: keyFile }), /^TLS_CERT_FILE: /, 'a key where the certificate goes')
  t.match(refusal({ TLS_KEY_FILE: certFile }), /^TLS_KEY_FILE: /, 'a certificate where the key goes')
  t.match(refusal({ TLS_KEY_FILE: '' }), /^TLS_KEY_FILE: /, 'a certificate without its key')
  t.match(refusal({ TLS_CERT_FILE: armoured }), /^TLS_CERT_FILE: /, 'PEM armour around bytes that are not a certificate')
  t.match(refusal({ TLS_KEY_FILE: other.keyFile }), /^TLS_KEY_FILE: /, 'a key that does not match the certificate')
})

t.test('the server exits 1 with one line naming a bad variable', async (t) => {
  const { dir, keyFile } = await selfSignedCert(t)
  const textFile = join(dir, 'text.pem')
  await writeFile(textFile, 'hello, not a certificate\n')
  // Otherwise a startable environment (embedded stores): only the bad variable can stop the start.
  const base = { DATA_DIR: 'memory://', ADMIN_API_KEY: ADMIN_KEY, PORT: '0', LOG_LEVEL: 'warn' }
  const cases: Array<[string, Record<string, string>]> = [
    ['TLS_CERT_FILE', { TLS_CERT_FILE: join(dir, 'missing.pem'), TLS_KEY_FILE: keyFile }],
    ['TLS_CERT_FILE', { TLS_CERT_FILE: textFile, TLS_KEY_FILE: keyFile }],
    ['CORS_ORIGINS', { CORS_ORIGINS: 'https://app.example.com,not an origin' }],
    ['METRICS_ALLOW', { METRICS_ALLOW: '127.0.0.1,localhost' }]
  ]
  const results = await Promise.all(cases.map(async ([, overrides]) => await failedStart(t, { ...base, ...overrides })))
  for (const [i, [variable, overrides]] of cases.entries()) {
    const { code, lines } = results[i]
    t.equal(code, 1, `${JSON.stringify(overrides)} → exit 1`)
    t.equal(lines.length, 1, `one stderr line (${JSON.stringify(lines)})`)
    t.match(lines[0], new RegExp(`^${variable}: \\S`), `it names ${variable}`)
  }
})
