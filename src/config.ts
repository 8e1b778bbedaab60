import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { isCidr } from './net/ip.js'
import { NAMESPACES } from './protocol/namespaces.js'

/**
 * The environment as the gateway reads it (SPEC §2). Every variable is a
 * string in the schema, so that one TypeBox check can name the first bad one;
 * `parseConfig` then turns the checked strings into typed values.
 */
const RATE = '^[1-9][0-9]{0,8}/(second|minute|hour)$'
const INT = '^(0|[1-9][0-9]{0,9})$'

export const EnvSchema = Type.Object({
  NODE_ENV: Type.Optional(Type.String()),
  HOST: Type.Optional(Type.String({ minLength: 1 })),
  PORT: Type.Optional(Type.String({ pattern: INT })),
  DATABASE_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
  DATA_DIR: Type.Optional(Type.String({ minLength: 1 })),
  REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://' })),
  REDIS_KEY_PREFIX: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9:_.-]{0,64}$' })),
  JWT_SECRET: Type.Optional(Type.String()),
  JWT_PRIVATE_KEY_FILE: Type.Optional(Type.String({ minLength: 1 })),
  JWT_PUBLIC_KEY_FILE: Type.Optional(Type.String({ minLength: 1 })),
  JWT_TTL: Type.Optional(Type.String({ pattern: INT })),
  JWT_ISSUER: Type.Optional(Type.String({ minLength: 1 })),
  JWT_AUDIENCE: Type.Optional(Type.String({ minLength: 1 })),
  ADMIN_API_KEY: Type.Optional(Type.String({ minLength: 32, maxLength: 1024 })),
  TRUST_PROXY: Type.Optional(Type.String()),
  CORS_ORIGINS: Type.Optional(Type.String()),
  TLS_CERT_FILE: Type.Optional(Type.String({ minLength: 1 })),
  TLS_KEY_FILE: Type.Optional(Type.String({ minLength: 1 })),
  LOG_LEVEL: Type.Optional(Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)))),
  RATE_LIMIT_TOKEN: Type.Optional(Type.String({ pattern: RATE })),
  RATE_LIMIT_CONNECT: Type.Optional(Type.String({ pattern: RATE })),
  RATE_LIMIT_SOCKET: Type.Optional(Type.String({ pattern: RATE })),
  ANOMALY_MAX_FAILURES: Type.Optional(Type.String({ pattern: RATE })),
  ANOMALY_BLOCK_SECONDS: Type.Optional(Type.String({ pattern: INT })),
  SOCKET_MAX_PAYLOAD: Type.Optional(Type.String({ pattern: INT })),
  SOCKET_MAX_DEPTH: Type.Optional(Type.String({ pattern: INT })),
  SOCKET_MAX_ROOMS: Type.Optional(Type.String({ pattern: INT })),
  MAX_CONNECTIONS_PER_IP: Type.Optional(Type.String({ pattern: INT })),
  RATE_LIMIT_TRANSPORT: Type.Optional(Type.String({ pattern: RATE })),
  BODY_LIMIT: Type.Optional(Type.String({ pattern: INT })),
  METRICS_ALLOW: Type.Optional(Type.String()),
  ALERT_WEBHOOK_URL: Type.Optional(Type.String({ pattern: '^https?://' })),
  PRESENCE_NAMESPACES: Type.Optional(Type.String()),
  PRESENCE_GRACE_SECONDS: Type.Optional(Type.String({ pattern: INT })),
  HISTORY_NAMESPACES: Type.Optional(Type.String()),
  HISTORY_SIZE: Type.Optional(Type.String({ pattern: INT })),
  HISTORY_TTL_SECONDS: Type.Optional(Type.String({ pattern: INT })),
  SOCKET_RECOVERY_SECONDS: Type.Optional(Type.String({ pattern: INT }))
})
export type Env = Static<typeof EnvSchema>

/** A limit such as `10/minute`: at most `max` events per `windowMs`. */
export interface Rate { max: number, windowMs: number }

