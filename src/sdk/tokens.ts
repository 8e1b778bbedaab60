import { Backoff, type BackoffOptions } from './backoff.js'
import { GatewayError, isGatewayCode, isTransientTokenFailure, retryAfterMs, type GatewayCode } from './errors.js'

/** A token and, when known, its lifetime in seconds: the shape of the gateway's `/auth/token` answer. */
export interface TokenGrant { accessToken: string, expiresIn?: number }

/** The app's own token source (a browser asks its backend, which holds the API key). */
export type GetToken = () => Promise<string | TokenGrant> | string | TokenGrant

/** Optional body of `POST /auth/token` (SPEC §4). */
export interface TokenRequest { ttl?: number, namespaces?: string[], sub?: string }

interface HeldToken {
  value: string
  /** Local clock, ms; unknown for an opaque token without a lifetime. */
  expiresAt?: number
  refreshAt?: number
}

export interface TokenSourceOptions {
  fetchGrant: () => Promise<TokenGrant>
  /** How long before expiry a live token is replaced (at most a quarter of its lifetime). */
  refreshMarginMs: number
  backoff: BackoffOptions
  /** A new token is held: live connections are given it (`auth:refresh`). */
  onToken: (token: string) => void
  /** A scheduled refresh failed and will be tried again. */
  onError: (err: GatewayError) => void
  /** A refresh that asking again cannot fix (a revoked key…). */
  onFatal: (err: GatewayError) => void
}

// setTimeout holds a signed 32-bit delay; a longer one would fire at once.
const MAX_TIMER_MS = 2 ** 31 - 1
// A lifetime of 0 (or one shorter than a round trip) must not make the refresh timer spin.
const MIN_TIMER_MS = 1000

/**
 * The client's current token: fetched once for all its connections (concurrent
 * requests share one fetch), replaced a margin before it expires. Lifetimes are
 * measured on the local clock from `expiresIn` (or the JWT's exp − iat), so a
 * skewed client clock does not make it refresh late.
 */
export class TokenSource {
  private held?: HeldToken
  private inFlight?: Promise<string>
  private timer?: ReturnType<typeof setTimeout>
  private closed = false
  private readonly retries: Backoff

  constructor (private readonly options: TokenSourceOptions) {
    this.retries = new Backoff(options.backoff)
  }

  current (): string | undefined {
    return this.held?.value
  }

  /** True while a token is held and has not expired (one of unknown lifetime counts as unexpired). */
  heldUnexpired (): boolean {
    const held = this.held
    return held !== undefined && (held.expiresAt === undefined || Date.now() < held.expiresAt)
  }

  /** Forgets `token` if it is the held one (the gateway refused it), so that the next request fetches anew. */
  discard (token: string | undefined): void {
    if (token === undefined || this.held?.value !== token) return
    this.held = undefined
    clearTimeout(this.timer)
    this.timer = undefined
  }

  /** True when the held token should be replaced now: past its refresh point, or of unknown lifetime. */
  refreshDue (): boolean {
    const at = this.held?.refreshAt
    return at === undefined || Date.now() >= at
  }

  /** A token for a handshake: the held one while it is fresh, else a new one. */
  async usable (): Promise<string> {
    const held = this.held
    if (held !== undefined && (held.refreshAt === undefined || Date.now() < held.refreshAt)) return held.value
    try {
      return await this.renew(held?.value)
    } catch (err) {
      // A failed early refresh need not fail the handshake: the held token still works until it expires.
      const stillValid = held?.expiresAt !== undefined && held.expiresAt > Date.now() + 1000
      if (stillValid && err instanceof GatewayError && isTransientTokenFailure(err.code)) return held.value
      throw err
    }
  }

  /**
   * A token other than `stale` (one just refused or about to expire): the held
   * one when it is already newer, else a fetched one. Rejects with a GatewayError.
   */
  async renew (stale?: string): Promise<string> {
    if (this.closed) throw new GatewayError('CLOSED', 'The client is closed')
    if (this.held !== undefined && this.held.value !== stale && !(this.held.refreshAt !== undefined && Date.now() >= this.held.refreshAt)) return this.held.value
    this.inFlight ??= this.fetch().finally(() => { this.inFlight = undefined })
    return await this.inFlight
  }

  close (): void {
    this.closed = true
    clearTimeout(this.timer)
  }

