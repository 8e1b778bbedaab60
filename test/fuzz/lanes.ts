import type { Frame, FuzzInput, HandshakeInput, PollingInput, RestInput, SocketInput, TransportInput } from './arbitraries.js'
import { MARK } from './arbitraries.js'
import { errorSignature, type Problem } from './problems.js'
import { EngineSocket, isAnswer, PollingSession, RawHttpClient } from './wire.js'

/**
 * The connections that carry the fuzzer's inputs to the gateway (they run in
 * the fuzzing worker, beside nothing else). Every input is followed by a probe
 * on its connection (a `leave` with an ack): an answer or a close means the
 * gateway dealt with the input; neither within `hangMs` is a hang.
 */

/** Live credentials for the inputs' markers. */
export interface Credentials { token: string, otherToken: string, apiKey: string, adminKey: string }

/** Where the gateway listens and what the lanes need to reach it. */
export interface Target {
  url: string
  port: number
  credentials: Credentials
  /** How long one input may go without an answer or a close before it is a hang. */
  hangMs: number
  /** Parallel connections per input kind. */
  lanes: Record<FuzzInput['kind'], number>
}

const NAMESPACES = ['/chat', '/notification', '/system', '/error']

/** Replaces the inputs' credential markers with live ones. */
function withCredentials (text: string, credentials: Credentials): string {
  if (!text.includes('@@')) return text
  return text.replaceAll(MARK.token, credentials.token).replaceAll(MARK.otherToken, credentials.otherToken)
    .replaceAll(MARK.apiKey, credentials.apiKey).replaceAll(MARK.adminKey, credentials.adminKey)
}

/** What the gateway answered an input, for the per-kind counts. */
function answerOf (frames: string[], probe: string): string {
  for (const text of frames) {
    if (text.startsWith(probe)) continue
    const code = /"code":"([A-Z_]+)"/.exec(text)?.[1]
    if (code !== undefined) return `refused:${code}`
    if (text.includes('"ok":true')) return 'ok'
    if (text.startsWith('44')) return `refused:${/"message":"([^"]{0,40})/.exec(text)?.[1] ?? '?'}`
  }
  return 'no answer'
}

let probeIds = 2_000_000_000
const probeFor = (namespace: string): { text: string, ack: string } => {
  const id = probeIds++
  return { text: `42${namespace},${id}["leave",{"room":"fuzz-probe"}]`, ack: `43${namespace},${id}[` }
}

/** Runs batches of inputs side by side over one lane per connection; counts what became of each. */
export class FuzzDriver {
  readonly counts = new Map<string, Map<string, number>>()
  readonly sessions = { socket: 0, handshake: 0, polling: 0 }
  private readonly lanes: Lane[] = []
  private readonly context: LaneContext

  constructor (target: Target) {
    const context: LaneContext = { sessions: this.sessions, ws: target.url.replace(/^http/, 'ws'), port: target.port, hangMs: target.hangMs, credentials: target.credentials, report: () => {} }
    this.context = context
    const make: Record<FuzzInput['kind'], () => Lane> = {
      socket: () => new SocketLane(context, this.lanes.length === 0),
      handshake: () => new HandshakeLane(context),
      transport: () => new TransportLane(context),
      polling: () => new PollingLane(context),
      rest: () => new RestLane(context)
    }
    for (const kind of Object.keys(make) as Array<FuzzInput['kind']>) {
      for (let i = 0; i < target.lanes[kind]; i++) this.lanes.push(make[kind]())
    }
  }

  /** Sends every input of the batch and returns the problems its connections showed (hangs, 5xx). */
  async runBatch (batch: FuzzInput[]): Promise<Problem[]> {
    const problems: Problem[] = []
    this.context.report = (problem) => { problems.push(problem) }
    const queues = new Map<Lane, FuzzInput[]>()
    const next = new Map<string, number>()
    for (const input of batch) {
      const ofKind = this.lanes.filter((lane) => lane.kind === input.kind)
      const index = next.get(input.kind) ?? 0
      next.set(input.kind, index + 1)
      const lane = ofKind[index % ofKind.length]
      const queue = queues.get(lane)
      if (queue === undefined) queues.set(lane, [input])
      else queue.push(input)
    }
    await Promise.all([...queues].map(async ([lane, inputs]) => {
      for (const input of inputs) {
        const outcome = await lane.run(input as never).catch((err: unknown) => {
          problems.push({ kind: 'crash', signature: `fuzzer: ${errorSignature(err)}`, message: err instanceof Error ? (err.stack ?? err.message) : String(err), input })
          return 'fuzzer error'
        })
        this.count(input.tag, outcome)
      }
    }))
    return problems
  }

