import { Manager, type ManagerOptions } from 'socket.io-client'
import { Backoff, type BackoffOptions } from './backoff.js'
import { GatewayError } from './errors.js'
import { NamespaceChannel, type Namespace, type NamespaceHost } from './namespace.js'
import { requestToken, tokenFromApp, TokenSource, type GetToken, type TokenGrant, type TokenRequest } from './tokens.js'

interface CommonOptions {
  /** The gateway's base URL, e.g. `https://gateway.example.com`. */
  url: string
  /** How long `join`, `leave` and `publish` wait for their ack (default 10 000 ms), then reject with TIMEOUT. */
  ackTimeoutMs?: number
  /** How long a `POST /auth/token` may take (default 10 000 ms). */
  tokenTimeoutMs?: number
  /** A token is replaced this long before it expires, at most a quarter of its lifetime before (default 90 000 ms: ahead of the gateway's own `auth:expiring` notice at 60 s). */
  refreshMarginMs?: number
  /** Reconnection delays: full jitter over [0, min(maxMs, baseMs × 2^attempt)) (defaults 500 and 30 000 ms). */
  backoff?: Omit<BackoffOptions, 'random'>
  /** Socket.IO transports (default: polling, upgraded to websocket). */
  transports?: ManagerOptions['transports']
  /** Further socket.io-client Manager options; `autoConnect` and `reconnection` are the SDK's own. */
  managerOptions?: Partial<ManagerOptions>
}

/** With an API key (servers): the SDK asks `POST /auth/token` itself. */
interface ApiKeyOptions extends CommonOptions {
  apiKey: string
  /** Body of the token request: `ttl`, `namespaces`, `sub` (with scope token:delegate). */
  tokenRequest?: TokenRequest
  getToken?: undefined
}

/** With the app's own token source (browsers: the API key stays on the app's backend). */
interface GetTokenOptions extends CommonOptions {
  getToken: GetToken
  apiKey?: undefined
  tokenRequest?: undefined
}

export type ClientOptions = ApiKeyOptions | GetTokenOptions

export interface ClientEvents {
  connect: (namespace: string) => void
  disconnect: (namespace: string, reason: string) => void
  /** Every refusal or failure the SDK handled, retried or not (see `stopped` for the ones it gave up on). */
  error: (err: GatewayError) => void
  /** The SDK gave up: on one namespace when `err.details.namespace` is set (FORBIDDEN…), else on the whole client. */
  stopped: (err: GatewayError) => void
  /** A new token is in use (fetched, and being handed to live connections). */
  token: () => void
  /** After a reconnect, a room was re-joined from the last message the client got: the `missed` ones were delivered, in order (SPEC §12). */
  recovered: (namespace: string, room: string, missed: number) => void
  /** After a reconnect, a room may have dropped messages the client never got (older than its history keeps): reload what matters. */
  gap: (namespace: string, room: string) => void
}

export interface Client {
  /** The namespace (created and connected on first use; the same object afterwards). */
  namespace: (name: string) => Namespace
  on: <E extends keyof ClientEvents>(event: E, handler: ClientEvents[E]) => () => void
  /** Disconnects everything; pending operations reject with CLOSED. */
  close: () => void
  /** Set once the client stopped (a refusal no retry can fix) or was closed. */
  readonly stopped: GatewayError | undefined
}

const DEFAULT_ACK_TIMEOUT_MS = 10_000
const DEFAULT_TOKEN_TIMEOUT_MS = 10_000
const DEFAULT_REFRESH_MARGIN_MS = 90_000

/**
 * A client of the gateway: one token and one connection (a socket.io-client
 * Manager, multiplexed) for all its namespaces.
 *
 * Reconnection is the SDK's own, not socket.io-client's (its Manager runs with
 * `reconnection: false`): socket.io-client does not retry a handshake the
 * gateway refused nor a socket the gateway closed, and what to do then depends
 * on the §6 code. A dropped transport is reopened here; a refused or closed
 * namespace socket is reconnected by its NamespaceChannel. Both wait with
 * exponential backoff and full jitter (backoff.ts).
 */
class GatewayClient implements Client, NamespaceHost {
  readonly tokens: TokenSource
  readonly ackTimeoutMs: number
  readonly backoff: BackoffOptions
  private readonly manager: Manager
  private readonly channels = new Map<string, NamespaceChannel>()
  private readonly listeners = new Map<keyof ClientEvents, Set<(...args: never[]) => void>>()
  private readonly transportBackoff: Backoff
  private reopenTimer?: ReturnType<typeof setTimeout>
  private transportOpen = false
  private stoppedWith?: GatewayError

