// A lean Socket.IO v4 client speaking the wire protocol over `ws` directly
// (engine.io websocket transport, EIO=4). It sends exactly the frames
// socket.io-client sends, so the server's work is the same, but it does not
// decode relayed events (it counts them), which lets one load-generator core
// drive a server core. Correctness of what the servers send is checked with
// full JSON decoding on demand (`inspect`) and by test/sockets/*.
import { createRequire } from 'node:module'

interface WebSocketLike {
  readonly readyState: number
  send: (data: string) => void
  close: () => void
  terminate: () => void
  on: ((event: 'open' | 'close', listener: () => void) => void) &
  ((event: 'message', listener: (data: Buffer, isBinary: boolean) => void) => void) &
  ((event: 'error', listener: (err: Error) => void) => void)
}
type WebSocketCtor = new (url: string, options: { perMessageDeflate: boolean, localAddress?: string }) => WebSocketLike

// `ws` as socket.io-client's engine.io-client resolves it: always present with socket.io-client, whatever npm hoists.
const requireHere = createRequire(import.meta.url)
const requireFromEngine = createRequire(createRequire(requireHere.resolve('socket.io-client')).resolve('engine.io-client'))
const WebSocket = requireFromEngine('ws') as WebSocketCtor

const CH_0 = 0x30
const CH_2 = 0x32
const CH_3 = 0x33
const CH_4 = 0x34

export interface WireOptions {
  /** http://127.0.0.1:port */
  url: string
  namespace: string
  /** The CONNECT packet's payload (the handshake `auth`). */
  auth: Record<string, unknown>
  /**
   * Source address of the TCP connection (e.g. 127.0.0.2): the kernel has
   * ~28k ephemeral ports per source address towards one server port.
   */
  localAddress?: string
}

/** Raised when the namespace refuses the connection (CONNECT_ERROR). */
export class ConnectRefused extends Error {}

export class WireSocket {
  /** Events received (any event, counted, not decoded). */
  events = 0
  /** Called for every event frame (without decoding it). */
  onEvent: ((frame: Buffer) => void) | undefined
  /** Called when the connection is lost. */
  onClose: (() => void) | undefined
  private readonly ws: WebSocketLike
  private readonly prefix: string
  private readonly ackStart: number
  private nextAck = 0
  private readonly acks = new Map<number, (frame: Buffer, bodyStart: number) => void>()
  private connectWaiter: { resolve: () => void, reject: (err: Error) => void } | undefined
  private connected = false

  constructor (private readonly options: WireOptions) {
    this.prefix = options.namespace === '/' ? '' : `${options.namespace},`
    this.ackStart = 2 + this.prefix.length
    const base = options.url.replace(/^http/, 'ws')
    this.ws = new WebSocket(`${base}/socket.io/?EIO=4&transport=websocket`, { perMessageDeflate: false, ...(options.localAddress !== undefined ? { localAddress: options.localAddress } : {}) })
    this.ws.on('message', (data) => { this.receive(data) })
    this.ws.on('close', () => {
      this.connectWaiter?.reject(new Error('closed before connecting'))
      this.connectWaiter = undefined
      if (this.connected) {
        this.connected = false
        this.onClose?.()
      }
    })
    this.ws.on('error', (err) => {
      this.connectWaiter?.reject(err)
      this.connectWaiter = undefined
    })
  }

  /** Resolves once the namespace accepted the CONNECT; rejects with ConnectRefused or a network error. */
  async connect (): Promise<void> {
    await new Promise<void>((resolve, reject) => { this.connectWaiter = { resolve, reject } })
  }

  get isConnected (): boolean { return this.connected }

  /** Emits an event; with `onAck`, asks for an acknowledgement and passes its raw frame. */
  emit (event: string, payload: unknown, onAck?: (frame: Buffer, bodyStart: number) => void): void {
    const body = JSON.stringify([event, payload])
    if (onAck === undefined) {
      this.ws.send(`42${this.prefix}${body}`)
      return
    }
    const id = this.nextAck++
    this.acks.set(id, onAck)
    this.ws.send(`42${this.prefix}${id}${body}`)
  }

  /** Emits and resolves with the decoded acknowledgement (for set-up steps, not the measured loop). */
  async emitWithAck (event: string, payload: unknown): Promise<unknown> {
    return await new Promise((resolve) => {
      this.emit(event, payload, (frame, start) => { resolve((JSON.parse(frame.toString('utf8', start)) as unknown[])[0]) })
    })
  }

  /** As socket.io-client's `close()`: a DISCONNECT packet, then the transport closes. */
  close (): void {
    if (this.connected && this.ws.readyState === 1) this.ws.send(`41${this.prefix}`)
    this.connected = false
    this.ws.close()
  }

