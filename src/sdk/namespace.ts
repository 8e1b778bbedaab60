import type { Manager, Socket } from 'socket.io-client'
import { Backoff, type BackoffOptions } from './backoff.js'
import { GatewayError, isTransientTokenFailure, refusalError, remedyFor, retryAfterMs, type ErrorDetails } from './errors.js'
import type { TokenSource } from './tokens.js'
import { isReservedEvent } from '../protocol/events.js'
import type { RelayedMessage } from '../protocol/messages.js'
import { compareStreamIds, parseStreamId } from '../protocol/message-ids.js'

/**
 * The ack of a published event (SPEC §5); `data` is the backend's answer when
 * a route in request mode took the event (SPEC §10), absent otherwise.
 */
export interface PublishAck<T = unknown> { ok: true, id: string, data?: T }

export type { RelayedMessage }

/** Who is in a room (SPEC §11): `count` is exact; at most 1,000 `members`, `truncated` beyond. */
export interface Presence { count: number, members: Array<{ sub: string, connections: number }>, truncated: boolean }

/** A message of a room's history (SPEC §12), with the event it was sent as. */
export type HistoryMessage<T = unknown> = RelayedMessage<T> & { event: string }

/** One namespace of a client (`client.namespace('/chat')`); all of a client's namespaces share one connection. */
export interface Namespace {
  readonly name: string
  readonly connected: boolean
  /** The rooms the gateway accepted a join for and that were not left: re-joined after every reconnect. */
  readonly rooms: readonly string[]
  /** Set once the SDK gave up on this namespace (or the client stopped or closed). */
  readonly stopped: GatewayError | undefined
  /** Resolves when connected; rejects with the GatewayError that stopped the namespace. */
  ready: () => Promise<void>
  /** Joins a room; rejects with a GatewayError (FORBIDDEN…) or TIMEOUT. */
  join: (room: string) => Promise<void>
  leave: (room: string) => Promise<void>
  /** Sends `event` with `{ room, data }`; resolves with the gateway's ack, rejects with a GatewayError or TIMEOUT. */
  publish: <T = unknown>(event: string, room: string, data: unknown) => Promise<PublishAck<T>>
  /**
   * `publish` for an event a route takes in request mode (SPEC §10): resolves
   * with the backend's answer (`data`; undefined when no route answered: the
   * event was relayed, or queued in notify mode), rejects with its refusal.
   */
  request: <T = unknown>(event: string, room: string, data: unknown) => Promise<T | undefined>
  /** Who is in a room the token may subscribe to, across every instance (SPEC §11). */
  presence: (room: string) => Promise<Presence>
  /** The room's last messages, oldest first (SPEC §12; at most `limit`, capped by the gateway's HISTORY_SIZE). */
  history: <T = unknown>(room: string, limit?: number) => Promise<Array<HistoryMessage<T>>>
  /**
   * Listens to an event from the gateway (a relayed event, `presence:join`,
   * `presence:leave`, `auth:expiring`, `shutdown`…); returns the unsubscribe
   * function. A relayed message the SDK already delivered (seen again at a
   * recovery's boundary) is not delivered twice.
   */
  on: <T = RelayedMessage>(event: string, handler: (payload: T) => void) => () => void
}

/**
 * Where a client is in a joined room's history: the newest id it got, the ids
 * it got lately (to drop a repeat), and the repeats dropped since its last
 * re-join (a replay counts them in `missed`).
 */
interface RoomPosition { newest?: [number, number], recent: Set<string>, repeats: number }
// Ids remembered per room for de-duplication: more than a replay's boundary can repeat.
const RECENT_IDS = 1024
// Messages from several instances may arrive out of id order (an older one lagging in another instance's
// pub/sub): a re-join asks from a little before the newest id it got, and the repeats are dropped.
const REWIND_MS = 2000

/** What a namespace needs from its client. */
export interface NamespaceHost {
  readonly tokens: TokenSource
  readonly ackTimeoutMs: number
  readonly backoff: BackoffOptions
  report: (err: GatewayError) => void
  connected: (namespace: string) => void
  disconnected: (namespace: string, reason: string) => void
  namespaceStopped: (err: GatewayError) => void
  stopClient: (err: GatewayError) => void
  /** A re-join with `since` got what the room kept (`recovered`), or the room may have dropped messages meanwhile (`gap`). */
  rejoined: (namespace: string, room: string, outcome: { recovered: boolean, missed: number }) => void
}