  constructor (options: ClientOptions) {
    this.ackTimeoutMs = options.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS
    this.backoff = { ...options.backoff }
    this.transportBackoff = new Backoff(this.backoff)
    const tokenTimeoutMs = options.tokenTimeoutMs ?? DEFAULT_TOKEN_TIMEOUT_MS
    const fetchGrant = options.getToken !== undefined
      ? async (): Promise<TokenGrant> => await tokenFromApp(options.getToken)
      : async (): Promise<TokenGrant> => await requestToken(options.url, options.apiKey, options.tokenRequest ?? {}, tokenTimeoutMs)
    this.tokens = new TokenSource({
      fetchGrant,
      refreshMarginMs: options.refreshMarginMs ?? DEFAULT_REFRESH_MARGIN_MS,
      backoff: this.backoff,
      onToken: (token) => {
        this.emit('token')
        for (const channel of this.channels.values()) channel.pushToken(token)
      },
      onError: (err) => { this.report(err) },
      onFatal: (err) => { this.stopClient(err) }
    })
    this.manager = new Manager(options.url, {
      ...options.managerOptions,
      ...(options.transports !== undefined ? { transports: options.transports } : {}),
      autoConnect: false,
      reconnection: false
    })
    // The transport's state, from the manager's public events (its own field is private).
    this.manager.on('open', () => { this.transportOpen = true })
    this.manager.on('close', (reason) => {
      this.transportOpen = false
      // 'forced close': closed on purpose, or no namespace socket is attached any more.
      if (reason !== 'forced close') this.scheduleReopen()
    })
    this.manager.on('error', (err) => {
      // An error while open is followed by 'close'; one while not open is a failed (re)open.
      if (this.transportOpen || this.stoppedWith !== undefined) return
      this.report(new GatewayError('NETWORK_ERROR', `The gateway could not be reached: ${err.message}`, { cause: err }))
      this.scheduleReopen()
    })
  }

  get stopped (): GatewayError | undefined { return this.stoppedWith }

  namespace (name: string): Namespace {
    if (!name.startsWith('/')) throw new TypeError(`A namespace starts with "/": ${name}`)
    let channel = this.channels.get(name)
    if (channel === undefined) {
      channel = new NamespaceChannel(name, this.manager, this)
      this.channels.set(name, channel)
      if (this.stoppedWith !== undefined) channel.stop(this.stoppedWith, false)
      else channel.start()
    }
    return channel
  }

  on<E extends keyof ClientEvents>(event: E, handler: ClientEvents[E]): () => void {
    let handlers = this.listeners.get(event)
    if (handlers === undefined) {
      handlers = new Set()
      this.listeners.set(event, handlers)
    }
    const set = handlers
    // Wrapped, so that the same function subscribed twice is unsubscribed once per call.
    const listener = (...args: never[]): void => { (handler as (...a: never[]) => void)(...args) }
    set.add(listener)
    return () => { set.delete(listener) }
  }

  close (): void {
    this.shutdown(new GatewayError('CLOSED', 'The client is closed'))
  }

  // NamespaceHost: what the namespaces report.

  report (err: GatewayError): void { this.emit('error', err) }

  connected (namespace: string): void {
    this.transportBackoff.reset()
    this.emit('connect', namespace)
  }

  disconnected (namespace: string, reason: string): void { this.emit('disconnect', namespace, reason) }

  namespaceStopped (err: GatewayError): void { this.emit('stopped', err) }

  rejoined (namespace: string, room: string, { recovered, missed }: { recovered: boolean, missed: number }): void {
    if (recovered) this.emit('recovered', namespace, room, missed)
    else this.emit('gap', namespace, room)
  }

  stopClient (err: GatewayError): void {
    if (this.stoppedWith !== undefined) return
    this.shutdown(err)
    this.emit('stopped', err)
  }

  private shutdown (err: GatewayError): void {
    this.stoppedWith ??= err
    this.tokens.close()
    clearTimeout(this.reopenTimer)
    for (const channel of this.channels.values()) channel.stop(err, false)
    // The namespaces' sockets are closed by now, which closes the manager; an engine still open is closed here.
    if (this.transportOpen) this.manager.engine?.close()
  }

  /** Reopens a dropped transport after a backoff delay, when some namespace socket is waiting for it. */
  private scheduleReopen (): void {
    if (this.stoppedWith !== undefined || this.reopenTimer !== undefined) return
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = undefined
      if (this.stoppedWith !== undefined || this.transportOpen) return
      if ([...this.channels.values()].some((channel) => channel.awaitsTransport())) this.manager.open()
    }, this.transportBackoff.next())
  }

  private emit<E extends keyof ClientEvents>(event: E, ...args: Parameters<ClientEvents[E]>): void {
    for (const listener of [...this.listeners.get(event) ?? []]) {
      try {
        (listener as (...a: Parameters<ClientEvents[E]>) => void)(...args)
      } catch (err) {
        // An app's handler must not break the SDK's own bookkeeping: rethrown outside it.
        queueMicrotask(() => { throw err })
      }
    }
  }
}

/**
 * Creates a client. Nothing is fetched or connected until the first
 * `client.namespace(name)`.
 *
 * ```ts
 * const client = createClient({ url: 'https://gateway.example.com', getToken: fetchMyToken })
 * const chat = client.namespace('/chat')
 * await chat.join('lobby')
 * chat.on('message', (m) => console.log(m.from.sub, m.data))
 * await chat.publish('message', 'lobby', 'hi')
 * ```
 */
export function createClient (options: ClientOptions): Client {
  if (typeof options.apiKey !== 'string' && typeof options.getToken !== 'function') throw new TypeError('createClient needs apiKey or getToken')
  return new GatewayClient(options)
}
