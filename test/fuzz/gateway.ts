import type { AddressInfo } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { FastifyInstance } from 'fastify'
import type { Socket as ClientSocket } from 'socket.io-client'
import { ADMIN_KEY, buildFrom, connect, connected, isolatedEnv, listen, realServers } from '../helper.js'
import { keyWithPolicy, tokenFor } from '../support/sockets.js'
import type { Credentials } from './lanes.js'
import { errorSignature, type Problem } from './problems.js'

type Tap = { teardown: (fn: () => unknown) => void }

/** The fuzzed gateway's limits: high enough that no per-IP or per-socket limit stops the inputs before deep code. */
export const FUZZ_ENV: Record<string, string> = {
  RATE_LIMIT_TOKEN: '999999999/second',
  RATE_LIMIT_CONNECT: '999999999/second',
  RATE_LIMIT_SOCKET: '999999999/second',
  RATE_LIMIT_TRANSPORT: '999999999/second',
  ANOMALY_MAX_FAILURES: '999999999/second',
  MAX_CONNECTIONS_PER_IP: '1000000',
  // Campaigns outlast the default 15-minute token.
  JWT_TTL: '86400',
  // Error lines are findings: the gateway side reads them.
  LOG_LEVEL: 'error'
}

const EVERYTHING = [{ effect: 'allow', namespace: '*', actions: ['connect', 'subscribe', 'publish'] }]

/** A gc that works without --expose-gc (the sample runs inside tap). */
export const collectGarbage: () => void = (() => {
  setFlagsFromString('--expose-gc')
  return runInNewContext('gc') as () => void
})()

/** Heap in use after full collections, in bytes. */
export async function heapAfterGc (): Promise<number> {
  for (let i = 0; i < 3; i++) {
    collectGarbage()
    await new Promise((resolve) => setImmediate(resolve))
  }
  return process.memoryUsage().heapUsed
}

export interface RoundTrips { count: number, totalMs: number, maxMs: number }

/**
 * What the fuzzed gateway stores its state in: `servers` is PostgreSQL and
 * Redis from TEST_DATABASE_URL / TEST_REDIS_URL (as `make test` runs it),
 * `postgres` the same PostgreSQL with the in-process stores and adapter,
 * `embedded` PGlite in memory and no Redis (the defaults of `make dev`).
 */
export type Stores = 'embedded' | 'postgres' | 'servers'

/** `servers` when the TEST_* servers are there, else `embedded`: what the other tests do. */
export const defaultStores = (): Stores => realServers ? 'servers' : 'embedded'

async function fuzzEnv (t: Tap, stores: Stores): Promise<Record<string, string>> {
  if (stores !== 'embedded' && !realServers) throw new Error(`stores ${stores} need TEST_DATABASE_URL and TEST_REDIS_URL (make test-servers-start)`)
  const env = await isolatedEnv(t, FUZZ_ENV, { embedded: stores === 'embedded' })
  if (stores === 'postgres') {
    delete env.REDIS_URL
    delete env.REDIS_KEY_PREFIX
  }
  return env
}

/**
 * The fuzzed gateway, in this thread: a real app on an ephemeral port with
 * every namespace open to one key, two real socket.io-client bystanders in a
 * room, and watchers that record uncaught exceptions, unhandled rejections
 * and error log lines as they happen. `check()` is what a batch is judged by.
 */
export class FuzzGateway {
  readonly roundTrips: RoundTrips = { count: 0, totalMs: 0, maxMs: 0 }
  private constructor (readonly app: FastifyInstance, readonly stores: Stores, readonly url: string, readonly credentials: Credentials, private readonly problems: Problem[], private readonly bystanders: Bystanders, private readonly roundTripMs: number) {}

  static async start (t: Tap, options: { stores?: Stores, roundTripMs?: number } = {}): Promise<FuzzGateway> {
    const problems: Problem[] = []
    watchProcess(t, problems)
    const logStream = { write: (line: string) => { recordErrorLine(line, problems) } }
    const stores = options.stores ?? defaultStores()
    const app = await buildFrom(t, await fuzzEnv(t, stores), logStream)
    const fuzzKey = await keyWithPolicy(app, EVERYTHING, { scopes: ['publish', 'token:delegate'] })
    const bystanderKey = await keyWithPolicy(app, EVERYTHING)
    const credentials: Credentials = {
      token: await tokenFor(app, fuzzKey.apiKey, 'fuzzer'),
      otherToken: await tokenFor(app, fuzzKey.apiKey, 'other'),
      apiKey: fuzzKey.apiKey,
      adminKey: ADMIN_KEY
    }
    const url = await listen(app)
    const bystanders = await Bystanders.start(t, app, url, bystanderKey.apiKey)
    return new FuzzGateway(app, stores, url, credentials, problems, bystanders, options.roundTripMs ?? 10_000)
  }

  get port (): number { return (this.app.server.address() as AddressInfo).port }

