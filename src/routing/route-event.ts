import type { Principal } from '../auth/principal.js'
import type { RouteEvent } from './types.js'

/**
 * The event a backend receives (SPEC §10). Only who the caller is goes with
 * it: never its token, headers or address.
 */
export function routeEvent (
  id: string, type: RouteEvent['type'], principal: Principal, namespace: string, room: string | null, event: string, data: unknown, socketId: string
): RouteEvent {
  return {
    id,
    type,
    namespace,
    room,
    event,
    data,
    ts: Date.now(),
    socketId,
    principal: { sub: principal.sub, keyId: principal.keyId, tenant: principal.tenant, scopes: principal.scopes, ns: principal.ns ?? null }
  }
}