  /** Inputs sent per tag (`socket/event`, `rest/publish`, ...) and what became of them. */
  summary (): Record<string, Record<string, number>> {
    return Object.fromEntries([...this.counts].sort().map(([tag, outcomes]) => [tag, Object.fromEntries([...outcomes].sort((a, b) => b[1] - a[1]))]))
  }

  close (): void {
    for (const lane of this.lanes) lane.close()
  }

  private count (tag: string, outcome: string): void {
    let outcomes = this.counts.get(tag)
    if (outcomes === undefined) this.counts.set(tag, outcomes = new Map())
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
  }
}

interface LaneContext {
  /** Connections opened per kind (a fuzz connection is replaced each time the server closes one). */
  sessions: Record<'socket' | 'handshake' | 'polling', number>
  ws: string
  port: number
  hangMs: number
  credentials: Credentials
  report: (problem: Problem) => void
}

/** One connection's worth of inputs of one kind, run one after another. Returns the outcome to count. */
interface Lane {
  readonly kind: FuzzInput['kind']
  run: (input: never) => Promise<string>
  close: () => void
}

/**
 * SPEC §7: a refusal never echoes more than 128 characters of what the
 * client sent. The answers themselves are short (a code, a message naming at
 * most a room of 256 characters), so one longer than this echoes the input.
 */
export const LONGEST_ANSWER = 1024

/**
 * An answer's body: what follows its namespace (`44/nsp,{...}`). Socket.IO
 * names the namespace in every packet, a CONNECT_ERROR for an unknown one
 * included, so that part repeats the client's by design.
 */
export function answerBody (text: string): string {
  return text[2] === '/' ? text.slice(text.indexOf(',') + 1) : text.slice(2)
}

/** A finding when the longest answer body to an input is past LONGEST_ANSWER. */
function checkEcho (input: FuzzInput, longest: number, report: (problem: Problem) => void): void {
  if (longest > LONGEST_ANSWER) report({ kind: 'echo', signature: `echo: ${input.tag} answered with over ${LONGEST_ANSWER} characters`, message: `an answer body of ${longest} characters`, input })
}

const hang = (input: FuzzInput, hangMs: number, what: string): Problem =>
  ({ kind: 'hang', signature: `hang: ${input.tag} ${what}`, message: `no answer and no close within ${hangMs} ms (${what})`, input })

/** The namespace a packet addresses (`42/nsp,...`, `451-/nsp,...`), for packets other than CONNECT. */
function addressedNamespace (packet: string): string | undefined {
  return /^4[1-6](?:[^-/,]*-)?(\/[^,]*),/.exec(packet)?.[1]
}

/**
 * Where to send the probe after `packets`: a namespace the connection is in
 * that they do not disconnect (`41<nsp>,`). Socket.IO handles an event a tick
 * after decoding it, so a probe decoded beside the disconnect of its own
 * namespace is dropped silently while the connection stays open for the
 * others; that is no hang. Undefined when no namespace is left.
 */
function probeNamespace (packets: string[], connected: Iterable<string>): string | undefined {
  const gone = new Set(packets.filter((p) => p.startsWith('41')).map((p) => addressedNamespace(p)))
  for (const nsp of connected) if (!gone.has(nsp)) return nsp
  return undefined
}

// A probe that a slow machine did not answer this fast is sent once more before anything is called a hang.
const FIRST_PROBE_MS = 1000

/**
 * Frames on a websocket in `/chat`, each input followed by a probe. The other
 * namespaces are connected when an input first addresses them: most
 * connections are closed by an input within a few, and a CONNECT costs a
 * token check and an audit row. One lane sits in room `lobby`, so that what
 * is relayed there is also delivered (one member is enough for that path;
 * each more only multiplies the writes).
 */
class SocketLane implements Lane {
  readonly kind = 'socket'
  private socket: EngineSocket | undefined
  private readonly namespaces = new Set<string>()
  constructor (private readonly context: LaneContext, private readonly inLobby: boolean) {}

