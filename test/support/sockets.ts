import type { FastifyInstance } from 'fastify'
import type { Socket as ClientSocket, ManagerOptions, SocketOptions } from 'socket.io-client'
import { adminHeaders, connect, connected, createKey, createPolicy, mintToken } from '../helper.js'

type Tap = { teardown: (fn: () => unknown) => void }
type ClientOptions = Partial<ManagerOptions & SocketOptions>

/** Limits loose enough that a test's own setup (minting tokens, connecting) never trips them. */
export const ROOMY_LIMITS = { RATE_LIMIT_TOKEN: '1000/minute', RATE_LIMIT_CONNECT: '1000/minute', RATE_LIMIT_TRANSPORT: '10000/minute', ANOMALY_MAX_FAILURES: '1000/minute' }

/** The connect_error of a refused handshake (`err.message` is the §6 code, `err.data` the details). */
export interface ConnectError extends Error { data?: { code: string, message: string, retryAfter?: number } }

/** A connected socket of `sub` (a delegated token of `apiKey`) on `namespace`. */
export async function connectAs (t: Tap, url: string, namespace: string, token: string, options: ClientOptions = {}): Promise<ClientSocket> {
  const socket = connect(t, `${url}${namespace}`, { auth: { token }, ...options })
  await connected(socket)
  return socket
}

/** Tries a handshake and returns its connect_error; fails when the handshake is accepted. */
export async function refusedHandshake (t: Tap, url: string, options: ClientOptions = {}): Promise<ConnectError> {
  const socket = connect(t, url, options)
  try {
    await connected(socket)
  } catch (err) {
    return err as ConnectError
  }
  socket.close()
  throw new Error(`handshake to ${url} was accepted`)
}

/** Whether a handshake is accepted: 'ALLOWED', or the code it was refused with. */
export async function handshakeOutcome (t: Tap, url: string, options: ClientOptions = {}): Promise<string> {
  const socket = connect(t, url, options)
  try {
    await connected(socket)
    return 'ALLOWED'
  } catch (err) {
    return (err as Error).message
  } finally {
    socket.close()
  }
}

/*
 * The waits below end as soon as what they wait for happens: a long default costs a passing test
 * nothing, and keeps a loaded machine (2 cores, 2 test files at once) from failing one. A check that
 * something did NOT happen is a different thing: it waits a fixed time (eventsWithin) on purpose.
 */
export const WAIT_MS = 10_000

/** The first `event` the socket receives, or a rejection after `timeoutMs`. */
export async function nextEvent<T = any> (socket: ClientSocket, event: string, timeoutMs = WAIT_MS): Promise<T> { // eslint-disable-line @typescript-eslint/no-explicit-any -- a test reads the payload's fields as sent
  return await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, listener)
      reject(new Error(`no ${event} within ${timeoutMs} ms`))
    }, timeoutMs)
    const listener = (payload: T): void => {
      clearTimeout(timer)
      resolve(payload)
    }
    socket.once(event, listener)
  })
}

/**
 * Records every `event` the socket receives from now on; `stop()` detaches
 * and returns what arrived. Used to prove that nothing was delivered.
 */
export function recordEvents<T = any> (socket: ClientSocket, event: string): { received: T[], stop: () => T[] } { // eslint-disable-line @typescript-eslint/no-explicit-any -- as nextEvent
  const received: T[] = []
  const listener = (payload: T): void => { received.push(payload) }
  socket.on(event, listener)
  return { received, stop: () => { socket.off(event, listener); return received } }
}

/** Every event the socket receives in the next `ms` (none expected, usually). */
export async function eventsWithin (socket: ClientSocket, ms = 200): Promise<Array<{ event: string, args: unknown[] }>> {
  const seen: Array<{ event: string, args: unknown[] }> = []
  const listener = (event: string, ...args: unknown[]): void => { seen.push({ event, args }) }
  socket.onAny(listener)
  await new Promise((resolve) => setTimeout(resolve, ms))
  socket.offAny(listener)
  return seen
}