// Re-joins go out this many at a time: a socket that sends past its packet limit is refused, and past twice it, cut.
const REJOIN_BATCH = 10
// The `gateway:error` events that announce the gateway is closing this socket, and why.
const DISCONNECT_NOTICES = new Set(['disconnect', 'connect', 'flood'])
// Refusals of a re-join that concern the room itself: it is forgotten. Any other is tried again.
const ROOM_REFUSALS = new Set<string>(['FORBIDDEN', 'VALIDATION_FAILED'])

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null
const asGatewayError = (err: unknown): GatewayError => err instanceof GatewayError ? err : new GatewayError('UNAVAILABLE', String(err), { cause: err })
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/**
 * One Socket.IO namespace socket and what keeps it usable: the token it was
 * given, its rooms, and what to do when the gateway refuses or drops it. A
 * dropped transport is reopened by the client (the socket reconnects with it);
 * a socket the gateway refused or closed is reconnected here.
 */
export class NamespaceChannel implements Namespace {
  private readonly socket: Socket
  private readonly joined = new Set<string>()
  private readonly positions = new Map<string, RoomPosition>()
  // Relayed messages seen before (a recovery's boundary): their listeners skip them.
  private readonly repeats = new WeakSet<object>()
  private readonly backoff: Backoff
  // Rejections of the operations awaiting an ack: called when the namespace stops.
  private readonly pending = new Set<(err: GatewayError) => void>()
  private retryTimer?: ReturnType<typeof setTimeout>
  /** A refused `auth:refresh` to be pushed again on the same socket. */
  private pushTimer?: ReturnType<typeof setTimeout>
  /** The token this socket presented in its handshake or its last accepted `auth:refresh`. */
  private socketToken?: string
  private pushing?: string
  /** A fresh token was fetched for the last refusal: a second token refusal is not a token problem. */
  private renewedForRetry = false
  /** Why the gateway is about to close the socket (its `gateway:error` comes just before the disconnect). */
  private disconnectCause?: GatewayError
  private stoppedWith?: GatewayError
  private generation = 0

  constructor (readonly name: string, manager: Manager, private readonly host: NamespaceHost) {
    this.backoff = new Backoff(host.backoff)
    // A function, so that every handshake (reconnects included) presents the current token.
    this.socket = manager.socket(name, { auth: (send) => { this.authenticate(send) } })
    this.socket.on('connect', () => { this.onConnect() })
    this.socket.on('connect_error', (err: Error & { data?: unknown }) => { this.onConnectError(err) })
    this.socket.on('disconnect', (reason: string) => { this.onDisconnect(reason) })
    this.socket.on('gateway:error', (body: unknown) => { this.onGatewayError(body) })
    this.socket.on('auth:expiring', () => { this.onExpiring() })
    this.socket.on('auth:expired', () => { this.renewAndPush() })
    // Runs before the event's own listeners (socket.io-client calls onAny listeners first).
    this.socket.onAny((_event: string, payload: unknown) => { this.observe(payload) })
  }

  get connected (): boolean { return this.socket.connected }
  get rooms (): readonly string[] { return [...this.joined] }
  get stopped (): GatewayError | undefined { return this.stoppedWith }

  /** Connects unless connected, connecting, stopped, or waiting for the transport. */
  start (): void {
    if (this.stoppedWith !== undefined || this.socket.active) return
    this.socket.connect()
  }

  /** Waiting for the client to reopen the dropped transport (the socket reconnects with it). */
  awaitsTransport (): boolean {
    return this.stoppedWith === undefined && this.socket.active && !this.socket.connected
  }

  async ready (): Promise<void> {
    if (this.stoppedWith !== undefined) throw this.stoppedWith
    if (this.socket.connected) return
    await new Promise<void>((resolve, reject) => {
      const fail = (err: GatewayError): void => { this.socket.off('connect', onConnect); reject(err) }
      const onConnect = (): void => { this.pending.delete(fail); resolve() }
      this.pending.add(fail)
      this.socket.once('connect', onConnect)
    })
  }

  async join (room: string): Promise<void> {
    if (!this.positions.has(room)) this.positions.set(room, { recent: new Set(), repeats: 0 })
    try {
      await this.acked('join', { room }, { event: 'join', room })
    } catch (err) {
      if (!this.joined.has(room)) this.positions.delete(room)
      throw err
    }
    this.joined.add(room)
  }

