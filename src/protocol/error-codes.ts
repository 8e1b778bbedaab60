// The error codes of SPEC §6, each with its HTTP status: the gateway raises
// them, the client SDK recognises them. No imports (shared with the browser SDK).
export const ErrorCodes = {
  UNAUTHORIZED: 401,
  TOKEN_EXPIRED: 401,
  TOKEN_REVOKED: 401,
  KEY_REVOKED: 401,
  KEY_EXPIRED: 401,
  FORBIDDEN: 403,
  IP_NOT_ALLOWED: 403,
  ORIGIN_NOT_ALLOWED: 403,
  RATE_LIMITED: 429,
  TEMPORARILY_BLOCKED: 429,
  VALIDATION_FAILED: 400,
  PAYLOAD_TOO_LARGE: 413,
  NOT_FOUND: 404,
  CONFLICT: 409,
  UNAVAILABLE: 503
} as const

export type ErrorCode = keyof typeof ErrorCodes
