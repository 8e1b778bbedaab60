import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { ConfigError, parseConfig } from '../src/config.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

t.test('an empty environment gives the SPEC §2 defaults', async (t) => {
  const config = parseConfig({})
  t.equal(config.host, '127.0.0.1')
  t.equal(config.port, 3000)
  t.equal(config.databaseUrl, undefined, 'no DATABASE_URL: embedded PGlite')
  t.equal(config.dataDir, './.data')
  t.equal(config.redisUrl, undefined, 'no REDIS_URL: in-process stores')
  t.equal(config.production, false)
  t.equal(config.jwt.secret, undefined, 'dev secret is generated later')
  t.equal(config.jwt.ttl, 900)
  t.equal(config.jwt.issuer, 'spark-gateway')
  t.equal(config.jwt.audience, 'spark-gateway')
  t.equal(config.adminApiKey, undefined)
  t.equal(config.trustProxy, false)
  t.same(config.corsOrigins, [])
  t.equal(config.tls, undefined)
  t.equal(config.logLevel, 'info')
  t.same(config.rateLimit.token, { max: 10, windowMs: 60_000 })
  t.same(config.rateLimit.connect, { max: 60, windowMs: 60_000 })
  t.same(config.rateLimit.socket, { max: 50, windowMs: 1000 })
  t.same(config.anomaly, { maxFailures: { max: 20, windowMs: 60_000 }, blockSeconds: 300 })
  t.equal(config.socketMaxPayload, 65536)
  t.equal(config.bodyLimit, 65536)
  t.same(config.metricsAllow, [])
  t.equal(config.alertWebhookUrl, undefined)
})

t.test('empty strings count as unset, unknown variables are ignored', async (t) => {
  const config = parseConfig({ PORT: '', LOG_LEVEL: '', SOMETHING_ELSE: 'x', PATH: '/bin' })
  t.equal(config.port, 3000)
  t.equal(config.logLevel, 'info')
})

t.test('REDIS_URL without a shared signing key stops the start', async (t) => {
  t.throws(() => parseConfig({ REDIS_URL: 'redis://127.0.0.1:6379' }), { name: 'ConfigError', message: /^JWT_SECRET: required when REDIS_URL is set/ })
  t.doesNotThrow(() => parseConfig({ REDIS_URL: 'redis://127.0.0.1:6379', JWT_SECRET: 'y'.repeat(32) }))
})

t.test('good values are parsed into typed ones', async (t) => {
  const config = parseConfig({
    PORT: '8080',
    HOST: '0.0.0.0',
    DATABASE_URL: 'postgres://u@db/spark',
    REDIS_URL: 'rediss://cache:6380',
    JWT_SECRET: 'x'.repeat(32),
    NODE_ENV: 'production',
    RATE_LIMIT_TOKEN: '5/second',
    ANOMALY_MAX_FAILURES: '3/hour',
    TRUST_PROXY: '2',
    CORS_ORIGINS: 'https://a.example.com, http://localhost:5173',
    METRICS_ALLOW: '10.0.0.0/8,::1',
    BODY_LIMIT: '1024'
  })
  t.equal(config.port, 8080)
  t.equal(config.host, '0.0.0.0')
  t.equal(config.production, true)
  t.same(config.rateLimit.token, { max: 5, windowMs: 1000 })
  t.same(config.anomaly.maxFailures, { max: 3, windowMs: 3_600_000 })
  t.equal(config.trustProxy, 2)
  t.same(config.corsOrigins, ['https://a.example.com', 'http://localhost:5173'])
  t.same(config.metricsAllow, ['10.0.0.0/8', '::1'])
  t.equal(config.bodyLimit, 1024)
  t.equal(parseConfig({ TRUST_PROXY: 'true' }).trustProxy, true)
  t.same(parseConfig({ TRUST_PROXY: '10.0.0.0/8' }).trustProxy, ['10.0.0.0/8'])
  t.same(parseConfig({ TRUST_PROXY: '10.0.0.1, fd00::/8, ::ffff:10.0.0.0/104' }).trustProxy, ['10.0.0.1', 'fd00::/8', '::ffff:10.0.0.0/104'])
  t.same(parseConfig({ METRICS_ALLOW: '127.0.0.1,::1' }).metricsAllow, ['127.0.0.1', '::1'])
})

t.test('a JWT_SECRET is measured in UTF-8 bytes', async (t) => {
  // 11 three-byte characters: 33 bytes, though only 11 characters.
  t.equal(parseConfig({ JWT_SECRET: '€'.repeat(11) }).jwt.secret, '€'.repeat(11))
  t.throws(() => parseConfig({ JWT_SECRET: 'a'.repeat(31) }), ConfigError)
})

