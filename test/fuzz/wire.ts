import { connect as tcpConnect, type Socket as TcpSocket } from 'node:net'
import WebSocket from 'ws'
import type { Frame } from './arbitraries.js'

/**
 * Clients that put exactly the fuzzer's bytes on the wire: an Engine.IO
 * websocket without socket.io-client's encoder, an Engine.IO polling session,
 * and an HTTP/1.1 client that writes its request head byte for byte.
 */

export type Wait = 'matched' | 'closed' | 'timeout'

/** An ack, a CONNECT or CONNECT_ERROR, or a `gateway:error`: what the server answers a client with (relayed messages are not). */
export function isAnswer (text: string): boolean {
  if (text[0] !== '4') return false
  if (text[1] === '0' || text[1] === '3' || text[1] === '4') return true
  const args = text.indexOf('[')
  return text[1] === '2' && args >= 0 && args < 300 && text.startsWith('["gateway:error"', args)
}

/** An ack of an accepted packet (`43[/nsp,]<id>[{"ok":true…`): its fields are the operation's, not a refusal's. */
function isAcceptedAck (text: string): boolean {
  if (text[1] !== '3') return false
  const args = text.indexOf('[')
  return args >= 0 && args < 300 && text.startsWith('[{"ok":true', args)
}

interface Waiter { match: (text: string) => boolean, resolve: (result: Wait) => void, timer: NodeJS.Timeout }

/** A raw Engine.IO v4 websocket: sends frames as given, answers the server's pings, waits for frames by predicate. */
export class EngineSocket {
  closed = false
  /** Answers (acks, connect errors, gateway:error) received since `mark()`, cut to 4 KB; relayed messages are not kept. */
  received: string[] = []
  /** Length of the longest answer body (past the namespace) since `mark()`: a refusal that echoes a large input is a finding. */
  longestAnswer = 0
  /** The frame that settled the last `waitFor` with `matched`. */
  lastMatch = ''
  private readonly waiters = new Set<Waiter>()

  private constructor (private readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      if (isBinary) return
      const text = data.toString()
      if (text === '2') { this.send({ text: '3' }); return }
      if (isAnswer(text)) {
        // Refusals are what must not echo (SPEC §7); an accepted ack may carry what the room holds (a history).
        if (!isAcceptedAck(text)) this.longestAnswer = Math.max(this.longestAnswer, text.length - (text[2] === '/' ? text.indexOf(',') + 1 : 2))
        if (this.received.length < 32) this.received.push(text.slice(0, 4096))
      }
      for (const waiter of this.waiters) {
        if (waiter.match(text)) {
          this.lastMatch = text
          this.settle(waiter, 'matched')
        }
      }
    })
    ws.on('close', () => {
      this.closed = true
      for (const waiter of this.waiters) this.settle(waiter, 'closed')
    })
    // A refused or reset connection is an outcome the caller sees as `closed`; nothing to report here.
    ws.on('error', () => {})
  }

  /**
   * Opens a websocket. Resolves with the socket once open, or with the HTTP
   * status (0 for none) of a refused upgrade.
   */
  static async open (url: string, options: { headers?: Record<string, string>, timeoutMs: number }): Promise<EngineSocket | { refused: number | 'timeout' }> {
    const ws = new WebSocket(url, { headers: options.headers, perMessageDeflate: false, handshakeTimeout: options.timeoutMs, maxPayload: 64 * 1024 * 1024 })
    return await new Promise((resolve) => {
      const socket = new EngineSocket(ws)
      ws.once('open', () => { resolve(socket) })
      ws.once('unexpected-response', (_req, res) => {
        res.resume()
        resolve({ refused: res.statusCode ?? 0 })
        ws.terminate()
      })
      ws.once('error', (err) => { resolve({ refused: /timed out|timeout/i.test(err.message) ? 'timeout' : 0 }) })
      ws.once('close', () => { resolve({ refused: 0 }) })
    })
  }

  send (frame: Frame): void {
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) return
    if ('text' in frame) this.ws.send(frame.text)
    else this.ws.send(frame.bytes, { binary: frame.asText !== true })
  }

  /** Resolves when a text frame matches, the connection closes, or `timeoutMs` passes. */
  async waitFor (match: (text: string) => boolean, timeoutMs: number): Promise<Wait> {
    if (this.closed) return 'closed'
    return await new Promise((resolve) => {
      const waiter: Waiter = { match, resolve, timer: setTimeout(() => { this.settle(waiter, 'timeout') }, timeoutMs) }
      this.waiters.add(waiter)
    })
  }

  mark (): void {
    this.received = []
    this.longestAnswer = 0
  }

  close (): void {
    this.closed = true
    this.ws.terminate()
  }

  private settle (waiter: Waiter, result: Wait): void {
    if (!this.waiters.delete(waiter)) return
    clearTimeout(waiter.timer)
    waiter.resolve(result)
  }
}

