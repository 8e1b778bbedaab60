import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import postgres from 'postgres'
import { io as connectClient, type Socket as ClientSocket, type ManagerOptions, type SocketOptions } from 'socket.io-client'
import type { DestinationStream } from 'pino'
import { build } from '../src/app.js'
import { parseConfig } from '../src/config.js'

type Tap = { teardown: (fn: () => unknown) => void }

/** The root credential every test app accepts. */
export const ADMIN_KEY = 'test-admin-key-0123456789abcdefghijklmnopqrstuvwxyz'

/** Real servers are started by `make test`; outside it, tests fall back to the embedded stores. */
export const realServers = process.env.TEST_DATABASE_URL !== undefined && process.env.TEST_REDIS_URL !== undefined

/**
 * The environment of an isolated gateway: its own PostgreSQL database and its
 * own Redis key prefix, so test files run in parallel without seeing each
 * other. Apps built from one environment share them (a cluster of instances).
 */
export async function isolatedEnv (t: Tap, overrides: Record<string, string> = {}, options: { embedded?: boolean } = {}): Promise<Record<string, string>> {
  const env: Record<string, string> = { ADMIN_API_KEY: ADMIN_KEY, LOG_LEVEL: 'silent', DATA_DIR: 'memory://', ...overrides }
  if (!realServers || options.embedded === true) return env
  const name = `t_${randomBytes(6).toString('hex')}`
  const admin = postgres(process.env.TEST_DATABASE_URL as string, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database ${name}`)
  t.teardown(async () => {
    await admin.unsafe(`drop database if exists ${name} with (force)`).catch(() => {})
    await admin.end()
  })
  const url = new URL(process.env.TEST_DATABASE_URL as string)
  url.pathname = `/${name}`
  // Instances built from one environment share this secret, as a cluster must.
  return { DATABASE_URL: url.toString(), REDIS_URL: process.env.TEST_REDIS_URL as string, REDIS_KEY_PREFIX: `${name}:`, JWT_SECRET: `secret-${name}-0123456789abcdefghijklmnop`, ...env }
}

/** Builds a ready gateway from an environment and closes it when the test ends. */
export async function buildFrom (t: Tap, env: Record<string, string>, logStream?: DestinationStream): Promise<FastifyInstance> {
  const app = build(parseConfig(env), { logStream })
  t.teardown(async () => { await app.close() })
  await app.ready()
  return app
}

/** A gateway on real PostgreSQL and Redis (or the embedded stores with `embedded`). */
export async function buildApp (t: Tap, overrides: Record<string, string> = {}, options: { embedded?: boolean, logStream?: DestinationStream } = {}): Promise<FastifyInstance> {
  return await buildFrom(t, await isolatedEnv(t, overrides, options), options.logStream)
}

export const adminHeaders = { 'x-api-key': ADMIN_KEY }

/** Creates a key through the API and returns its id and full secret. */
export async function createKey (app: FastifyInstance, body: Record<string, unknown> = {}): Promise<{ id: string, apiKey: string }> {
  const res = await app.inject({ method: 'POST', url: '/v1/keys', headers: adminHeaders, payload: { name: 'test key', ...body } })
  if (res.statusCode !== 201) throw new Error(`key creation failed: ${res.statusCode} ${res.body}`)
  const { id, apiKey } = res.json<{ id: string, apiKey: string }>()
  return { id, apiKey }
}

export async function createPolicy (app: FastifyInstance, rules: unknown[], name = `policy-${randomBytes(4).toString('hex')}`): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/v1/policies', headers: adminHeaders, payload: { name, rules } })
  if (res.statusCode !== 201) throw new Error(`policy creation failed: ${res.statusCode} ${res.body}`)
  return res.json<{ id: string }>().id
}

export async function mintToken (app: FastifyInstance, apiKey: string, body: Record<string, unknown> = {}, remoteAddress = '127.0.0.1'): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/auth/token', headers: { 'x-api-key': apiKey }, payload: body, remoteAddress })
  if (res.statusCode !== 200) throw new Error(`token failed: ${res.statusCode} ${res.body}`)
  return res.json<{ accessToken: string }>().accessToken
}

/** Listens on an ephemeral port and returns the base URL. */
export async function listen (app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}

/** A real socket.io-client connection, closed when the test ends. */
export function connect (t: Tap, url: string, options: Partial<ManagerOptions & SocketOptions> = {}): ClientSocket {
  const socket = connectClient(url, { transports: ['websocket'], reconnection: false, forceNew: true, ...options })
  t.teardown(() => { socket.close() })
  return socket
}

/** Resolves on `connect`, rejects with the connect_error. */
export async function connected (socket: ClientSocket): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('connect_error', (err) => reject(err))
  })
}

/** Collects log lines, parsed, for tests that check what is logged. */
export function logCollector (): { stream: DestinationStream, lines: () => string[] } {
  const chunks: string[] = []
  return { stream: { write: (line: string) => { chunks.push(line) } }, lines: () => chunks.join('').split('\n').filter((l) => l.length > 0) }
}

export const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