  async leave (room: string): Promise<void> {
    // Forgotten at once: whatever becomes of this packet, a reconnect will not join the room again.
    this.joined.delete(room)
    this.positions.delete(room)
    await this.acked('leave', { room }, { event: 'leave', room })
  }

  async presence (room: string): Promise<Presence> {
    const ack = await this.acked('presence', { room }, { event: 'presence', room })
    return { count: Number(ack.count), members: Array.isArray(ack.members) ? ack.members as Presence['members'] : [], truncated: ack.truncated === true }
  }

  async history<T = unknown> (room: string, limit?: number): Promise<Array<HistoryMessage<T>>> {
    const ack = await this.acked('history', limit === undefined ? { room } : { room, limit }, { event: 'history', room })
    return Array.isArray(ack.messages) ? ack.messages as Array<HistoryMessage<T>> : []
  }

  async publish<T = unknown> (event: string, room: string, data: unknown): Promise<PublishAck<T>> {
    const details = { namespace: this.name, event, room }
    // Names the gateway handles or emits itself, and Socket.IO's own: the gateway's own rule (src/protocol/events.ts).
    if (isReservedEvent(event)) throw new GatewayError('VALIDATION_FAILED', `${event} is a reserved event name`, { details })
    const ack = await this.acked(event, { room, data }, { event, room })
    // An ack without its message id is no ack of a relayed event (SPEC §5).
    if (typeof ack.id !== 'string') throw new GatewayError('UNAVAILABLE', 'The gateway acked without a message id', { details })
    return 'data' in ack ? { ok: true, id: ack.id, data: ack.data as T } : { ok: true, id: ack.id }
  }

  async request<T = unknown> (event: string, room: string, data: unknown): Promise<T | undefined> {
    return (await this.publish<T>(event, room, data)).data
  }

  on<T = RelayedMessage>(event: string, handler: (payload: T) => void): () => void {
    // A listener of its own, so that unsubscribing removes exactly this subscription.
    const listener = (payload: T): void => {
      if (typeof payload === 'object' && payload !== null && this.repeats.has(payload)) return
      handler(payload)
    }
    this.socket.on(event, listener)
    return () => { this.socket.off(event, listener) }
  }

  /**
   * Gives a live socket a new token (`auth:refresh`). A refusal that waiting
   * fixes (rate limit…) is pushed again later on the same socket; any other
   * reconnects, so a handshake decides.
   */
  pushToken (token: string): void {
    if (!this.socket.connected || token === this.socketToken || token === this.pushing) return
    this.pushing = token
    this.acked('auth:refresh', { token }, { event: 'auth:refresh' }).then(() => {
      this.socketToken = token
    }, (err: GatewayError) => {
      // No answer (dropped, timed out): the next handshake presents the current token anyway.
      if (!err.fromGateway) return
      this.host.report(err)
      if (!this.socket.connected) return
      // The socket's token still works meanwhile (SPEC §7: live sockets keep working): no need to drop it.
      if (remedyFor(err.code) === 'retry' && this.host.tokens.heldUnexpired()) return this.pushLater(err)
      this.socket.disconnect()
      this.start()
    }).finally(() => {
      if (this.pushing === token) this.pushing = undefined
    })
  }

  /** Pushes the held token again after the backoff delay (or `retryAfter`, when longer). */
  private pushLater (err: GatewayError): void {
    if (this.pushTimer !== undefined) return
    const delay = Math.max(this.backoff.next(), retryAfterMs(err))
    this.pushTimer = setTimeout(() => {
      this.pushTimer = undefined
      const current = this.host.tokens.current()
      if (this.stoppedWith === undefined && current !== undefined) this.pushToken(current)
    }, delay)
  }

  /** Stops for good: pending operations reject with `err`, and nothing reconnects. */
  stop (err: GatewayError, notify = true): void {
    if (this.stoppedWith !== undefined) return
    this.stoppedWith = err
    clearTimeout(this.retryTimer)
    clearTimeout(this.pushTimer)
    this.socket.disconnect()
    this.socket.sendBuffer = []
    const pending = [...this.pending]
    this.pending.clear()
    for (const fail of pending) fail(err)
    if (notify) this.host.namespaceStopped(err)
  }

