import { createHmac, sign as cryptoSign, type KeyObject } from 'node:crypto'

/** The HS256 secret test apps are built with, so tests can sign tokens the gateway would accept. */
export const TEST_JWT_SECRET = 'test-jwt-secret-0123456789abcdefghijklmnopqrstuvwxyz'

export const b64url = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')

export interface TokenParts { header: Record<string, unknown>, payload: Record<string, unknown>, signature: string }

/** Splits a JWT without verifying it. */
export function decodeToken (token: string): TokenParts {
  const [header, payload, signature] = token.split('.')
  return {
    header: JSON.parse(Buffer.from(header, 'base64url').toString('utf8')) as Record<string, unknown>,
    payload: JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>,
    signature
  }
}

/**
 * A JWT built by hand, whatever its header says: HMAC-SHA256 with `hmacKey`
 * (any bytes: a secret, or a public key's PEM for an algorithm-confusion try),
 * a signature with an asymmetric `privateKey`, or none at all.
 */
export function handToken (header: Record<string, unknown>, payload: Record<string, unknown>, signer: { hmacKey: string | Buffer } | { privateKey: KeyObject, digest: string | null, dsaEncoding?: 'ieee-p1363' } | 'none'): string {
  const input = `${b64url(header)}.${b64url(payload)}`
  if (signer === 'none') return `${input}.`
  if ('hmacKey' in signer) return `${input}.${createHmac('sha256', signer.hmacKey).update(input).digest('base64url')}`
  const signature = cryptoSign(signer.digest, Buffer.from(input), { key: signer.privateKey, dsaEncoding: signer.dsaEncoding })
  return `${input}.${signature.toString('base64url')}`
}

/** A claim set the gateway would accept for key `kid` (scope, iss and aud as a default test app expects). */
export function validClaims (kid: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000)
  return { sub: kid, kid, jti: `jti-${Math.random().toString(36).slice(2)}`, scope: 'admin', iat: now, exp: now + 300, iss: 'spark-gateway', aud: 'spark-gateway', ...overrides }
}