/** Resolves when the socket is disconnected (with the reason), or rejects after `timeoutMs`. */
export async function disconnection (socket: ClientSocket, timeoutMs = WAIT_MS): Promise<string> {
  if (socket.disconnected && !socket.active) return 'already disconnected'
  return await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`still connected after ${timeoutMs} ms`)) }, timeoutMs)
    socket.once('disconnect', (reason) => {
      clearTimeout(timer)
      resolve(reason)
    })
  })
}

/** Polls `condition` every 20 ms until it holds; rejects after `timeoutMs`. */
export async function eventually (condition: () => boolean | Promise<boolean>, timeoutMs = WAIT_MS, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} did not hold within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** Live sockets of a namespace on this instance (server side). */
export const liveSockets = (app: FastifyInstance, namespace: string): number => app.io.of(namespace).sockets.size

export interface AuditRow { keyId: string | null, namespace: string | null, outcome: string, reason: string | null, ip: string }

/** The socket audit rows written so far, one per attempt (a summary row repeated `count` times), oldest first (the queue is flushed first). */
export async function socketAudit (app: FastifyInstance): Promise<AuditRow[]> {
  await app.audit.flush()
  return await app.sql<AuditRow[]>`
    select key_id as "keyId", namespace, outcome, reason, ip from auth_attempts cross join generate_series(1, count) where transport = 'socket' order by id`
}

/** A key whose policy is `rules`, with scope token:delegate so tests mint tokens for several subjects. */
export async function keyWithPolicy (app: FastifyInstance, rules: unknown[], key: Record<string, unknown> = {}): Promise<{ id: string, apiKey: string, policyId: string }> {
  const policyId = await createPolicy(app, rules)
  const created = await createKey(app, { policyId, scopes: ['token:delegate'], ...key })
  return { ...created, policyId }
}

/** A delegated token for `sub`. */
export async function tokenFor (app: FastifyInstance, apiKey: string, sub: string, body: Record<string, unknown> = {}): Promise<string> {
  return await mintToken(app, apiKey, { sub, ...body })
}

/** PUT /v1/policies/:id with new rules (the name is kept). */
export async function replacePolicy (app: FastifyInstance, policyId: string, rules: unknown[]): Promise<void> {
  const current = await app.inject({ url: `/v1/policies/${policyId}`, headers: adminHeaders })
  const res = await app.inject({ method: 'PUT', url: `/v1/policies/${policyId}`, headers: adminHeaders, payload: { name: current.json<{ name: string }>().name, rules } })
  if (res.statusCode !== 200) throw new Error(`policy update failed: ${res.statusCode} ${res.body}`)
}

/** POST /v1/keys/:id/revoke; returns the response body. */
export async function revokeKey (app: FastifyInstance, id: string): Promise<{ revokedAt: string, disconnected: number, incomplete?: boolean }> {
  const res = await app.inject({ method: 'POST', url: `/v1/keys/${id}/revoke`, headers: adminHeaders })
  if (res.statusCode !== 200) throw new Error(`revoke failed: ${res.statusCode} ${res.body}`)
  return res.json()
}

/** An emit's ack, or a rejection after WAIT_MS. */
export async function ack (socket: ClientSocket, event: string, ...args: unknown[]): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any -- an ack is { ok, ... } or { error }, read as sent
  return await socket.timeout(WAIT_MS).emitWithAck(event, ...args)
}

/**
 * Joins `room` in a namespace with presence and waits for the socket's own
 * `presence:join`: it is sent after the ack, so a test listening for silence
 * right after a join would otherwise hear it.
 */
export async function joinAnnounced (socket: ClientSocket, room: string): Promise<void> {
  const announced = nextEvent<{ room: string }>(socket, 'presence:join')
  const answer = await ack(socket, 'join', { room })
  if (answer.ok !== true) throw new Error(`join ${room} refused: ${JSON.stringify(answer)}`)
  await announced
}