export interface Config {
  production: boolean
  host: string
  port: number
  databaseUrl?: string
  dataDir: string
  redisUrl?: string
  redisKeyPrefix: string
  jwt: {
    secret?: string
    privateKeyFile?: string
    publicKeyFile?: string
    ttl: number
    issuer: string
    audience: string
  }
  adminApiKey?: string
  trustProxy: boolean | number | string[]
  corsOrigins: string[]
  tls?: { cert: Buffer, key: Buffer }
  logLevel: string
  rateLimit: { token: Rate, connect: Rate, socket: Rate, transport: Rate }
  anomaly: { maxFailures: Rate, blockSeconds: number }
  socketMaxPayload: number
  /** Nesting depth allowed in a packet's data, a handshake's auth and any JSON body. */
  maxJsonDepth: number
  /** Rooms a socket may be in besides the ones the gateway puts it in. */
  socketMaxRooms: number
  maxConnectionsPerIp: number
  bodyLimit: number
  metricsAllow: string[]
  alertWebhookUrl?: string
  /** SPEC §11: where presence:join/leave are sent, and how long a subject's last connection may be gone before its leave. */
  presence: { namespaces: string[], graceMs: number }
  /** SPEC §12: where rooms keep their last `size` messages for `ttlSeconds`. */
  history: { namespaces: string[], size: number, ttlSeconds: number }
  /** Socket.IO's own connection-state recovery window; 0 (the default) leaves it off: `join` with `since` recovers instead. */
  socketRecoverySeconds: number
}

/** A configuration problem: the message is the one line the process prints before exiting 1. */
export class ConfigError extends Error {
  constructor (variable: string, problem: string) {
    super(`${variable}: ${problem}`)
    this.name = 'ConfigError'
  }
}

const WINDOWS: Record<string, number> = { second: 1000, minute: 60_000, hour: 3_600_000 }

function parseRate (value: string): Rate {
  const [max, unit] = value.split('/')
  return { max: Number(max), windowMs: WINDOWS[unit] }
}

function parseCidrList (variable: string, value: string | undefined): string[] {
  const items = splitList(value)
  for (const item of items) {
    if (!isCidr(item)) throw new ConfigError(variable, `"${item}" is not an IP address or CIDR range`)
  }
  return items
}

function splitList (value: string | undefined): string[] {
  return (value ?? '').split(',').map((s) => s.trim()).filter((s) => s.length > 0)
}

function parseTrustProxy (value: string | undefined): Config['trustProxy'] {
  if (value === undefined || value === '' || value === 'false') return false
  if (value === 'true') return true
  if (/^[0-9]{1,3}$/.test(value)) return Number(value)
  return parseCidrList('TRUST_PROXY', value)
}

function parseOrigins (value: string | undefined): string[] {
  const origins = splitList(value)
  for (const origin of origins) {
    let url: URL
    try {
      url = new URL(origin)
    } catch {
      throw new ConfigError('CORS_ORIGINS', `"${origin}" is not an origin such as https://app.example.com`)
    }
    if (url.origin !== origin) throw new ConfigError('CORS_ORIGINS', `"${origin}" is not an origin such as https://app.example.com (no path or trailing slash)`)
  }
  return origins
}

function readTls (env: Env): Config['tls'] {
  if (env.TLS_CERT_FILE === undefined && env.TLS_KEY_FILE === undefined) return undefined
  if (env.TLS_CERT_FILE === undefined) throw new ConfigError('TLS_CERT_FILE', 'required when TLS_KEY_FILE is set')
  if (env.TLS_KEY_FILE === undefined) throw new ConfigError('TLS_KEY_FILE', 'required when TLS_CERT_FILE is set')
  const cert = readPem('TLS_CERT_FILE', env.TLS_CERT_FILE, 'CERTIFICATE')
  const key = readPem('TLS_KEY_FILE', env.TLS_KEY_FILE, 'PRIVATE KEY')
  // Parse both now, so a damaged file or a mismatched pair stops the start naming the variable, not inside the TLS stack.
  let certificate: X509Certificate
  try { certificate = new X509Certificate(cert) } catch { throw new ConfigError('TLS_CERT_FILE', `${env.TLS_CERT_FILE} is not a valid PEM certificate`) }
  let privateKey: KeyObject
  try { privateKey = createPrivateKey(key) } catch { throw new ConfigError('TLS_KEY_FILE', `${env.TLS_KEY_FILE} is not a valid PEM private key`) }
  if (!certificate.checkPrivateKey(privateKey)) throw new ConfigError('TLS_KEY_FILE', `${env.TLS_KEY_FILE} does not match the certificate in TLS_CERT_FILE`)
  return { cert, key }
}