  async run (input: SocketInput): Promise<string> {
    const socket = this.socket !== undefined && !this.socket.closed ? this.socket : await this.connect()
    if (socket === undefined) return 'session refused'
    const texts = input.frames.flatMap((f) => 'text' in f ? [f.text.slice(0, 400)] : [])
    for (const text of texts) {
      const nsp = addressedNamespace(text)
      if (nsp !== undefined && NAMESPACES.includes(nsp) && !this.namespaces.has(nsp) && !(await this.join(socket, nsp))) return 'session refused'
    }
    socket.mark()
    for (const frame of input.frames) socket.send(this.render(frame))
    const namespace = probeNamespace(texts, this.namespaces)
    let probe = probeFor(namespace ?? '/chat')
    // Every namespace disconnected: only a later packet is certain to find the connection empty (and close it).
    if (namespace === undefined) await new Promise((resolve) => setTimeout(resolve, 50))
    socket.send({ text: probe.text })
    let result = await socket.waitFor((text) => text.startsWith(probe.ack), Math.min(FIRST_PROBE_MS, this.context.hangMs))
    if (result === 'timeout') {
      probe = probeFor(namespace ?? '/chat')
      socket.send({ text: probe.text })
      result = await socket.waitFor((text) => text.startsWith(probe.ack), this.context.hangMs)
    }
    if (result === 'timeout') {
      this.context.report(hang(input, this.context.hangMs, 'websocket'))
      socket.close()
    }
    for (const text of texts) if (text.startsWith('41')) this.namespaces.delete(addressedNamespace(text) ?? '')
    checkEcho(input, socket.longestAnswer, this.context.report)
    return result === 'matched' ? answerOf(socket.received, probe.ack) : result
  }

  close (): void { this.socket?.close() }

  private render (frame: Frame): Frame {
    return 'text' in frame ? { text: withCredentials(frame.text, this.context.credentials) } : frame
  }

  private async join (socket: EngineSocket, nsp: string): Promise<boolean> {
    const joined = socket.waitFor((text) => text.startsWith(`40${nsp},{"sid"`), this.context.hangMs)
    socket.send({ text: `40${nsp},{"token":"${this.context.credentials.token}"}` })
    if (await joined !== 'matched') { socket.close(); return false }
    this.namespaces.add(nsp)
    return true
  }

  private async connect (): Promise<EngineSocket | undefined> {
    this.socket = undefined
    this.namespaces.clear()
    this.context.sessions.socket++
    const opened = await EngineSocket.open(`${this.context.ws}/socket.io/?EIO=4&transport=websocket`, { timeoutMs: this.context.hangMs })
    if (!(opened instanceof EngineSocket) || !(await this.join(opened, '/chat'))) return undefined
    // Handled before any later packet of /chat: no need to wait for its ack.
    if (this.inLobby) opened.send({ text: '42/chat,["join",{"room":"lobby"}]' })
    this.socket = opened
    return opened
  }
}

/** CONNECT packets on a websocket that is in no namespace; an accepted one is disconnected again. */
class HandshakeLane implements Lane {
  readonly kind = 'handshake'
  private socket: EngineSocket | undefined
  constructor (private readonly context: LaneContext) {}

  async run (input: HandshakeInput): Promise<string> {
    let socket = this.socket
    if (socket === undefined || socket.closed) {
      const opened = await EngineSocket.open(`${this.context.ws}/socket.io/?EIO=4&transport=websocket`, { timeoutMs: this.context.hangMs })
      this.context.sessions.handshake++
      if (!(opened instanceof EngineSocket)) return 'session refused'
      this.socket = socket = opened
    }
    const answered = socket.waitFor((text) => text.startsWith('40') || text.startsWith('44'), this.context.hangMs)
    socket.send({ text: withCredentials(input.frame, this.context.credentials) })
    const result = await answered
    if (result === 'timeout') {
      this.context.report(hang(input, this.context.hangMs, 'CONNECT'))
      socket.close()
      return result
    }
    if (result === 'closed') return result
    const answer = socket.lastMatch
    checkEcho(input, answerBody(answer).length, this.context.report)
    if (answer.startsWith('44')) return `refused:${/"message":"([^"]{0,40})/.exec(answer)?.[1] ?? '?'}`
    const comma = answer.indexOf(',')
    socket.send({ text: `41${comma > 2 ? answer.slice(2, comma) + ',' : ''}` })
    return 'accepted'
  }

  close (): void { this.socket?.close() }
}

/** A websocket handshake with a hostile query and headers; an accepted one is closed at once. */
class TransportLane implements Lane {
  readonly kind = 'transport'
  constructor (private readonly context: LaneContext) {}

  async run (input: TransportInput): Promise<string> {
    const opened = await EngineSocket.open(`${this.context.ws}/socket.io/?${input.query}`, { headers: input.headers, timeoutMs: this.context.hangMs })
    if (!(opened instanceof EngineSocket)) {
      if (opened.refused === 'timeout') this.context.report(hang(input, this.context.hangMs, 'upgrade'))
      return opened.refused === 'timeout' ? 'timeout' : `status:${opened.refused}`
    }
    opened.close()
    return 'open'
  }

