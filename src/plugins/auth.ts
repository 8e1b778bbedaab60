import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import fastifyJwt from '@fastify/jwt'
import { hashSecret, matchingSecret, parseApiKey, secretMatches } from '../keys/api-key.js'
import { generationStanding, KEYS_ROTATED, parseRotationNotice, RotationCutoffs, type SupersededTest } from '../keys/rotation.js'
import type { ApiKeyRecord, Scope } from '../keys/types.js'
import { gatewayError, isGatewayError, orUnavailable, type GatewayError } from '../errors.js'
import { loadSigningKeys, type SigningKeys } from '../auth/jwt-keys.js'
import { ROOT_KEY_ID, type Principal } from '../auth/principal.js'
import { DEFAULT_TENANT } from '../protocol/rooms.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Checks an API key (`spk_…`, or ADMIN_API_KEY); throws a §6 refusal. */
    authenticateKey: (rawKey: string, ip: string) => Promise<Principal>
    /** Checks an access token: signature, claims, revocation, key state and IP. */
    authenticateToken: (token: string, ip: string) => Promise<Principal>
    /** Mints an access token for a key principal (SPEC §4 `/auth/token`). */
    issueToken: (principal: Principal, options: TokenOptions) => Promise<IssuedToken>
    /** Revokes one token by its jti until it would have expired anyway, and closes the sockets using it everywhere. */
    revokeToken: (principal: Principal) => Promise<void>
    /** The key-state rule of every authentication (revoked, expired, IP allowlist), for a key already in use. */
    assertKeyUsable: (key: ApiKeyRecord, ip: string) => void
    /**
     * Hears, on every instance, when a rotation's grace ends: the test matches
     * the principals whose tokens stopped then (their live sockets must close).
     */
    onTokensSuperseded: (listener: (superseded: SupersededTest) => void) => void
    /** Hears, on every instance, the jti of a token revoked anywhere (its live sockets must close). */
    onTokenRevoked: (listener: (jti: string) => void) => void
    signingKeys: SigningKeys
  }
}

export interface TokenOptions { ttl?: number, namespaces?: string[], sub?: string }
export interface IssuedToken { accessToken: string, tokenType: 'Bearer', expiresIn: number, expiresAt: string }

/** A refusal that names the key the attempt used, when that key exists (for the audit row). */
export type AuthError = GatewayError & { keyId?: string }

// `kgen`: the generation of the key's secret the token was minted from (a private claim, see keys/rotation.ts).
// `tnt`: the key's tenant (SPEC §14); tokens minted before tenants carry none and are the default tenant's.
interface TokenClaims { sub: string, kid: string, tnt?: string, jti: string, scope: string, ns?: string[], exp: number, iat: number, kgen?: number }

export const revokedJtiFlag = (jti: string): string => `revoked:jti:${jti}`
/** Broadcast with a jti when a token is revoked (heard through onTokenRevoked). */
const TOKEN_REVOKED_CHANNEL = 'tokens:revoked'
/** Why a token minted before a rotation is refused (REST, handshake, refresh) and its sockets closed. */
export const SUPERSEDED_MESSAGE = 'The key was rotated: tokens minted before the rotation stopped when its grace period ended'

function refuse (code: Parameters<typeof gatewayError>[0], keyId?: string, message?: string): AuthError {
  const err: AuthError = gatewayError(code, message)
  if (keyId !== undefined) err.keyId = keyId
  return err
}

// Header parameters that carry or point to a verification key: fast-jwt ignores them, the gateway refuses them (SPEC §3).
const HEADER_KEY_PARAMETERS = ['jwk', 'jku', 'x5u', 'x5c']

/** True when the token's header names a key of its own; a malformed header is left to the verifier to refuse. */
function headerSuppliesKey (encodedHeader: string): boolean {
  try {
    const header: unknown = JSON.parse(Buffer.from(encodedHeader, 'base64url').toString('utf8'))
    return typeof header === 'object' && header !== null && HEADER_KEY_PARAMETERS.some((name) => Object.hasOwn(header, name))
  } catch {
    return false
  }
}

