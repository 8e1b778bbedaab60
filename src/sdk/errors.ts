import { ErrorCodes, type ErrorCode as ProtocolErrorCode } from '../protocol/error-codes.js'
/** The refusal codes of SPEC §6 the gateway sends (HTTP bodies, `connect_error`, acks, `gateway:error`), from its own list. */
export const GATEWAY_CODES = Object.keys(ErrorCodes) as GatewayCode[]
export type GatewayCode = ProtocolErrorCode

/**
 * Codes the SDK raises itself; the gateway never sends them.
 * TIMEOUT: no ack (or token response) within the timeout. DISCONNECTED: the
 * connection dropped before the ack came. CLOSED: `client.close()` was called.
 * NETWORK_ERROR: the token endpoint or the gateway could not be reached.
 */
export const SDK_CODES = ['TIMEOUT', 'DISCONNECTED', 'CLOSED', 'NETWORK_ERROR'] as const
export type SdkCode = typeof SDK_CODES[number]

export type ErrorCode = GatewayCode | SdkCode

export interface ErrorDetails {
  /** Seconds to wait before trying again (RATE_LIMITED, TEMPORARILY_BLOCKED). */
  retryAfter?: number
  /** The namespace the refusal concerns; absent for token requests and client-wide failures. */
  namespace?: string
  /** What was refused: `connect`, `disconnect` (a server-side cut), `join`, `auth:refresh`, a published event… */
  event?: string
  room?: string
}

/** A refusal or failure, with a §6 code (or an SDK code, see SDK_CODES). */
export class GatewayError extends Error {
  override readonly name = 'GatewayError'
  readonly code: ErrorCode
  /** The HTTP status, when the error came from an HTTP response (the token request). */
  readonly status?: number
  readonly details: ErrorDetails

  constructor (code: ErrorCode, message: string, options: { status?: number, details?: ErrorDetails, cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    if (options.status !== undefined) this.status = options.status
    this.details = options.details ?? {}
  }

  /** True when the gateway sent the refusal (a §6 code), false for the SDK's own codes. */
  get fromGateway (): boolean {
    return isGatewayCode(this.code)
  }
}

export function isGatewayCode (code: unknown): code is GatewayCode {
  return typeof code === 'string' && (GATEWAY_CODES as readonly string[]).includes(code)
}

/** The body of a socket refusal (`connect_error` data, `{ ok: false, error }`, `gateway:error`). */
interface RefusalBody { code?: unknown, message?: unknown, retryAfter?: unknown, event?: unknown }

/**
 * A socket refusal as a GatewayError. A code this SDK does not know (a newer
 * gateway) is reported as UNAVAILABLE, which is retried, rather than dropped.
 */
export function refusalError (body: RefusalBody, details: ErrorDetails): GatewayError {
  const code = isGatewayCode(body.code) ? body.code : 'UNAVAILABLE'
  const message = typeof body.message === 'string' ? body.message : String(body.code ?? 'refused')
  const retryAfter = typeof body.retryAfter === 'number' ? body.retryAfter : undefined
  return new GatewayError(code, message, { details: { ...details, ...(retryAfter !== undefined ? { retryAfter } : {}) } })
}

/** What the SDK does about a refusal of a handshake or a live connection. */
export type Remedy =
  /** Fetch a new token and reconnect at once (once: a fresh token refused again stops the client). */
  | 'renew-token'
  /** Reconnect after the backoff delay (or `retryAfter`, when longer). */
  | 'retry'
  /** Give up this namespace only: its policy refuses it. */
  | 'stop-namespace'
  /** Give up the whole client: its credential is dead or this client is not allowed at all. */
  | 'stop-client'

export function remedyFor (code: ErrorCode): Remedy {
  switch (code) {
    case 'TOKEN_EXPIRED':
    case 'TOKEN_REVOKED':
    case 'UNAUTHORIZED':
      return 'renew-token'
    case 'RATE_LIMITED':
    case 'TEMPORARILY_BLOCKED':
    case 'UNAVAILABLE':
    case 'TIMEOUT':
    case 'DISCONNECTED':
    case 'NETWORK_ERROR':
      return 'retry'
    case 'FORBIDDEN':
    case 'NOT_FOUND':
      return 'stop-namespace'
    default:
      return 'stop-client'
  }
}

/**
 * Whether a failed token request is worth repeating. The credential is the
 * API key (or the app's getToken): an UNAUTHORIZED there is not fixed by asking again.
 */
export function isTransientTokenFailure (code: ErrorCode): boolean {
  return code === 'RATE_LIMITED' || code === 'TEMPORARILY_BLOCKED' || code === 'UNAVAILABLE' || code === 'NETWORK_ERROR' || code === 'TIMEOUT'
}

/** The delay a refusal asks for, in ms (0 when it names none). */
export const retryAfterMs = (err: GatewayError): number => (err.details.retryAfter ?? 0) * 1000
