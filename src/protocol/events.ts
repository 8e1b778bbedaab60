// Event names of SPEC §5 that both ends must agree on: the gateway enforces
// them, the client SDK refuses them before sending. No imports, so the browser
// SDK shares this file with the server.

/** The longest event name a client may send (SPEC §7); a refusal never echoes more of one than this. */
export const MAX_EVENT_NAME = 128

/** Events the gateway handles itself; every other event name is relayed to a room. */
export const HANDLED_EVENTS: ReadonlySet<string> = new Set(['join', 'leave', 'auth:refresh', 'history', 'presence'])

// Socket.IO's own names, and the names the gateway itself emits (a client must not forge an `alert` or a `shutdown`).
const RESERVED_NAMES: ReadonlySet<string> = new Set([...HANDLED_EVENTS, 'connect', 'connect_error', 'disconnect', 'disconnecting', 'error', 'newListener', 'removeListener', 'shutdown', 'alert'])

/** True for an event name no client or publisher may send to a room (`$…` names the lifecycle events routes take, SPEC §10; `presence:…` are the gateway's, §11). */
export function isReservedEvent (event: string): boolean {
  return RESERVED_NAMES.has(event) || event.startsWith('auth:') || event.startsWith('gateway:') || event.startsWith('presence:') || event.startsWith('$')
}
