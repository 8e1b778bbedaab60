import createError, { type FastifyErrorConstructor } from '@fastify/error'
import { ErrorCodes, type ErrorCode } from './protocol/error-codes.js'

export { ErrorCodes, type ErrorCode }

const DEFAULT_MESSAGES: Record<ErrorCode, string> = {
  UNAUTHORIZED: 'Invalid or missing credentials',
  TOKEN_EXPIRED: 'The access token has expired',
  TOKEN_REVOKED: 'The access token has been revoked',
  KEY_REVOKED: 'The API key has been revoked',
  KEY_EXPIRED: 'The API key has expired',
  FORBIDDEN: 'Not allowed by policy or scope',
  IP_NOT_ALLOWED: 'The client address is not allowed for this key',
  ORIGIN_NOT_ALLOWED: 'The origin is not allowed',
  RATE_LIMITED: 'Rate limit exceeded',
  TEMPORARILY_BLOCKED: 'Too many failed attempts; temporarily blocked',
  VALIDATION_FAILED: 'The request is not valid',
  PAYLOAD_TOO_LARGE: 'The payload is too large',
  NOT_FOUND: 'Not found',
  CONFLICT: 'Conflict',
  UNAVAILABLE: 'A backing service is unavailable'
}

const constructors = Object.fromEntries(
  (Object.keys(ErrorCodes) as ErrorCode[]).map((code) => [code, createError(code, '%s', ErrorCodes[code])])
) as Record<ErrorCode, FastifyErrorConstructor>

/** A gateway refusal: one of the §6 codes, with `retryAfter` seconds for 429s. */
export interface GatewayError extends Error {
  code: ErrorCode
  statusCode: number
  retryAfter?: number
}

export function gatewayError (code: ErrorCode, message?: string, retryAfter?: number): GatewayError {
  const err = new constructors[code](message ?? DEFAULT_MESSAGES[code]) as GatewayError
  if (retryAfter !== undefined) err.retryAfter = Math.max(1, Math.ceil(retryAfter))
  return err
}

export function isGatewayError (err: unknown): err is GatewayError {
  const code = (err as { code?: unknown } | null)?.code
  return err instanceof Error && typeof code === 'string' && Object.hasOwn(ErrorCodes, code)
}

/**
 * A backing store (Redis, PostgreSQL) that failed: whatever it threw, the
 * caller fails closed with UNAVAILABLE (SPEC §7), never as a bad credential.
 */
export async function orUnavailable<T> (work: Promise<T>): Promise<T> {
  try {
    return await work
  } catch {
    throw gatewayError('UNAVAILABLE')
  }
}

// What the PostgreSQL and Redis clients throw when their server is away (the error handler maps them to 503).
const BACKEND_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'EPIPE'])
const BACKEND_ERROR_MESSAGES = /Stream isn't writeable|Connection is closed|Command timed out/

/** Whether an error that reached a handler unwrapped is a backing store being away. */
export function isBackingServiceError (err: { code?: unknown, name?: string, message?: string }): boolean {
  return (typeof err.code === 'string' && BACKEND_ERROR_CODES.has(err.code)) || err.name === 'MaxRetriesPerRequestError' || BACKEND_ERROR_MESSAGES.test(err.message ?? '')
}

/** The JSON body of an error (SPEC §4). */
export interface ErrorBody {
  statusCode: number
  code: ErrorCode
  error: string
  message: string
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 413: 'Payload Too Large', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable'
}

export function errorBody (err: GatewayError): ErrorBody {
  return { statusCode: err.statusCode, code: err.code, error: STATUS_TEXT[err.statusCode] ?? 'Error', message: err.message }
}
