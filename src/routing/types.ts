import { Type, type Static } from '@sinclair/typebox'
import { NAMESPACES } from '../protocol/namespaces.js'

/** The lifecycle events a route may take besides client events (SPEC §10). */
export const LIFECYCLE_EVENTS = ['$connect', '$join', '$disconnect', '$leave'] as const
export type LifecycleEvent = typeof LIFECYCLE_EVENTS[number]

/** Lifecycle events whose backend cannot refuse anything: a route taking them must be in notify mode. */
export const NOTIFY_ONLY_EVENTS: ReadonlySet<string> = new Set(['$disconnect', '$leave'])

/** Codes a backend's refusal may carry through to the client; any other answer is UNAVAILABLE (SPEC §10). */
export const PASSED_THROUGH_CODES: ReadonlySet<string> = new Set(['FORBIDDEN', 'VALIDATION_FAILED', 'NOT_FOUND', 'CONFLICT', 'RATE_LIMITED'])

export const MAX_ROUTE_TIMEOUT_MS = 60_000

// A client event pattern as in policies (a literal, `*`, or a prefix ending in `*`), or a lifecycle event by name.
const EventPatternSchema = Type.Union([
  Type.String({ minLength: 1, maxLength: 128, pattern: '^[^*$]*\\*?$' }),
  ...LIFECYCLE_EVENTS.map((event) => Type.Literal(event))
])

export const UpstreamSchema = Type.Union([
  Type.Object({ type: Type.Literal('http'), url: Type.String({ minLength: 1, maxLength: 2048, pattern: '^https?://' }) }, { additionalProperties: false }),
  Type.Object({
    type: Type.Literal('socketio'),
    url: Type.String({ minLength: 1, maxLength: 2048, pattern: '^(https?|wss?)://' }),
    namespace: Type.String({ minLength: 1, maxLength: 128, pattern: '^/' })
  }, { additionalProperties: false })
])
export type Upstream = Static<typeof UpstreamSchema>

export const RouteDefinitionSchema = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.:-]+$', description: 'also the `route` label of the upstream metrics' }),
  namespace: Type.Union(NAMESPACES.map((n) => Type.Literal(n))),
  events: Type.Array(EventPatternSchema, { minItems: 1, maxItems: 100, uniqueItems: true }),
  upstream: UpstreamSchema,
  mode: Type.Union([Type.Literal('request'), Type.Literal('notify')], { default: 'request' }),
  timeoutMs: Type.Integer({ minimum: 1, maximum: MAX_ROUTE_TIMEOUT_MS, default: 5000 }),
  maxInFlight: Type.Integer({ minimum: 1, maximum: 10_000, default: 256 }),
  relay: Type.Boolean({ default: false })
}, { additionalProperties: false })
export type RouteDefinition = Static<typeof RouteDefinitionSchema>

export interface RouteRecord extends RouteDefinition {
  id: string
  createdAt: Date
  updatedAt: Date
}

/** A route as the gateway runs it: its record and the secrets it signs with (never shown). */
export interface LiveRouteConfig {
  record: RouteRecord
  secret: string
  /** The secret before the last rotation, signing too until `previousExpiresAt` (ms since the epoch). */
  previousSecret: string | null
  previousExpiresAt: number
}

/** What a backend receives for a routed event (SPEC §10): the HTTP body, or `spark:event`'s payload. */
export interface RouteEvent {
  id: string
  type: 'event' | 'connect' | 'join' | 'disconnect' | 'leave'
  namespace: string
  room: string | null
  event: string
  data: unknown
  ts: number
  socketId: string
  principal: { sub: string, keyId: string, tenant: string, scopes: readonly string[], ns: readonly string[] | null }
  /** `$disconnect` only: why the socket went (see the README). */
  reason?: string
}

/** What a backend answered, as the client will be told; notify mode answers `ok` without data. */
export type UpstreamAnswer = { ok: true, data?: unknown } | { ok: false, code: string, message: string }

/** `gateway_upstream_requests_total`'s outcomes: a call's end, a refusal of the gateway's own, a notify event's fate. */
export type RouteOutcome = 'ok' | 'refused' | 'failed' | 'timeout' | 'unreachable' | 'overloaded' | 'breaker_open' | 'dropped' | 'expired'