export interface HttpAnswer { status: number, body: string }

/**
 * Engine.IO's HTTP long-polling, one session: handshake, POST bodies, GET
 * what the server sends. Requests go one at a time on one kept-alive
 * connection (a POST, then the GET that reads its answers).
 */
export class PollingSession {
  private readonly client: RawHttpClient
  private sid: string | undefined

  constructor (private readonly port: number) {
    this.client = new RawHttpClient(port)
  }

  get open (): boolean { return this.sid !== undefined }

  /** Handshake and CONNECT each of `namespaces` with `token`; false when any step is refused. */
  async connect (namespaces: string[], token: string, timeoutMs: number): Promise<boolean> {
    this.sid = undefined
    const hello = await this.call('GET', '/socket.io/?EIO=4&transport=polling', undefined, null, timeoutMs)
    const sid = hello !== 'timeout' && hello.status === 200 ? /"sid":"([^"]+)"/.exec(hello.body)?.[1] : undefined
    if (sid === undefined) return false
    this.sid = sid
    const posted = await this.post(namespaces.map((nsp) => `40${nsp},{"token":"${token}"}`).join('\x1e'), 'text/plain;charset=UTF-8', timeoutMs)
    if (posted === 'timeout' || posted.status !== 200) return this.drop()
    const deadline = Date.now() + timeoutMs
    let received = ''
    while (!namespaces.every((nsp) => received.includes(`40${nsp},{"sid"`))) {
      const answer = await this.poll(deadline - Date.now())
      if (answer === 'timeout' || answer.status !== 200 || Date.now() > deadline) return this.drop()
      received += answer.body
    }
    return true
  }

  async post (body: string | Uint8Array, contentType: string | null, timeoutMs: number): Promise<HttpAnswer | 'timeout'> {
    return await this.call('POST', this.path(), body, contentType, timeoutMs)
  }

  async poll (timeoutMs: number): Promise<HttpAnswer | 'timeout'> {
    return await this.call('GET', this.path(), undefined, null, timeoutMs)
  }

  drop (): false {
    this.sid = undefined
    return false
  }

  close (): void {
    this.sid = undefined
    this.client.close()
  }

  private path (): string { return `/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(this.sid ?? '')}` }

  private async call (method: string, path: string, body: string | Uint8Array | undefined, contentType: string | null, timeoutMs: number): Promise<HttpAnswer | 'timeout'> {
    const payload = body === undefined ? Buffer.alloc(0) : typeof body === 'string' ? Buffer.from(body) : Buffer.from(body)
    const head = `${method} ${path} HTTP/1.1\r\nhost: 127.0.0.1:${this.port}\r\n${contentType === null ? '' : `content-type: ${contentType}\r\n`}content-length: ${payload.length}\r\n\r\n`
    const answer = await this.client.send(Buffer.concat([Buffer.from(head, 'latin1'), payload]), timeoutMs)
    if (answer === 'timeout') return answer
    if (answer === 'closed') return { status: 0, body: '' }
    return { status: answer.status, body: answer.body.toString('utf8') }
  }
}