  terminate (): void {
    this.connected = false
    this.ws.terminate()
  }

  private receive (frame: Buffer): void {
    const type = frame[0]
    if (type === CH_4) {
      const packet = frame[1]
      if (packet === CH_2) {
        this.events++
        this.onEvent?.(frame)
      } else if (packet === CH_3) {
        // "43/chat,<id>[...]": read the id digits in place.
        let id = 0
        let i = this.ackStart
        for (let c = frame[i]; c >= 0x30 && c <= 0x39; c = frame[++i]) id = id * 10 + c - 0x30
        const ack = this.acks.get(id)
        if (ack !== undefined) {
          this.acks.delete(id)
          ack(frame, i)
        }
      } else if (packet === CH_0) {
        this.connected = true
        this.connectWaiter?.resolve()
        this.connectWaiter = undefined
      } else if (packet === CH_4) {
        const text = frame.toString('utf8', this.ackStart)
        this.connectWaiter?.reject(new ConnectRefused((JSON.parse(text) as { message: string }).message))
        this.connectWaiter = undefined
        this.ws.close()
      }
    } else if (type === CH_2) {
      this.ws.send('3')
    } else if (type === CH_0) {
      // engine.io OPEN: connect to the namespace with the handshake auth.
      this.ws.send(`40${this.prefix}${JSON.stringify(this.options.auth)}`)
    }
  }
}

/** Decodes one event frame: [event, payload, offset?] (for spot checks). */
export function decodeEvent (frame: Buffer, namespace: string): unknown[] {
  const text = frame.toString('utf8')
  return JSON.parse(text.slice(2 + (namespace === '/' ? 0 : namespace.length + 1))) as unknown[]
}

/**
 * Opens `count` sockets, at most `concurrency` connecting at once; resolves
 * with them in order, and the handshake latency of each in ms. With
 * `refused`, every handshake must end in CONNECT_ERROR instead (the socket
 * then closes its transport): the latency is the refusal's, `refusals` counts
 * them by message, and an accepted socket fails the call.
 */
export async function openMany (count: number, concurrency: number, make: (i: number) => WireOptions, options: { refused?: boolean } = {}): Promise<{ sockets: WireSocket[], latenciesMs: number[], refusals: Record<string, number> }> {
  const sockets: WireSocket[] = new Array(count)
  const latenciesMs: number[] = new Array(count)
  const refusals: Record<string, number> = {}
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++
      const started = performance.now()
      const socket = new WireSocket(make(i))
      sockets[i] = socket
      if (options.refused !== true) {
        await socket.connect()
      } else {
        try {
          await socket.connect()
        } catch (err) {
          if (!(err instanceof ConnectRefused)) throw err
          refusals[err.message] = (refusals[err.message] ?? 0) + 1
          latenciesMs[i] = performance.now() - started
          continue
        }
        throw new Error(`socket ${i} was accepted where a refusal was expected`)
      }
      latenciesMs[i] = performance.now() - started
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  return { sockets, latenciesMs, refusals }
}

/** Sockets per source address when a run spreads them (under the ~28k ephemeral ports of one address). */
export const SOCKETS_PER_SOURCE_ADDRESS = 20_000

/**
 * The source address for socket `i` of `count`: the default (undefined) up
 * to SOCKETS_PER_SOURCE_ADDRESS sockets, else 127.0.0.(1 + ⌊i / 20,000⌋)
 * (the whole of 127/8 is loopback on Linux).
 */
export function sourceAddress (i: number, count: number): string | undefined {
  return count > SOCKETS_PER_SOURCE_ADDRESS ? `127.0.0.${1 + Math.floor(i / SOCKETS_PER_SOURCE_ADDRESS)}` : undefined
}

/** Starts closing every socket; the server's socket count tells when it has seen them go. */
export function closeAll (sockets: WireSocket[]): void {
  for (const socket of sockets) socket.close()
}

/**
 * Opens one socket per token on `namespace` (a `sub` in `auth` for a server without authentication)
 * and joins socket i to `roomOf(i)`: the set-up of the load generators that pair their clients in rooms.
 */
export async function openInRooms (
  args: { url: string, tokens: Array<string | null>, subs: string[] }, namespace: string, roomOf: (i: number) => string
): Promise<WireSocket[]> {
  const { sockets } = await openMany(args.tokens.length, 50, (i) => ({
    url: args.url,
    namespace,
    auth: args.tokens[i] === null ? { sub: args.subs[i] } : { token: args.tokens[i] }
  }))
  for (const [i, socket] of sockets.entries()) {
    const joined = await socket.emitWithAck('join', { room: roomOf(i) }) as { ok?: boolean }
    if (joined?.ok !== true) throw new Error(`join refused: ${JSON.stringify(joined)}`)
  }
  return sockets
}