  /** An emit with an ack and a timeout; a `{ ok: false }` ack rejects with its code. */
  private async acked (event: string, payload: unknown, details: ErrorDetails): Promise<Record<string, unknown>> {
    if (this.stoppedWith !== undefined) throw this.stoppedWith
    const where = { ...details, namespace: this.name }
    const ack = await new Promise<unknown>((resolve, reject) => {
      const fail = (err: GatewayError): void => { reject(err) }
      this.pending.add(fail)
      this.socket.timeout(this.host.ackTimeoutMs).emitWithAck(event, payload).then((answer: unknown) => {
        this.pending.delete(fail)
        resolve(answer)
      }, (err: unknown) => {
        this.pending.delete(fail)
        reject(this.noAck(err, where))
      })
    })
    if (isRecord(ack) && ack.ok === true) return ack
    const refusal = refusalError(isRecord(ack) && isRecord(ack.error) ? ack.error : {}, where)
    // The token lapsed before its refresh landed (a throttled timer, a slept laptop): replace it now.
    if (refusal.code === 'TOKEN_EXPIRED' && event !== 'auth:refresh') this.renewAndPush()
    throw refusal
  }

  private noAck (err: unknown, details: ErrorDetails): GatewayError {
    if (this.stoppedWith !== undefined) return this.stoppedWith
    // socket.io-client's own wording for an ack that timed out (the packet is also dropped from its send buffer).
    if (err instanceof Error && err.message === 'operation has timed out') return new GatewayError('TIMEOUT', `No ack within ${this.host.ackTimeoutMs} ms`, { details })
    return new GatewayError('DISCONNECTED', 'The connection dropped before the ack arrived', { details, cause: err })
  }

  private authenticate (send: (data: object) => void): void {
    this.host.tokens.usable().then((token) => {
      // Stopped, closed or abandoned while the token was on its way: send no handshake.
      if (this.stoppedWith !== undefined || !this.socket.active) return
      this.socketToken = token
      send({ token })
    }, (err: unknown) => {
      if (this.stoppedWith !== undefined || !this.socket.active) return
      // Not connected, so this only detaches the socket; it is started again after the delay.
      this.socket.disconnect()
      this.onTokenFailure(asGatewayError(err))
    })
  }

  private onTokenFailure (err: GatewayError): void {
    this.host.report(err)
    if (isTransientTokenFailure(err.code) || err.code === 'CLOSED') this.retryLater(err)
    else this.host.stopClient(err)
  }

  private onConnect (): void {
    const generation = ++this.generation
    this.backoff.reset()
    this.renewedForRetry = false
    this.disconnectCause = undefined
    this.host.connected(this.name)
    // A refresh that happened while this socket was connecting reached the others only.
    const current = this.host.tokens.current()
    if (current !== undefined && current !== this.socketToken) this.pushToken(current)
    void this.rejoin([...this.joined], generation)
  }

  private onConnectError (err: Error & { data?: unknown }): void {
    if (!isRecord(err.data) || typeof err.data.code !== 'string') {
      // Socket.IO itself refused the namespace ('Invalid namespace'): the socket is detached, nothing would retry it.
      if (!this.socket.active) this.onRefused(new GatewayError('NOT_FOUND', err.message, { details: { namespace: this.name, event: 'connect' } }))
      // Else a transport failure: the client reopens the connection and this socket follows.
      return
    }
    this.onRefused(refusalError(err.data, { namespace: this.name, event: 'connect' }))
  }

  private onDisconnect (reason: string): void {
    if (reason === 'io client disconnect') return
    this.host.disconnected(this.name, reason)
    // Any other reason is the transport's: the client reopens it.
    if (reason !== 'io server disconnect') return
    const cause = this.disconnectCause
    this.disconnectCause = undefined
    if (cause !== undefined) this.onRefused(cause)
    else this.retryLater()
  }

  private onGatewayError (body: unknown): void {
    if (isRecord(body) && typeof body.event === 'string' && DISCONNECT_NOTICES.has(body.event)) {
      this.disconnectCause = refusalError(body, { namespace: this.name, event: 'disconnect' })
    }
  }

  /** The remedies of SPEC §6 refusals; see `remedyFor`. */
  private onRefused (err: GatewayError): void {
    this.host.report(err)
    switch (remedyFor(err.code)) {
      case 'renew-token':
        if (this.renewedForRetry) return this.host.stopClient(err)
        this.renewedForRetry = true
        // Refused, so never presented again: should renewing fail for now, the retry fetches anew.
        this.host.tokens.discard(this.socketToken)
        this.host.tokens.renew(this.socketToken).then(() => { this.start() }, (failure: unknown) => { this.onTokenFailure(asGatewayError(failure)) })
        return
      case 'retry':
        return this.retryLater(err)
      case 'stop-namespace':
        return this.stop(err)
      case 'stop-client':
        return this.host.stopClient(err)
    }
  }