export type RawAnswer = { status: number, body: Buffer } | 'closed' | 'timeout'

/**
 * HTTP/1.1 on a kept-alive TCP connection, request bytes written as given.
 * Reads one response (1xx skipped; Content-Length, chunked, or until close);
 * a new connection is opened after the server closes one.
 */
export class RawHttpClient {
  private socket: TcpSocket | undefined
  private buffer: Buffer = Buffer.alloc(0)
  private pending: ((answer: RawAnswer) => void) | undefined

  constructor (private readonly port: number) {}

  async send (request: Buffer, timeoutMs: number): Promise<RawAnswer> {
    const reused = this.socket !== undefined
    const answer = await this.sendOn(this.socket ?? this.dial(), request, timeoutMs)
    // A kept-alive connection the server was closing (after refusing the request before) takes a
    // request it never reads: that one goes again on a new connection, as HTTP clients do.
    if (answer === 'closed' && reused) return await this.sendOn(this.dial(), request, timeoutMs)
    return answer
  }

  private async sendOn (socket: TcpSocket, request: Buffer, timeoutMs: number): Promise<RawAnswer> {
    return await new Promise((resolve) => {
      const timer = setTimeout(() => { this.reset(); finish('timeout') }, timeoutMs)
      const finish = (answer: RawAnswer): void => { clearTimeout(timer); this.pending = undefined; resolve(answer) }
      this.pending = finish
      socket.write(request)
    })
  }

  close (): void { this.reset() }

  private dial (): TcpSocket {
    const socket = tcpConnect(this.port, '127.0.0.1')
    socket.setNoDelay(true)
    this.socket = socket
    this.buffer = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk])
      this.parse(false)
    })
    const gone = (): void => {
      if (this.socket !== socket) return
      this.parse(true)
      this.socket = undefined
      this.pending?.('closed')
    }
    socket.on('close', gone)
    socket.on('error', () => {})
    return socket
  }

  private reset (): void {
    const socket = this.socket
    this.socket = undefined
    this.buffer = Buffer.alloc(0)
    socket?.destroy()
  }

  /** Completes the pending request when a whole response is buffered (or the connection ended after its head). */
  private parse (ended: boolean): void {
    for (;;) {
      const headEnd = this.buffer.indexOf('\r\n\r\n')
      if (headEnd < 0) return
      const head = this.buffer.subarray(0, headEnd).toString('latin1')
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0)
      const bodyStart = headEnd + 4
      if (status >= 100 && status < 200) {
        this.buffer = this.buffer.subarray(bodyStart)
        continue
      }
      const length = /\r\ncontent-length: *(\d+)/i.exec(head)
      let end: number | undefined
      if (length !== null) {
        end = bodyStart + Number(length[1])
        if (this.buffer.length < end) return
      } else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
        end = this.chunkedEnd(bodyStart)
        if (end === undefined) return
      } else if (!ended) {
        return
      }
      const closing = /\r\nconnection: *close/i.test(head)
      const body = this.buffer.subarray(bodyStart, end)
      this.buffer = end === undefined ? Buffer.alloc(0) : this.buffer.subarray(end)
      if (closing) this.reset()
      this.pending?.({ status, body })
      return
    }
  }

  private chunkedEnd (from: number): number | undefined {
    let at = from
    for (;;) {
      const lineEnd = this.buffer.indexOf('\r\n', at)
      if (lineEnd < 0) return undefined
      const size = parseInt(this.buffer.subarray(at, lineEnd).toString('latin1'), 16)
      if (Number.isNaN(size)) return this.buffer.length
      if (size === 0) {
        const trailerEnd = this.buffer.indexOf('\r\n', lineEnd + 2)
        return trailerEnd < 0 ? undefined : trailerEnd + 2
      }
      at = lineEnd + 2 + size + 2
      if (at > this.buffer.length) return undefined
    }
  }
}
