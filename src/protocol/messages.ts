// What travels on the wire between the gateway and its clients (SPEC §5).
// No imports: the browser SDK shares these types.

/** The message members of a room receive for a relayed or published event. */
export interface RelayedMessage<T = unknown> {
  id: string
  room: string
  /** Who sent it: a client's subject or a key's id; `route` is set (and `sub` is `route:<name>`) when a backend sent it (SPEC §10). */
  from: { sub: string, route?: string }
  data: T
  ts: number
}

/** The body of a refusal: in an ack's `error`, in `gateway:error` (with the event), in `connect_error`'s data. */
export interface RefusalBody { code: string, message: string, retryAfter?: number }

/** What an ack answers: `ok: true` with the operation's fields, or the refusal. */
export type AckResponse = ({ ok: true } & Record<string, unknown>) | { ok: false, error: RefusalBody }

/** The acknowledgement callback Socket.IO hands a handler. */
export type Ack = (response: AckResponse) => void
