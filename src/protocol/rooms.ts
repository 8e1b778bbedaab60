// Room names the gateway forms itself (SPEC §5). No imports.

/** The room of a subject's sockets in each namespace: `POST /v1/publish` to it reaches every connection of that user. */
export const userRoom = (sub: string): string => `user:${sub}`

/** Each socket is in this room of its namespace, so a key's sockets can be found and closed together. */
export const keyRoom = (keyId: string): string => `key:${keyId}`

/**
 * Rooms the gateway manages: `user:<sub>`, `key:<id>` and the socket's own
 * id. A client may neither leave them nor join another's (joining another
 * user's room would read their mail); joining its own user room, which it is
 * in already, is the policy's call.
 */
export function isManagedRoom (room: string, socketId: string): boolean {
  return room === socketId || room.startsWith('key:') || room.startsWith('user:')
}