t.test('each bad value throws a ConfigError whose message starts with the variable', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spark-config-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const keyFile = join(dir, 'key.pem')
  writeFileSync(keyFile, '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n')
  const notPem = join(dir, 'cert.txt')
  writeFileSync(notPem, 'hello')

  const cases: Array<[string, Record<string, string>]> = [
    ['PORT', { PORT: 'abc' }],
    ['PORT', { PORT: '70000' }],
    ['PORT', { PORT: '-1' }],
    ['RATE_LIMIT_TOKEN', { RATE_LIMIT_TOKEN: '10/day' }],
    ['RATE_LIMIT_TOKEN', { RATE_LIMIT_TOKEN: '0/minute' }],
    ['RATE_LIMIT_CONNECT', { RATE_LIMIT_CONNECT: 'ten/minute' }],
    ['ANOMALY_MAX_FAILURES', { ANOMALY_MAX_FAILURES: '20' }],
    ['JWT_SECRET', { JWT_SECRET: 'too-short' }],
    ['JWT_SECRET', { NODE_ENV: 'production' }],
    ['JWT_TTL', { JWT_TTL: '0' }],
    ['DATABASE_URL', { DATABASE_URL: 'mysql://x' }],
    ['REDIS_URL', { REDIS_URL: 'http://x' }],
    ['CORS_ORIGINS', { CORS_ORIGINS: 'not-a-url' }],
    ['CORS_ORIGINS', { CORS_ORIGINS: 'https://ok.example.com,https://slash.example.com/' }],
    ['METRICS_ALLOW', { METRICS_ALLOW: '999.1.1.1/8' }],
    ['METRICS_ALLOW', { METRICS_ALLOW: '10.0.0.0/33' }],
    ['TRUST_PROXY', { TRUST_PROXY: 'yes please' }],
    ['TRUST_PROXY', { TRUST_PROXY: '1000' }],
    ['TRUST_PROXY', { TRUST_PROXY: '10.0.0.0/8,127.1' }],
    ['METRICS_ALLOW', { METRICS_ALLOW: '10' }],
    ['METRICS_ALLOW', { METRICS_ALLOW: '0x7f.0.0.1' }],
    ['METRICS_ALLOW', { METRICS_ALLOW: '10.0.0.0/8/8' }],
    ['METRICS_ALLOW', { METRICS_ALLOW: '10.0.0.0/' }],
    ['TLS_CERT_FILE', { TLS_CERT_FILE: join(dir, 'missing.pem'), TLS_KEY_FILE: keyFile }],
    ['TLS_CERT_FILE', { TLS_CERT_FILE: notPem, TLS_KEY_FILE: keyFile }],
    ['TLS_KEY_FILE', { TLS_CERT_FILE: notPem }],
    ['LOG_LEVEL', { LOG_LEVEL: 'loud' }],
    ['ADMIN_API_KEY', { ADMIN_API_KEY: 'short-admin-key' }],
    ['BODY_LIMIT', { BODY_LIMIT: '1kb' }],
    ['SOCKET_MAX_PAYLOAD', { SOCKET_MAX_PAYLOAD: '10' }],
    ['ALERT_WEBHOOK_URL', { ALERT_WEBHOOK_URL: 'ftp://alerts' }]
  ]
  for (const [variable, env] of cases) {
    let thrown: unknown
    try {
      parseConfig(env)
    } catch (err) {
      thrown = err
    }
    t.ok(thrown instanceof ConfigError, `${JSON.stringify(env)} throws a ConfigError`)
    const message = (thrown as Error | undefined)?.message ?? ''
    t.ok(message.startsWith(`${variable}: `), `${JSON.stringify(env)} names ${variable}: "${message}"`)
    t.notOk(message.includes('\n'), 'the message is one line')
  }
})

t.test('a refused secret or credential URL is not echoed in the error', async (t) => {
  const secret = 'short-secret-Zq9'
  t.throws(() => parseConfig({ JWT_SECRET: secret }), ConfigError)
  try { parseConfig({ JWT_SECRET: secret }) } catch (err) { t.notOk((err as Error).message.includes(secret)) }
  try { parseConfig({ ADMIN_API_KEY: secret }) } catch (err) { t.notOk((err as Error).message.includes(secret)) }
  try {
    parseConfig({ DATABASE_URL: 'mysql://app:hunter2-password@db/x' })
    t.fail('mysql URL accepted')
  } catch (err) {
    t.ok((err as Error).message.startsWith('DATABASE_URL: '))
    t.notOk((err as Error).message.includes('hunter2-password'), 'the password in the URL is not printed')
  }
})

t.test('the server exits 1 with one line on stderr naming the bad variable', async (t) => {
  // A clean environment: nothing of the test runner's leaks into the server.
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', PORT: 'abc', DATA_DIR: 'memory://' }
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  // Only a guard against a hang: starting under tsx takes seconds on a loaded machine.
  const timer = setTimeout(() => { child.kill('SIGKILL') }, 60_000)
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
  clearTimeout(timer)
  t.equal(code, 1, 'exit code 1')
  const lines = stderr.split('\n').filter((l) => l.length > 0)
  t.equal(lines.length, 1, `exactly one line on stderr: ${JSON.stringify(stderr)}`)
  t.match(lines[0], /^PORT: /, 'the line names PORT first')
  t.equal(stdout, '', 'nothing on stdout')
})
