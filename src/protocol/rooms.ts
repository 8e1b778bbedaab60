// Room names the gateway forms itself (SPEC §5, §14). No imports.

/** The tenant of keys created without one, and of everything before tenants existed (SPEC §14). */
export const DEFAULT_TENANT = 'default'

/** What a tenant's name may be (SPEC §14). */
export const TENANT_PATTERN = '^[a-z0-9-]{1,64}$'

// Joins a tenant to the name its clients give a room. No client's room name may hold it (ROOM_NAME_PATTERN),
// so no name of one tenant can spell a room of another.
const TENANT_SEPARATOR = '\u001f'

/** A room name as a client or publisher may give it: 1 to 256 characters, none of them a control character. */
export const ROOM_NAME_PATTERN = '^[^\\u0000-\\u001f]+$'

/**
 * The one place a room's name within its tenant is formed (SPEC §14): every
 * join, delivery and mirror goes through it. The default tenant's rooms keep
 * the name the client gave (nothing is allocated for them); another
 * tenant's are `<tenant>␟<name>`.
 */
export function tenantRoom (tenant: string, room: string): string {
  return tenant === DEFAULT_TENANT ? room : tenant + TENANT_SEPARATOR + room
}

/** The name a tenant's client knows one of its socket's rooms by; undefined for a room outside the tenant. */
export function clientRoomName (tenant: string, room: string): string | undefined {
  if (tenant === DEFAULT_TENANT) return room.includes(TENANT_SEPARATOR) ? undefined : room
  return room.length > tenant.length && room.startsWith(tenant) && room[tenant.length] === TENANT_SEPARATOR ? room.slice(tenant.length + 1) : undefined
}

/** The client's name of a room the gateway formed with tenantRoom (the reverse of it). */
export function clientNameOf (room: string): string {
  const separator = room.indexOf(TENANT_SEPARATOR)
  return separator < 0 ? room : room.slice(separator + 1)
}

/** The room of a subject's sockets in each namespace: `POST /v1/publish` to it reaches every connection of that user. */
export const userRoom = (sub: string): string => `user:${sub}`

/**
 * Each socket is in this room of its namespace, so a key's sockets can be
 * found and closed together (key ids are gateway-wide). Its name starts with
 * the separator no client room name may hold: no client of any tenant can
 * publish to it, whatever its policy.
 */
export const keyRoom = (keyId: string): string => `${TENANT_SEPARATOR}key:${keyId}`

/**
 * Rooms the gateway manages: `user:<sub>`, `key:<id>` and the socket's own
 * id. A client may neither leave them nor join another's (joining another
 * user's room would read their mail); joining its own user room, which it is
 * in already, is the policy's call.
 */
export function isManagedRoom (room: string, socketId: string): boolean {
  return room === socketId || room.startsWith('key:') || room.startsWith('user:')
}

/**
 * The rooms a client joined itself, by the names it gave them: a socket's
 * rooms within its tenant, less the ones the gateway manages.
 */
export function joinedRooms (tenant: string, rooms: Iterable<string>, socketId: string): string[] {
  const joined: string[] = []
  for (const room of rooms) {
    const name = clientRoomName(tenant, room)
    if (name !== undefined && !isManagedRoom(name, socketId)) joined.push(name)
  }
  return joined
}