function readPem (variable: string, file: string, label: string): Buffer {
  let content: Buffer
  try {
    content = readFileSync(file)
  } catch (err) {
    throw new ConfigError(variable, `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  if (!content.toString('utf8').includes(label)) throw new ConfigError(variable, `${file} is not a PEM ${label.toLowerCase()}`)
  return content
}

function firstSchemaError (env: Record<string, unknown>): ConfigError | undefined {
  const error = Value.Errors(EnvSchema, env).First()
  if (error === undefined) return undefined
  const variable = error.path.replace(/^\//, '')
  // The refused value helps the operator, but never a secret, nor a password inside a URL.
  const value = String(env[variable]).replace(/\/\/[^/@]*@/, '//***@').slice(0, 80)
  const shown = variable in env && !/SECRET|KEY$/.test(variable) ? ` (got "${value}")` : ''
  return new ConfigError(variable, `${describe(variable)}${shown}`)
}

function describe (variable: string): string {
  if (/^(RATE_LIMIT_|ANOMALY_MAX)/.test(variable)) return 'must be a limit such as 10/second, 60/minute or 100/hour'
  if (variable === 'DATABASE_URL') return 'must be a postgres:// URL'
  if (variable === 'REDIS_URL') return 'must be a redis:// or rediss:// URL'
  if (variable === 'ADMIN_API_KEY') return 'must be 32 to 1024 characters'
  if (variable === 'LOG_LEVEL') return 'must be one of fatal, error, warn, info, debug, trace, silent'
  if (variable === 'ALERT_WEBHOOK_URL') return 'must be an http:// or https:// URL'
  if (variable === 'REDIS_KEY_PREFIX') return 'must be up to 64 characters of A-Z a-z 0-9 : _ . -'
  return 'must be a non-negative integer'
}

/**
 * Reads the gateway configuration from an environment. Throws a ConfigError
 * naming the first bad variable; unknown variables are ignored.
 */
export function parseConfig (rawEnv: Record<string, string | undefined>): Config {
  const env: Record<string, string> = {}
  for (const name of Object.keys(EnvSchema.properties)) {
    const value = rawEnv[name]
    if (value !== undefined && value !== '') env[name] = value
  }
  const schemaError = firstSchemaError(env)
  if (schemaError !== undefined) throw schemaError
  const checked = env as Env

  const production = checked.NODE_ENV === 'production'
  const port = Number(checked.PORT ?? 3000)
  if (port > 65535) throw new ConfigError('PORT', 'must be 0 to 65535')
  const ttl = Number(checked.JWT_TTL ?? 900)
  if (ttl < 1 || ttl > 86_400) throw new ConfigError('JWT_TTL', 'must be 1 to 86400 seconds')
  const secret = checked.JWT_SECRET
  if (secret !== undefined && Buffer.byteLength(secret, 'utf8') < 32) throw new ConfigError('JWT_SECRET', 'must be at least 32 bytes')
  const asymmetric = checked.JWT_PRIVATE_KEY_FILE !== undefined || checked.JWT_PUBLIC_KEY_FILE !== undefined
  if (asymmetric && (checked.JWT_PRIVATE_KEY_FILE === undefined || checked.JWT_PUBLIC_KEY_FILE === undefined)) {
    throw new ConfigError(checked.JWT_PRIVATE_KEY_FILE === undefined ? 'JWT_PRIVATE_KEY_FILE' : 'JWT_PUBLIC_KEY_FILE', 'JWT_PRIVATE_KEY_FILE and JWT_PUBLIC_KEY_FILE go together')
  }
  if (production && secret === undefined && !asymmetric) throw new ConfigError('JWT_SECRET', 'required when NODE_ENV=production')
  // Instances sharing Redis accept each other's tokens only with one shared signing key; a generated one is per DATA_DIR.
  if (checked.REDIS_URL !== undefined && secret === undefined && !asymmetric) throw new ConfigError('JWT_SECRET', 'required when REDIS_URL is set (every instance must verify the tokens of the others)')
  const socketMaxPayload = Number(checked.SOCKET_MAX_PAYLOAD ?? 65536)
  if (socketMaxPayload < 64) throw new ConfigError('SOCKET_MAX_PAYLOAD', 'must be at least 64 bytes')
  const maxJsonDepth = Number(checked.SOCKET_MAX_DEPTH ?? 32)
  if (maxJsonDepth < 1 || maxJsonDepth > 1000) throw new ConfigError('SOCKET_MAX_DEPTH', 'must be 1 to 1000')
  const socketMaxRooms = Number(checked.SOCKET_MAX_ROOMS ?? 128)
  if (socketMaxRooms < 1) throw new ConfigError('SOCKET_MAX_ROOMS', 'must be at least 1')
  const maxConnectionsPerIp = Number(checked.MAX_CONNECTIONS_PER_IP ?? 10_000)
  if (maxConnectionsPerIp < 1) throw new ConfigError('MAX_CONNECTIONS_PER_IP', 'must be at least 1')
  const historySize = Number(checked.HISTORY_SIZE ?? 100)
  if (historySize < 1 || historySize > 10_000) throw new ConfigError('HISTORY_SIZE', 'must be 1 to 10000')
  const historyTtl = Number(checked.HISTORY_TTL_SECONDS ?? 300)
  if (historyTtl < 1 || historyTtl > 86_400) throw new ConfigError('HISTORY_TTL_SECONDS', 'must be 1 to 86400 seconds')
  const presenceGrace = Number(checked.PRESENCE_GRACE_SECONDS ?? 5)
  if (presenceGrace > 3600) throw new ConfigError('PRESENCE_GRACE_SECONDS', 'must be 0 to 3600 seconds')
  const socketRecoverySeconds = Number(checked.SOCKET_RECOVERY_SECONDS ?? 0)
  if (socketRecoverySeconds > 600) throw new ConfigError('SOCKET_RECOVERY_SECONDS', 'must be 0 (off) to 600 seconds')
  const bodyLimit = Number(checked.BODY_LIMIT ?? 65536)
  if (bodyLimit < 64) throw new ConfigError('BODY_LIMIT', 'must be at least 64 bytes')

  return {
    production,
    host: checked.HOST ?? '127.0.0.1',
    port,
    databaseUrl: checked.DATABASE_URL,
    dataDir: checked.DATA_DIR ?? './.data',
    redisUrl: checked.REDIS_URL,
    redisKeyPrefix: checked.REDIS_KEY_PREFIX ?? 'spark:',
    jwt: {
      secret,
      privateKeyFile: checked.JWT_PRIVATE_KEY_FILE,
      publicKeyFile: checked.JWT_PUBLIC_KEY_FILE,
      ttl,
      issuer: checked.JWT_ISSUER ?? 'spark-gateway',
      audience: checked.JWT_AUDIENCE ?? 'spark-gateway'
    },
    adminApiKey: checked.ADMIN_API_KEY,
    trustProxy: parseTrustProxy(checked.TRUST_PROXY),
    corsOrigins: parseOrigins(checked.CORS_ORIGINS),
    tls: readTls(checked),
    logLevel: checked.LOG_LEVEL ?? 'info',
    rateLimit: {
      token: parseRate(checked.RATE_LIMIT_TOKEN ?? '10/minute'),
      connect: parseRate(checked.RATE_LIMIT_CONNECT ?? '60/minute'),
      socket: parseRate(checked.RATE_LIMIT_SOCKET ?? '50/second'),
      transport: parseRate(checked.RATE_LIMIT_TRANSPORT ?? '600/minute')
    },
    anomaly: {
      maxFailures: parseRate(checked.ANOMALY_MAX_FAILURES ?? '20/minute'),
      blockSeconds: Number(checked.ANOMALY_BLOCK_SECONDS ?? 300)
    },
    socketMaxPayload,
    maxJsonDepth,
    socketMaxRooms,
    maxConnectionsPerIp,
    bodyLimit,
    metricsAllow: parseCidrList('METRICS_ALLOW', checked.METRICS_ALLOW),
    alertWebhookUrl: checked.ALERT_WEBHOOK_URL,
    presence: { namespaces: parseNamespaceList('PRESENCE_NAMESPACES', checked.PRESENCE_NAMESPACES), graceMs: presenceGrace * 1000 },
    history: { namespaces: parseNamespaceList('HISTORY_NAMESPACES', checked.HISTORY_NAMESPACES), size: historySize, ttlSeconds: historyTtl },
    socketRecoverySeconds
  }
}

/** A comma list of the gateway's namespaces (default `/chat`); `none` for none. */
function parseNamespaceList (variable: string, value: string | undefined): string[] {
  if (value === undefined) return ['/chat']
  if (value.trim() === 'none') return []
  const names = value.split(',').map((name) => name.trim()).filter((name) => name.length > 0)
  const unknown = names.find((name) => !(NAMESPACES as readonly string[]).includes(name))
  if (unknown !== undefined) throw new ConfigError(variable, `${unknown} is not one of ${NAMESPACES.join(', ')} (or none)`)
  return [...new Set(names)]
}
