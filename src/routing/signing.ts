import { createHmac, createSecretKey, randomBytes, type KeyObject } from 'node:crypto'

// Standard Webhooks (https://www.standardwebhooks.com): secrets are `whsec_` + base64, signing uses the decoded bytes.
const SECRET_PREFIX = 'whsec_'

/** A new route secret: 32 random bytes, in the Standard Webhooks form. */
export function newRouteSecret (): string {
  return SECRET_PREFIX + randomBytes(32).toString('base64')
}

/** The key a secret signs with, decoded once per route rather than per call. */
export function signingKey (secret: string): KeyObject {
  return createSecretKey(Buffer.from(secret.slice(SECRET_PREFIX.length), 'base64'))
}

/** `v1,<base64 HMAC-SHA256 of content>` per key, space-separated (two during a rotation's grace). */
export function signatures (keys: readonly KeyObject[], content: string): string {
  let header = ''
  for (const key of keys) {
    const mac = createHmac('sha256', key).update(content).digest('base64')
    header += header === '' ? `v1,${mac}` : ` v1,${mac}`
  }
  return header
}

/** The headers of a signed call (SPEC §10). */
export function webhookHeaders (keys: readonly KeyObject[], id: string, body: string, now = Date.now()): Record<string, string> {
  const timestamp = Math.floor(now / 1000)
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signatures(keys, `${id}.${timestamp}.${body}`) }
}