// The gateway's own tokens share one or two encoded headers: each is decoded once per instance. Only short
// headers are kept (a client's token may be ~1 MB), and the memo stops growing when full, so headers
// made up by a client cost the decode every time and never evict the real ones.
const HEADER_MEMO_MAX = 32
const HEADER_MEMO_MAX_LENGTH = 128

function createTokenHeaderCheck (): (token: string) => boolean {
  const memo = new Map<string, boolean>()
  return (token) => {
    const dot = token.indexOf('.')
    if (dot <= 0) return false
    const encodedHeader = token.slice(0, dot)
    let supplies = memo.get(encodedHeader)
    if (supplies === undefined) {
      supplies = headerSuppliesKey(encodedHeader)
      // A copy, not a slice: a slice would keep the whole token alive.
      if (memo.size < HEADER_MEMO_MAX && dot <= HEADER_MEMO_MAX_LENGTH) memo.set(Buffer.from(encodedHeader).toString(), supplies)
    }
    return supplies
  }
}

// Delegated end-user tokens never carry the scopes that manage the gateway.
const DELEGABLE_SCOPES: ReadonlySet<Scope> = new Set(['publish'])

// Key ids are random UUIDs (and `root`): only a subject of that shape can be one, and one found not to be a
// key never becomes one (nobody picks a key's id). Those answers are kept, so minting for a UUID-named user
// costs the key lookup once; the set is emptied when full, not grown.
const UUID_SHAPE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const NOT_KEYS_MAX = 10_000