  private retryLater (err?: GatewayError): void {
    if (this.stoppedWith !== undefined || this.retryTimer !== undefined) return
    const delay = Math.max(this.backoff.next(), err === undefined ? 0 : retryAfterMs(err))
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      this.start()
    }, delay)
  }

  /** `auth:expiring`: give the socket the newer token the client holds, or get one if a refresh is due. */
  private onExpiring (): void {
    const current = this.host.tokens.current()
    if (current !== undefined && current !== this.socketToken) this.pushToken(current)
    else if (this.host.tokens.refreshDue()) this.renewAndPush()
  }

  private renewAndPush (): void {
    this.host.tokens.renew(this.socketToken).then((token) => { this.pushToken(token) }, (err: unknown) => {
      const failure = asGatewayError(err)
      this.host.report(failure)
      // A transient failure is retried by the token source's timer, or at the next handshake.
      if (!isTransientTokenFailure(failure.code) && failure.code !== 'CLOSED') this.host.stopClient(failure)
    })
  }

  /**
   * A relayed message of a joined room moves the room's position; one
   * already delivered (the boundary of a replay) is marked a repeat.
   */
  private observe (payload: unknown): void {
    if (!isRecord(payload) || typeof payload.room !== 'string' || typeof payload.id !== 'string') return
    const position = this.positions.get(payload.room)
    if (position === undefined) return
    if (position.recent.has(payload.id)) {
      this.repeats.add(payload)
      position.repeats++
      return
    }
    position.recent.add(payload.id)
    if (position.recent.size > RECENT_IDS) position.recent.delete(position.recent.values().next().value as string)
    const id = parseStreamId(payload.id)
    if (id !== undefined && (position.newest === undefined || compareStreamIds(id, position.newest) > 0)) position.newest = id
  }

  /** The `since` of a re-join: the oldest id got within REWIND_MS of the newest (all later ones it got are in `recent`). */
  private sinceOf (position: RoomPosition | undefined): string | undefined {
    if (position?.newest === undefined) return undefined
    const floor = position.newest[0] - REWIND_MS
    let since: [number, number] = position.newest
    for (const text of position.recent) {
      const id = parseStreamId(text)
      if (id !== undefined && id[0] >= floor && compareStreamIds(id, since) < 0) since = id
    }
    return `${since[0]}-${since[1]}`
  }

  /** Joins the remembered rooms again, a batch at a time, from where the client was (SPEC §12); a room the policy now refuses is dropped and reported. */
  private async rejoin (rooms: string[], generation: number): Promise<void> {
    for (let i = 0; i < rooms.length; i += REJOIN_BATCH) {
      const batch = rooms.slice(i, i + REJOIN_BATCH).filter((room) => this.joined.has(room))
      const results = await Promise.allSettled(batch.map(async (room) => {
        const position = this.positions.get(room)
        const since = this.sinceOf(position)
        if (position !== undefined) position.repeats = 0
        const ack = await this.acked('join', since === undefined ? { room } : { room, since }, { event: 'join', room })
        // The replay came before its ack: its repeats of what the client had are not missed messages.
        const missed = Math.max(0, Number(ack.missed ?? 0) - (position?.repeats ?? 0))
        if (since !== undefined && typeof ack.recovered === 'boolean') this.host.rejoined(this.name, room, { recovered: ack.recovered, missed })
      }))
      // Dropped again (or reconnected meanwhile): the next connect starts over.
      if (generation !== this.generation || !this.socket.connected) return
      let waitMs = 0
      results.forEach((result, j) => {
        if (result.status === 'fulfilled') return
        const err = asGatewayError(result.reason)
        if (ROOM_REFUSALS.has(err.code)) {
          this.joined.delete(batch[j])
          this.host.report(err)
        } else if (err.fromGateway) {
          // Rate limited, or the token lapsed (its refresh is on the way): try this room again shortly.
          rooms.push(batch[j])
          waitMs = Math.max(waitMs, retryAfterMs(err), 1000)
        }
      })
      if (waitMs > 0) await sleep(waitMs)
    }
  }
}
