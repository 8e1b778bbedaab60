// The classic reference stack (variants C and Ck): what a team would write
// without the gateway. Express 5 with express.json(), express-rate-limit
// (memory store, keyed by IP) on POST /auth/token, API keys kept as SHA-256
// hashes in an in-memory Map (the cache a database would sit behind; there is
// no database here), jsonwebtoken 9 signing HS256, and a socket.io Server on
// the same http server whose /chat middleware verifies the handshake token.
//   classic            jsonwebtoken with the secret as a string
//   classic-keyobject  the same secret as a KeyObject (crypto.createSecretKey)
// The string form is what most code passes; jsonwebtoken then tries to parse it
// as a PEM private key (and throws) before making a secret key, on every sign
// and verify, which is why the two are measured apart.
// argv[3] is an optional JSON overlay: RATE_LIMIT_TOKEN in the gateway's
// "N/second|minute|hour" form (the token scenario's 429 case sets it low).
// It answers the orchestrator over IPC (bench/lib/controls.ts) like bench/lib/server.ts.
import { createHash, createSecretKey, randomBytes, randomUUID, timingSafeEqual, type KeyObject } from 'node:crypto'
import { createServer } from 'node:http'
import express, { type Request, type Response } from 'express'
import { rateLimit } from 'express-rate-limit'
import jwt, { type JwtPayload } from 'jsonwebtoken'
import { Server as SocketIOServer } from 'socket.io'
import { serveBareRelay } from '../lib/bare-relay.js'
import { configOverlay, serveControls } from '../lib/controls.js'
import { AUDIENCE, GATEWAY_IO_OPTIONS, ISSUER, JWT_SECRET, TOKEN_TTL_SECONDS } from '../lib/gateway-shape.js'

type ClassicKind = 'classic' | 'classic-keyobject'

// Raised so the valid and invalid cases never meet a 429; the overlay lowers it.
const DEFAULT_TOKEN_RATE = '1000000/minute'

const WINDOW_MS: Record<string, number> = { second: 1000, minute: 60_000, hour: 3_600_000 }

function parseRate (text: string): { limit: number, windowMs: number } {
  const match = /^(\d+)\/(second|minute|hour)$/.exec(text)
  if (match === null) throw new Error(`RATE_LIMIT_TOKEN must look like 10/minute, got ${text}`)
  return { limit: Number(match[1]), windowMs: WINDOW_MS[match[2]] }
}

interface StoredKey { id: string, secretHash: Buffer, scopes: string[] }
interface AccessClaims extends JwtPayload { sub: string, kid: string, jti: string, scope: string }

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest()

/** Keys are `spk_<id>_<secret>` as the gateway's; only the secret's hash is kept. */
function createKeyRing (): { issue: (scopes: string[]) => string, find: (presented: string | undefined) => StoredKey | undefined } {
  const byId = new Map<string, StoredKey>()
  return {
    issue: (scopes) => {
      const id = randomUUID()
      const secret = randomBytes(32).toString('base64url')
      byId.set(id, { id, secretHash: sha256(secret), scopes })
      return `spk_${id}_${secret}`
    },
    find: (presented) => {
      const match = presented === undefined ? null : /^spk_([A-Za-z0-9-]{1,64})_(.+)$/.exec(presented)
      if (match === null) return undefined
      const key = byId.get(match[1])
      if (key === undefined) return undefined
      return timingSafeEqual(sha256(match[2]), key.secretHash) ? key : undefined
    }
  }
}

function unauthorized (res: Response): void {
  res.status(401).json({ statusCode: 401, code: 'UNAUTHORIZED', error: 'Unauthorized', message: 'Invalid API key' })
}

async function main (): Promise<void> {
  const kind = process.argv[2] as ClassicKind
  if (kind !== 'classic' && kind !== 'classic-keyobject') throw new Error(`unknown server kind ${String(kind)}`)
  const secret: string | KeyObject = kind === 'classic' ? JWT_SECRET : createSecretKey(Buffer.from(JWT_SECRET, 'utf8'))
  const tokenRate = parseRate(configOverlay().RATE_LIMIT_TOKEN ?? DEFAULT_TOKEN_RATE)
  const keys = createKeyRing()
  // Scopes as the gateway's bench key has them.
  const apiKey = keys.issue(['token:delegate'])

  function signAccessToken (sub: string, key: StoredKey): { accessToken: string, exp: number } {
    const iat = Math.floor(Date.now() / 1000)
    const accessToken = jwt.sign({ sub, kid: key.id, jti: randomUUID(), scope: key.scopes.join(' '), iat }, secret, {
      algorithm: 'HS256', expiresIn: TOKEN_TTL_SECONDS, issuer: ISSUER, audience: AUDIENCE
    })
    return { accessToken, exp: iat + TOKEN_TTL_SECONDS }
  }

  const app = express()
  app.disable('x-powered-by')
  app.use(express.json())
  const tokenLimiter = rateLimit({
    windowMs: tokenRate.windowMs,
    limit: tokenRate.limit,
    standardHeaders: 'draft-7',
    legacyHeaders: false,
    message: { statusCode: 429, code: 'RATE_LIMITED', error: 'Too Many Requests', message: 'Rate limit exceeded' }
  })
  app.post('/auth/token', tokenLimiter, (req: Request, res: Response) => {
    const body = (req.body ?? {}) as { apiKey?: unknown, sub?: unknown }
    const presented = req.get('x-api-key') ?? (typeof body.apiKey === 'string' ? body.apiKey : undefined)
    const key = keys.find(presented)
    if (key === undefined) { unauthorized(res); return }
    // As the gateway: a key with token:delegate may mint for an end user.
    const sub = typeof body.sub === 'string' && key.scopes.includes('token:delegate') ? body.sub : key.id
    const { accessToken, exp } = signAccessToken(sub, key)
    res.json({ accessToken, tokenType: 'Bearer', expiresIn: TOKEN_TTL_SECONDS, expiresAt: new Date(exp * 1000).toISOString() })
  })

  const http = createServer(app)
  const io = new SocketIOServer(http, GATEWAY_IO_OPTIONS)
  const chat = io.of('/chat')
  chat.use((socket, next) => {
    const token: unknown = socket.handshake.auth?.token
    try {
      if (typeof token !== 'string') throw new Error('missing token')
      socket.data.claims = jwt.verify(token, secret, { algorithms: ['HS256'], issuer: ISSUER, audience: AUDIENCE }) as AccessClaims
      next()
    } catch {
      next(new Error('unauthorized'))
    }
  })
  serveBareRelay(chat, (socket) => (socket.data.claims as AccessClaims).sub)

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject)
    http.listen(0, '127.0.0.1', () => { resolve() })
  })
  const mintKey = keys.find(apiKey)!
  serveControls({
    kind,
    http,
    io,
    close: async () => {
      // Keep-alive connections of the load generator would hold http.close() open.
      http.closeAllConnections()
      await io.close()
    },
    mint: async (subs) => subs.map((sub) => signAccessToken(sub, mintKey).accessToken),
    extra: { apiKey: () => apiKey }
  })
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
