import { randomBytes, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto'
import { readFile, writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Config } from '../config.js'
import { ConfigError } from '../config.js'

export type JwtAlgorithm = 'HS256' | 'EdDSA' | 'ES256'

export interface SigningKeys {
  algorithm: JwtAlgorithm
  /** What @fastify/jwt takes as `secret`. */
  secret: string | { private: string, public: string }
  /** Public JWKs served at /.well-known/jwks.json (empty for HS256). */
  jwks: Array<Record<string, unknown>>
}

function algorithmOf (key: KeyObject, variable: string): JwtAlgorithm {
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA'
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256'
  throw new ConfigError(variable, 'must be an Ed25519 or P-256 (ES256) key')
}

async function readKeyFile (variable: string, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    throw new ConfigError(variable, `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
}

/**
 * The token signing material: key files when configured, else JWT_SECRET,
 * else (development only; config refuses this in production) a secret
 * generated once into DATA_DIR so that tokens survive a restart.
 */
export async function loadSigningKeys (config: Config): Promise<SigningKeys> {
  const { privateKeyFile, publicKeyFile, secret } = config.jwt
  if (privateKeyFile !== undefined && publicKeyFile !== undefined) {
    const privatePem = await readKeyFile('JWT_PRIVATE_KEY_FILE', privateKeyFile)
    const publicPem = await readKeyFile('JWT_PUBLIC_KEY_FILE', publicKeyFile)
    let privateKey: KeyObject, publicKey: KeyObject
    try { privateKey = createPrivateKey(privatePem) } catch { throw new ConfigError('JWT_PRIVATE_KEY_FILE', 'is not a PEM private key') }
    try { publicKey = createPublicKey(publicPem) } catch { throw new ConfigError('JWT_PUBLIC_KEY_FILE', 'is not a PEM public key') }
    const algorithm = algorithmOf(privateKey, 'JWT_PRIVATE_KEY_FILE')
    if (algorithmOf(publicKey, 'JWT_PUBLIC_KEY_FILE') !== algorithm ||
      !createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).equals(publicKey.export({ format: 'der', type: 'spki' }))) {
      throw new ConfigError('JWT_PUBLIC_KEY_FILE', 'does not match JWT_PRIVATE_KEY_FILE')
    }
    const jwk = { ...publicKey.export({ format: 'jwk' }), alg: algorithm, use: 'sig', kid: 'spark-1' }
    return { algorithm, secret: { private: privatePem, public: publicPem }, jwks: [jwk] }
  }
  if (secret !== undefined) return { algorithm: 'HS256', secret, jwks: [] }
  return { algorithm: 'HS256', secret: await developmentSecret(config.dataDir), jwks: [] }
}

async function developmentSecret (dataDir: string): Promise<string> {
  if (dataDir === 'memory://') return randomBytes(48).toString('base64url')
  const file = join(dataDir, 'jwt-secret')
  try {
    return (await readFile(file, 'utf8')).trim()
  } catch {
    await mkdir(dataDir, { recursive: true })
    const generated = randomBytes(48).toString('base64url')
    // 'wx' fails if another instance wrote it first; then read theirs.
    await writeFile(file, generated, { mode: 0o600, flag: 'wx' }).catch(() => {})
    return (await readFile(file, 'utf8')).trim()
  }
}
