import type { GatewayError } from '../errors.js'

/** The `connect_error` a refused handshake gets: message = the §6 code, data = the details (SPEC §5). */
export interface ConnectRefusal extends Error {
  data: { code: string, message: string, retryAfter?: number }
}

export function connectRefusal (err: GatewayError): ConnectRefusal {
  const refusal = new Error(err.code) as ConnectRefusal
  refusal.data = { code: err.code, message: err.message, ...(err.retryAfter !== undefined ? { retryAfter: err.retryAfter } : {}) }
  return refusal
}

/** The body of a refused packet: in the ack, or in `gateway:error` with the event name. */
export function packetRefusal (err: GatewayError): { code: string, message: string, retryAfter?: number } {
  return { code: err.code, message: err.message, ...(err.retryAfter !== undefined ? { retryAfter: err.retryAfter } : {}) }
}