  private async fetch (): Promise<string> {
    const startedAt = Date.now()
    const grant = await this.options.fetchGrant()
    if (this.closed) throw new GatewayError('CLOSED', 'The client is closed')
    const stated = grant.expiresIn !== undefined ? grant.expiresIn * 1000 : jwtLifetimeMs(grant.accessToken)
    // JWT times are whole seconds (iat rounded down), so the token may lapse up to a second early.
    const lifetime = stated === undefined ? undefined : Math.max(stated - 1000, stated / 2)
    // Measured from the request's start: the server's clock began counting no earlier than that.
    this.held = lifetime === undefined
      ? { value: grant.accessToken }
      : { value: grant.accessToken, expiresAt: startedAt + lifetime, refreshAt: startedAt + lifetime - Math.min(this.options.refreshMarginMs, lifetime / 4) }
    this.retries.reset()
    this.schedule(this.held.refreshAt === undefined ? undefined : this.held.refreshAt - Date.now())
    this.options.onToken(grant.accessToken)
    return grant.accessToken
  }

  private schedule (delayMs: number | undefined): void {
    clearTimeout(this.timer)
    this.timer = undefined
    if (this.closed || delayMs === undefined) return
    this.timer = setTimeout(() => { this.refreshOnTimer() }, Math.min(Math.max(MIN_TIMER_MS, delayMs), MAX_TIMER_MS))
  }

  private refreshOnTimer (): void {
    this.timer = undefined
    this.renew(this.held?.value).catch((err: unknown) => {
      if (this.closed) return
      const failure = err instanceof GatewayError ? err : new GatewayError('UNAVAILABLE', String(err), { cause: err })
      if (!isTransientTokenFailure(failure.code)) return this.options.onFatal(failure)
      this.options.onError(failure)
      this.schedule(Math.max(this.retries.next(), retryAfterMs(failure)))
    })
  }
}

/** exp − iat of a JWT, in ms; undefined when the token is not a readable JWT. Browser-safe (atob, TextDecoder). */
export function jwtLifetimeMs (token: string): number | undefined {
  const payload = token.split('.')[1]
  if (payload === undefined) return undefined
  try {
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(payload.length / 4) * 4, '=')
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)))) as { exp?: unknown, iat?: unknown }
    if (typeof claims.exp !== 'number' || typeof claims.iat !== 'number' || claims.exp <= claims.iat) return undefined
    return (claims.exp - claims.iat) * 1000
  } catch {
    return undefined
  }
}

const STATUS_CODES: Record<number, GatewayCode> = {
  400: 'VALIDATION_FAILED', 401: 'UNAUTHORIZED', 403: 'FORBIDDEN', 404: 'NOT_FOUND', 409: 'CONFLICT', 413: 'PAYLOAD_TOO_LARGE', 429: 'RATE_LIMITED'
}

/** `POST /auth/token` with the API key; a refusal becomes a GatewayError with the body's §6 code and the status. */
export async function requestToken (baseUrl: string, apiKey: string, body: TokenRequest, timeoutMs: number): Promise<TokenGrant> {
  let res: Response
  try {
    res = await fetch(new URL('/auth/token', baseUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': apiKey },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs)
    })
  } catch (err) {
    const timedOut = (err as { name?: unknown } | null)?.name === 'TimeoutError'
    throw new GatewayError(timedOut ? 'TIMEOUT' : 'NETWORK_ERROR', timedOut ? `No token response within ${timeoutMs} ms` : 'The token endpoint could not be reached', { cause: err })
  }
  const json = await res.json().catch(() => ({})) as { accessToken?: unknown, expiresIn?: unknown, code?: unknown, message?: unknown }
  if (!res.ok) {
    const code = isGatewayCode(json.code) ? json.code : STATUS_CODES[res.status] ?? 'UNAVAILABLE'
    const retryAfter = Number(res.headers.get('retry-after') ?? Number.NaN)
    throw new GatewayError(code, typeof json.message === 'string' ? json.message : `Token request failed with HTTP ${res.status}`, {
      status: res.status,
      details: Number.isFinite(retryAfter) ? { retryAfter } : {}
    })
  }
  if (typeof json.accessToken !== 'string') throw new GatewayError('UNAVAILABLE', 'The token response carries no accessToken', { status: res.status })
  return { accessToken: json.accessToken, ...(typeof json.expiresIn === 'number' ? { expiresIn: json.expiresIn } : {}) }
}

/** Calls the app's getToken; whatever it throws that is not a GatewayError is a transient failure. */
export async function tokenFromApp (getToken: GetToken): Promise<TokenGrant> {
  let result: string | TokenGrant
  try {
    result = await getToken()
  } catch (err) {
    if (err instanceof GatewayError) throw err
    throw new GatewayError('UNAVAILABLE', `getToken failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
  const grant = typeof result === 'string' ? { accessToken: result } : result
  if (typeof grant?.accessToken !== 'string' || grant.accessToken.length === 0) throw new GatewayError('VALIDATION_FAILED', 'getToken must return a token string or { accessToken, expiresIn? }')
  return grant
}