  /** After a batch: a bystander round trip each way, and whatever the watchers recorded since the last check. */
  async check (): Promise<Problem[]> {
    // Let an exception thrown on a later tick of the last input surface first.
    await new Promise((resolve) => setImmediate(resolve))
    const failed = await this.bystanders.roundTrip(this.roundTripMs, this.roundTrips)
    if (failed !== undefined) {
      this.problems.push({ kind: 'bystander', signature: `bystander: ${failed.replace(/\d+/g, 'N')}`, message: failed })
      await this.bystanders.replace()
    }
    return this.problems.splice(0)
  }

  close (): void { this.bystanders.close() }
}

function watchProcess (t: Tap, problems: Problem[]): void {
  const onCrash = (source: string) => (err: unknown): void => {
    problems.push({ kind: 'crash', signature: `${source}: ${errorSignature(err)}`, message: err instanceof Error ? (err.stack ?? err.message) : String(err) })
  }
  const onException = onCrash('uncaughtException')
  const onRejection = onCrash('unhandledRejection')
  process.on('uncaughtException', onException)
  process.on('unhandledRejection', onRejection)
  t.teardown(() => {
    process.off('uncaughtException', onException)
    process.off('unhandledRejection', onRejection)
  })
}

function recordErrorLine (line: string, problems: Problem[]): void {
  if (!line.includes('"level":50') && !line.includes('"level":60')) return
  let entry: { msg?: string, err?: { type?: string, message?: string } }
  try { entry = JSON.parse(line) } catch { entry = { msg: line.slice(0, 200) } }
  const err = entry.err === undefined ? '' : ` (${entry.err.type ?? 'Error'}: ${(entry.err.message ?? '').slice(0, 80)})`
  problems.push({ kind: 'error-log', signature: `error-log: ${entry.msg ?? '?'}${err.replace(/\d+/g, 'N')}`, message: line.slice(0, 2000) })
}

/** Two ordinary clients in room `bystanders` of `/chat`: each batch, each publishes and the other must receive. */
class Bystanders {
  private nonce = 0
  private constructor (private readonly t: Tap, private readonly url: string, private readonly tokens: [string, string], private clients: [ClientSocket, ClientSocket]) {}

  static async start (t: Tap, app: FastifyInstance, url: string, apiKey: string): Promise<Bystanders> {
    const tokens: [string, string] = [await tokenFor(app, apiKey, 'alice'), await tokenFor(app, apiKey, 'bob')]
    return new Bystanders(t, url, tokens, await Bystanders.join(t, url, tokens))
  }

  private static async join (t: Tap, url: string, tokens: [string, string]): Promise<[ClientSocket, ClientSocket]> {
    const clients = tokens.map((token) => connect(t, `${url}/chat`, { auth: { token } })) as [ClientSocket, ClientSocket]
    await Promise.all(clients.map(connected))
    for (const client of clients) {
      const ack = await client.timeout(10_000).emitWithAck('join', { room: 'bystanders' }) as { ok?: boolean }
      if (ack.ok !== true) throw new Error(`bystander could not join: ${JSON.stringify(ack)}`)
    }
    return clients
  }

  /** Both directions; undefined when both round trips worked, else what failed. */
  async roundTrip (deadlineMs: number, stats: { count: number, totalMs: number, maxMs: number }): Promise<string | undefined> {
    const [alice, bob] = this.clients
    for (const [from, to, name] of [[alice, bob, 'alice to bob'], [bob, alice, 'bob to alice']] as const) {
      if (!from.connected || !to.connected) return `${name}: a bystander was disconnected`
      const nonce = ++this.nonce
      const started = performance.now()
      let stop = (): void => {}
      const delivered = new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => { stop(); resolve(false) }, deadlineMs)
        const listener = (message: { data?: { nonce?: number } }): void => {
          if (message?.data?.nonce === nonce) { stop(); resolve(true) }
        }
        stop = () => { clearTimeout(timer); to.off('roundtrip', listener) }
        to.on('roundtrip', listener)
      })
      const ack = await from.timeout(deadlineMs).emitWithAck('roundtrip', { room: 'bystanders', data: { nonce } })
        .catch((err: Error) => ({ failed: err.message })) as { ok?: boolean }
      if (ack.ok !== true) { stop(); return `${name}: ack ${JSON.stringify(ack).slice(0, 200)}` }
      if (!(await delivered)) return `${name}: not delivered within ${deadlineMs} ms`
      const ms = performance.now() - started
      stats.count++
      stats.totalMs += ms
      stats.maxMs = Math.max(stats.maxMs, ms)
    }
    return undefined
  }

  /** New bystanders after a failure, so that the next batches are checked again. */
  async replace (): Promise<void> {
    this.close()
    this.clients = await Bystanders.join(this.t, this.url, this.tokens)
  }

  close (): void { for (const client of this.clients) client.close() }
}