export default fp(async (app) => {
  const { config } = app
  const signingKeys = await loadSigningKeys(config)
  await app.register(fastifyJwt, {
    secret: signingKeys.secret,
    sign: { algorithm: signingKeys.algorithm, iss: config.jwt.issuer, aud: config.jwt.audience },
    verify: {
      algorithms: [signingKeys.algorithm],
      allowedIss: config.jwt.issuer,
      allowedAud: config.jwt.audience,
      requiredClaims: ['exp', 'iat', 'sub', 'kid', 'jti', 'iss', 'aud']
    }
  })
  app.decorate('signingKeys', signingKeys)
  app.decorate('assertKeyUsable', (key: ApiKeyRecord, ip: string) => { checkKeyState(key, ip) })
  const rootHash = config.adminApiKey === undefined ? undefined : hashSecret(config.adminApiKey)
  const tokenSuppliesKey = createTokenHeaderCheck()

  function checkKeyState (key: ApiKeyRecord, ip: string): void {
    if (key.revokedAt !== null) throw refuse('KEY_REVOKED', key.id)
    if (key.expiresAt !== null && key.expiresAt.getTime() <= Date.now()) throw refuse('KEY_EXPIRED', key.id)
    try {
      app.checkIp(key.allowedIps, ip)
    } catch (err) {
      if (isGatewayError(err)) (err as AuthError).keyId = key.id
      throw err
    }
  }

  // Records already seen here: findForAuth hands back the same object while it answers from its cache, a new one after a read.
  const seenRecords = new WeakSet<ApiKeyRecord>()

  /**
   * Constant-time check of a presented secret against a key's secret, and its previous one during a rotation's
   * grace period: the generation of the secret it matched, or undefined.
   */
  function matchedGeneration (key: ApiKeyRecord | undefined, secret: string | undefined): number | undefined {
    const graceOpen = key?.previousExpiresAt != null && key.previousExpiresAt.getTime() > Date.now()
    const index = matchingSecret(secret, key?.secretHash, graceOpen ? key?.previousSecretHash : undefined)
    // Tokens minted from the previous secret carry its generation, so they stop with it, at the grace's end.
    return key === undefined || index < 0 ? undefined : key.secretGeneration - index
  }

  const superseded: Array<(test: SupersededTest) => void> = []
  const cutoffs = new RotationCutoffs((test) => { for (const listener of superseded) listener(test) })
  const revokedListeners: Array<(jti: string) => void> = []
  app.decorate('onTokenRevoked', (listener: (jti: string) => void) => { revokedListeners.push(listener) })
  await app.store.subscribe(TOKEN_REVOKED_CHANNEL, (jti) => { for (const listener of revokedListeners) listener(jti) })
  app.decorate('onTokensSuperseded', (listener: (test: SupersededTest) => void) => { superseded.push(listener) })
  await app.store.subscribe(KEYS_ROTATED, (message) => {
    const notice = parseRotationNotice(message)
    if (notice !== undefined) cutoffs.rotated(notice)
  })
  app.addHook('onClose', async () => { cutoffs.close() })

  /** A token of an older generation of the key's secret than a rotation allows is TOKEN_REVOKED; returns the record checked. */
  async function assertGenerationLive (key: ApiKeyRecord, generation: number): Promise<ApiKeyRecord> {
    let standing = generationStanding(key, generation)
    if (standing.kind === 'ahead') {
      // Minted after a rotation this instance has not heard of yet: the cached record is stale.
      key = await app.keys.get(key.id).catch(() => key) ?? key
      standing = generationStanding(key, generation)
    }
    if (standing.kind === 'superseded') throw refuse('TOKEN_REVOKED', key.id, SUPERSEDED_MESSAGE)
    if (standing.kind === 'ahead') throw refuse('UNAUTHORIZED', key.id)
    // An instance that missed the rotation's notice (started since) still cuts this token's sockets on time.
    if (standing.kind === 'grace') cutoffs.schedule(key.id, key.secretGeneration, standing.until)
    return key
  }

  async function findKey (id: string): Promise<ApiKeyRecord | undefined> {
    try {
      return await app.keys.findForAuth(id)
    } catch (err) {
      // PostgreSQL away and the key not cached: unknown, so fail closed, but not as a bad credential.
      app.log.warn({ err }, 'key lookup failed')
      throw gatewayError('UNAVAILABLE')
    }
  }

  app.decorate('authenticateKey', async (rawKey: string, ip: string): Promise<Principal> => {
    // The root credential is compared first and always, so its check costs every attempt the same.
    if (secretMatches(rawKey, rootHash)) {
      return { keyId: ROOT_KEY_ID, sub: ROOT_KEY_ID, tenant: DEFAULT_TENANT, scopes: ['admin'], policyId: null, rateLimit: null, maxConnections: null, via: 'root' }
    }
    const parsed = parseApiKey(rawKey)
    let key = parsed === undefined ? undefined : await findKey(parsed.id)
    let generation = matchedGeneration(key, parsed?.secret)
    if (generation === undefined && parsed !== undefined && key !== undefined && seenRecords.has(key)) {
      // A wrong secret against a cached record is confirmed by PostgreSQL (the cache may predate a rotation made
      // elsewhere). The read also gives this refusal the one round trip an unknown id costs, so the time taken
      // does not tell whether the id exists.
      key = await app.keys.get(parsed.id).catch(() => key)
      generation = matchedGeneration(key, parsed.secret)
    }
    if (key !== undefined) seenRecords.add(key)
    if (generation === undefined || key === undefined) throw refuse('UNAUTHORIZED', key?.id)
    checkKeyState(key, ip)
    app.keys.markUsed(key.id)
    return { keyId: key.id, sub: key.id, tenant: key.tenant, scopes: key.scopes, policyId: key.policyId, keyGeneration: generation, rateLimit: key.rateLimit, maxConnections: key.maxConnections, via: 'key' }
  })

  app.decorate('authenticateToken', async (token: string, ip: string): Promise<Principal> => {
    let claims: TokenClaims
    if (tokenSuppliesKey(token)) throw refuse('UNAUTHORIZED')
    try {
      claims = app.jwt.verify<TokenClaims>(token)
    } catch (err) {
      throw refuse((err as { code?: string }).code === 'FAST_JWT_EXPIRED' ? 'TOKEN_EXPIRED' : 'UNAUTHORIZED')
    }
    if (typeof claims.kid !== 'string' || typeof claims.sub !== 'string' || typeof claims.jti !== 'string' || typeof claims.scope !== 'string') {
      throw refuse('UNAUTHORIZED')
    }
    // Tokens minted before generations existed carry none: they belong to the first secret.
    const generation = claims.kgen ?? 0
    if (!Number.isSafeInteger(generation) || generation < 0) throw refuse('UNAUTHORIZED')
    const revoked = await orUnavailable(app.store.flagTtl(revokedJtiFlag(claims.jti)))
    if (revoked > 0) throw refuse('TOKEN_REVOKED', claims.kid)
    const found = await findKey(claims.kid)
    if (found === undefined) throw refuse('UNAUTHORIZED')
    // The key's tenant is the one that counts; a token claiming another was not minted by this gateway.
    if ((claims.tnt ?? DEFAULT_TENANT) !== found.tenant) throw refuse('UNAUTHORIZED', found.id)
    checkKeyState(found, ip)
    const key = await assertGenerationLive(found, generation)
    if (key !== found) checkKeyState(key, ip)
    // A token never carries more than its key has now: scopes removed from the key since minting are dropped.
    const scopes = claims.scope.split(' ').filter((s): s is Scope => (key.scopes as string[]).includes(s))
    return {
      keyId: key.id,
      sub: claims.sub,
      tenant: key.tenant,
      scopes,
      policyId: key.policyId,
      ns: Array.isArray(claims.ns) ? claims.ns : undefined,
      jti: claims.jti,
      exp: claims.exp,
      keyGeneration: generation,
      rateLimit: key.rateLimit,
      maxConnections: key.maxConnections,
      via: 'token'
    }
  })

  const notKeys = new Set<string>()
  async function isKeyId (sub: string): Promise<boolean> {
    if (sub === ROOT_KEY_ID) return true
    if (!UUID_SHAPE.test(sub) || notKeys.has(sub)) return false
    if (await orUnavailable(app.keys.findForAuth(sub)) !== undefined) return true
    if (notKeys.size >= NOT_KEYS_MAX) notKeys.clear()
    notKeys.add(sub)
    return false
  }

  app.decorate('issueToken', async (principal: Principal, options: TokenOptions): Promise<IssuedToken> => {
    if (principal.via === 'root') throw gatewayError('FORBIDDEN', 'ADMIN_API_KEY is accepted on admin endpoints only; mint tokens from a key')
    const ttl = options.ttl ?? config.jwt.ttl
    if (ttl > config.jwt.ttl) throw gatewayError('VALIDATION_FAILED', `ttl must be at most ${config.jwt.ttl}`)
    let sub = principal.sub
    let scopes = principal.scopes
    if (options.sub !== undefined) {
      if (!principal.scopes.includes('token:delegate')) throw gatewayError('FORBIDDEN', 'sub requires scope token:delegate')
      // SPEC §14: a delegated token never wears a key's identity (its user room, its refusals on /error).
      if (await isKeyId(options.sub)) throw gatewayError('VALIDATION_FAILED', 'sub may not be the id of a key')
      sub = options.sub
      scopes = scopes.filter((s) => DELEGABLE_SCOPES.has(s))
    }
    // A token made from a token (not possible today) could only narrow its namespaces.
    const ns = options.namespaces ?? principal.ns
    const iat = Math.floor(Date.now() / 1000)
    const exp = iat + ttl
    const claims: Omit<TokenClaims, 'ns'> & { ns?: readonly string[] } = {
      sub, kid: principal.keyId, tnt: principal.tenant, jti: randomUUID(), scope: scopes.join(' '), iat, exp, kgen: principal.keyGeneration ?? 0
    }
    if (ns !== undefined) claims.ns = ns
    const accessToken = app.jwt.sign(claims)
    return { accessToken, tokenType: 'Bearer', expiresIn: ttl, expiresAt: new Date(exp * 1000).toISOString() }
  })

  app.decorate('revokeToken', async (principal: Principal): Promise<void> => {
    if (principal.jti === undefined || principal.exp === undefined) throw gatewayError('UNAUTHORIZED', 'A bearer token is required')
    const ttlMs = principal.exp * 1000 - Date.now()
    if (ttlMs > 0) await orUnavailable(app.store.setFlag(revokedJtiFlag(principal.jti), ttlMs + 1000))
    // Live sockets using this token close on every instance (the socket layer listens).
    await app.store.publish(TOKEN_REVOKED_CHANNEL, principal.jti).catch(() => {})
  })
}, { name: 'auth', fastify: '5.x', dependencies: ['config', 'store', 'keys', 'ip-allowlist'] })
