import type { FastifyInstance } from 'fastify'
import { createClient, type Client, type ClientOptions, type GatewayError, type Namespace, type RelayedMessage } from '../../src/sdk/index.js'

type Tap = { teardown: (fn: () => unknown) => void }

/** A chat policy: rooms `lobby` and `room:*` (publish denied on `room:readonly*`), event `message` only; `/notification` connect. */
export const CHAT_RULES = [
  { effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], events: ['message'], rooms: ['lobby', 'room:*'] },
  { effect: 'deny', namespace: '/chat', actions: ['publish'], rooms: ['room:readonly*'] },
  { effect: 'allow', namespace: '/notification', actions: ['connect'] }
]

/** Short delays, so that a reconnect loop (or its absence) shows within a test; acks may take long (a join waited past 2 s under load). */
export const FAST = { transports: ['websocket'] as ClientOptions['transports'], backoff: { baseMs: 50, maxMs: 400 }, ackTimeoutMs: 10_000 }

/** An SDK client closed when the test ends, with everything it reported recorded. */
export function sdkClient (t: Tap, options: ClientOptions): Client & { seen: Seen } {
  const client = createClient(options)
  t.teardown(() => { client.close() })
  const seen: Seen = { errors: [], stopped: [], connects: [], disconnects: [], tokens: 0 }
  client.on('error', (err) => { seen.errors.push(err) })
  client.on('stopped', (err) => { seen.stopped.push(err) })
  client.on('connect', (ns) => { seen.connects.push(ns) })
  client.on('disconnect', (ns, reason) => { seen.disconnects.push(`${ns} ${reason}`) })
  client.on('token', () => { seen.tokens++ })
  return Object.assign(client, { seen })
}

export interface Seen { errors: GatewayError[], stopped: GatewayError[], connects: string[], disconnects: string[], tokens: number }

/** A getToken that mints a delegated token for `sub` through the app, counting its calls and keeping the last token. */
export function appTokens (app: FastifyInstance, apiKey: string, sub: string, body: Record<string, unknown> = {}): { getToken: () => Promise<{ accessToken: string, expiresIn: number }>, calls: () => number, last: () => string } {
  let calls = 0
  let last = ''
  return {
    getToken: async () => {
      calls++
      const res = await app.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': apiKey }, payload: { sub, ...body } })
      if (res.statusCode !== 200) throw new Error(`token failed: ${res.statusCode} ${res.body}`)
      const grant = res.json<{ accessToken: string, expiresIn: number }>()
      last = grant.accessToken
      return grant
    },
    calls: () => calls,
    last: () => last
  }
}

/** The next `event` on a namespace, or a rejection after `timeoutMs`. */
export async function nextMessage<T = RelayedMessage> (ns: Namespace, event = 'message', timeoutMs = 10_000): Promise<T> {
  return await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`no ${event} within ${timeoutMs} ms`)) }, timeoutMs)
    const off = ns.on<T>(event, (payload) => {
      clearTimeout(timer)
      off()
      resolve(payload)
    })
  })
}

/** The rejection of a promise that must reject (fails the test when it resolves). */
export async function rejection (promise: Promise<unknown>): Promise<GatewayError> {
  try {
    await promise
  } catch (err) {
    return err as GatewayError
  }
  throw new Error('expected a rejection')
}

/** Members of a room of a namespace on this instance (server side). */
export const roomSize = (app: FastifyInstance, namespace: string, room: string): number => app.io.of(namespace).adapter.rooms.get(room)?.size ?? 0

/** The socket-transport and HTTP audit rows so far, as `transport outcome reason` strings. */
export async function auditTrail (app: FastifyInstance): Promise<string[]> {
  await app.audit.flush()
  const rows = await app.sql<Array<{ transport: string, outcome: string, reason: string | null }>>`
    select transport, outcome, reason from auth_attempts where key_id is not null or transport = 'socket' order by id`
  return rows.map((r) => `${r.transport} ${r.outcome}${r.reason === null ? '' : ` ${r.reason}`}`)
}
