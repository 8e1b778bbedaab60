import { jsonShapeProblem } from '../protocol/json-shape.js'
import { PASSED_THROUGH_CODES, type RouteEvent, type UpstreamAnswer } from './types.js'

/** How one call to a backend ended, before the route decides what the client is told. */
export type CallResult =
  | { kind: 'answer', answer: UpstreamAnswer }
  | { kind: 'failed' | 'timeout' | 'unreachable' }

/** One backend connection (an HTTP pool, a Socket.IO client): it sends a signed event and reads the answer. */
export interface UpstreamTransport {
  /** False while a connection-oriented upstream is down: calls are refused at once. */
  readonly ready: boolean
  /** Sends one event, signed, and reads the answer. Never rejects. */
  call: (event: RouteEvent, timeoutMs: number) => Promise<CallResult>
  close: () => Promise<void>
}

// A backend's message is shown to the client: never more of it than this.
const MAX_MESSAGE_CHARS = 512
const FAILED: CallResult = { kind: 'failed' }

/**
 * Reads what a backend answered (SPEC §10): `{ data }` is an answer,
 * `{ error: { code, message } }` with a code of the pass-through list a
 * refusal; anything else failed. `expect` is what the transport's status
 * allows (HTTP: an answer on 2xx, a refusal on 4xx; an ack: either). The answer becomes an ack the gateway encodes, so its
 * nesting is bounded like a client's packet.
 */
export function readAnswer (value: unknown, expect: 'answer' | 'refusal' | 'either', maxDepth: number): CallResult {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return FAILED
  const error = (value as { error?: unknown }).error
  if (error !== undefined) {
    if (expect === 'answer' || typeof error !== 'object' || error === null) return FAILED
    const { code, message } = error as { code?: unknown, message?: unknown }
    if (typeof code !== 'string' || !PASSED_THROUGH_CODES.has(code)) return FAILED
    return { kind: 'answer', answer: { ok: false, code, message: typeof message === 'string' ? message.slice(0, MAX_MESSAGE_CHARS) : code } }
  }
  if (expect === 'refusal') return FAILED
  const data = (value as { data?: unknown }).data ?? null
  if (jsonShapeProblem(data, maxDepth) !== undefined) return FAILED
  return { kind: 'answer', answer: { ok: true, data } }
}
