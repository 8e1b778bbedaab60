import { ErrorCodes, gatewayError, type ErrorCode, type GatewayError } from '../errors.js'

/** A backend's refusal as the client is told it: its code (of the pass-through list) and message, or UNAVAILABLE. */
export function backendRefusal (answer: { code: string, message: string }): GatewayError {
  return Object.hasOwn(ErrorCodes, answer.code) ? gatewayError(answer.code as ErrorCode, answer.message) : gatewayError('UNAVAILABLE')
}