  close (): void {}
}

/** POST bodies of a polling session connected to every namespace, each followed by a probe in the same body. */
class PollingLane implements Lane {
  readonly kind = 'polling'
  private readonly session: PollingSession
  constructor (private readonly context: LaneContext) {
    this.session = new PollingSession(context.port)
  }

  async run (input: PollingInput): Promise<string> {
    const { hangMs, credentials } = this.context
    if (!this.session.open) {
      this.context.sessions.polling++
      if (!(await this.session.connect(NAMESPACES, credentials.token, hangMs))) return 'session refused'
    }
    const packets = typeof input.body === 'string' ? input.body.split('\x1e').map((p) => p.slice(0, 400)) : []
    const namespace = probeNamespace(packets, NAMESPACES)
    const probe = probeFor(namespace ?? '/chat')
    const tail = namespace === undefined ? '' : `\x1e${probe.text}`
    const body = typeof input.body === 'string' ? withCredentials(input.body, credentials) + tail : Buffer.concat([input.body, Buffer.from(tail)])
    const posted = await this.session.post(body, input.contentType, hangMs)
    if (posted === 'timeout') {
      this.context.report(hang(input, hangMs, 'POST'))
      this.session.drop()
      return 'timeout'
    }
    if (posted.status !== 200) {
      this.session.drop()
      return `post:${posted.status}`
    }
    // Every namespace disconnected: a probe in a body of its own finds the connection empty, and closes it.
    if (namespace === undefined) await this.session.post(probe.text, 'text/plain;charset=UTF-8', hangMs)
    const deadline = Date.now() + hangMs
    const seen: string[] = []
    while (Date.now() < deadline) {
      const answer = await this.session.poll(deadline - Date.now())
      if (answer === 'timeout') break
      const received = answer.body.split('\x1e')
      if (answer.status !== 200 || received.includes('1')) {
        this.session.drop()
        return 'closed'
      }
      if (received.includes('2')) await this.session.post('3', 'text/plain;charset=UTF-8', hangMs)
      for (const packet of received) {
        if (!isAnswer(packet)) continue
        checkEcho(input, answerBody(packet).length, this.context.report)
        seen.push(packet.slice(0, 4096))
      }
      if (received.some((p) => p.startsWith(probe.ack))) return answerOf(seen, probe.ack)
    }
    this.context.report(hang(input, hangMs, 'GET'))
    this.session.drop()
    return 'timeout'
  }

  close (): void { this.session.close() }
}

/** HTTP requests written byte for byte on a kept-alive connection. */
class RestLane implements Lane {
  readonly kind = 'rest'
  private readonly client: RawHttpClient
  constructor (private readonly context: LaneContext) {
    this.client = new RawHttpClient(context.port)
  }

  async run (input: RestInput): Promise<string> {
    const answer = await this.client.send(this.render(input), this.context.hangMs)
    if (answer === 'timeout') {
      this.context.report(hang(input, this.context.hangMs, 'HTTP'))
      return 'timeout'
    }
    if (answer === 'closed') return 'closed'
    // 503 is the gateway's fail-closed answer; any other 5xx is a request it did not handle.
    if (answer.status >= 500 && answer.status !== 503) {
      const route = input.path.split('?')[0].replace(/^(\/v1\/(keys|policies)\/)[^/]+/, '$1:id')
      this.context.report({ kind: 'http-5xx', signature: `http-${answer.status}: ${input.method} ${route}`, message: `${input.method} ${input.path} answered ${answer.status}`, input })
    }
    return `status:${answer.status}`
  }

  close (): void { this.client.close() }

  private render (input: RestInput): Buffer {
    const { credentials } = this.context
    const body = typeof input.body === 'string' ? Buffer.from(withCredentials(input.body, credentials)) : Buffer.from(input.body)
    const lines = [`${input.method} ${input.path} HTTP/1.1`, `host: 127.0.0.1:${this.context.port}`]
    for (const [name, value] of input.headers) lines.push(`${name}: ${withCredentials(value, credentials)}`)
    if (input.framing === 'length' || input.framing === 'length-and-chunked') lines.push(`content-length: ${body.length}`)
    if (input.framing !== 'length') lines.push('transfer-encoding: chunked')
    const head = Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1')
    if (input.framing === 'length') return Buffer.concat([head, body])
    const chunk = body.length === 0 ? [] : [Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n')]
    return Buffer.concat([head, ...chunk, Buffer.from('0\r\n\r\n')])
  }
}
