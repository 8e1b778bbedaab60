/**
 * Fan-out across three gateway instances on one Redis and PostgreSQL, beside
 * the same load on one instance, plus the Redis commands each relayed packet
 * costs (INFO commandstats before and after).
 *
 *   npx tsx bench/cluster/fanout.ts        (BENCH_QUICK=1 for a short run)
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { io, type Socket } from 'socket.io-client'
import { startInstance, stopInstance, type Instance } from '../../test/support/cluster.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const QUICK = process.env.BENCH_QUICK === '1'
const MEMBERS = QUICK ? 60 : 300
const MESSAGES = QUICK ? 300 : 2000
const IN_FLIGHT = 10
const ADMIN = 'bench-admin-key-0123456789abcdefghijklmnopqrstuvwxyz'

const stateDir = mkdtempSync(join(tmpdir(), 'spark-bench-cluster-'))
const serversEnv = { ...process.env, TEST_SERVERS_STATE: join(stateDir, 'servers.env') }
const servers = (command: string): void => { execFileSync('bash', [join(ROOT, 'scripts/test-servers.sh'), command], { env: serversEnv, stdio: ['ignore', 'ignore', 'inherit'] }) }

function percentile (sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
}

function redisCommandCounts (port: string): Map<string, number> {
  const out = execFileSync('redis-cli', ['-p', port, 'INFO', 'commandstats']).toString()
  const counts = new Map<string, number>()
  for (const match of out.matchAll(/^cmdstat_([a-z|_-]+):calls=(\d+)/gm)) counts.set(match[1], Number(match[2]))
  return counts
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the admin API's JSON, read field by field by the caller
async function api (node: Instance, path: string, body: unknown, headers: Record<string, string> = { 'x-api-key': ADMIN }): Promise<any> {
  const res = await fetch(node.url + path, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`)
  return await res.json()
}

async function connectAll (nodes: Instance[], apiKey: string, count: number): Promise<Socket[]> {
  const sockets: Socket[] = []
  for (let i = 0; i < count; i += 50) {
    sockets.push(...await Promise.all(Array.from({ length: Math.min(50, count - i) }, async (_, j) => {
      const node = nodes[(i + j) % nodes.length]
      const { accessToken } = await api(node, '/auth/token', { sub: `m${i + j}` }, { 'x-api-key': apiKey })
      const socket = io(`${node.url}/chat`, { auth: { token: accessToken }, transports: ['websocket'], reconnection: false, forceNew: true })
      await new Promise<void>((resolve, reject) => { socket.once('connect', () => resolve()); socket.once('connect_error', reject) })
      return socket
    })))
  }
  return sockets
}

interface Result { label: string, deliveriesPerSecond: number, p50: number, p99: number, redisPerPacket: number, redisPerPacketBesidesPublish: number }

async function run (label: string, nodes: Instance[], redisPort: string): Promise<Result> {
  const policy = await api(nodes[0], '/v1/policies', { name: `fanout-${label}-${Date.now()}`, rules: [{ effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'] }] })
  const { apiKey } = await api(nodes[0], '/v1/keys', { name: 'bench', scopes: ['token:delegate'], policyId: policy.id })
  const members = await connectAll(nodes, apiKey, MEMBERS)
  await Promise.all(members.map(async (m) => await m.emitWithAck('join', { room: 'fanout' })))
  const [publisher] = await connectAll([nodes[0]], apiKey, 1)
  const latencies: number[] = []
  let delivered = 0
  for (const m of members) m.on('tick', (msg: { data: number }) => { delivered++; latencies.push(Date.now() - msg.data) })

  const before = redisCommandCounts(redisPort)
  const started = Date.now()
  let sent = 0
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (sent < MESSAGES) {
      sent++
      await publisher.emitWithAck('tick', { room: 'fanout', data: Date.now() })
    }
  }))
  const expected = MESSAGES * MEMBERS
  while (delivered < expected && Date.now() - started < 60_000) await new Promise((resolve) => setTimeout(resolve, 20))
  const seconds = (Date.now() - started) / 1000
  const after = redisCommandCounts(redisPort)
  let total = 0
  let publishes = 0
  for (const [name, calls] of after) {
    const delta = calls - (before.get(name) ?? 0) - (name === 'info' ? 1 : 0)
    total += delta
    if (name === 'publish' || name === 'spublish') publishes += delta
  }
  for (const s of [...members, publisher]) s.close()
  latencies.sort((a, b) => a - b)
  if (delivered !== expected) console.error(`${label}: delivered ${delivered} of ${expected}`)
  return { label, deliveriesPerSecond: Math.round(delivered / seconds), p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), redisPerPacket: total / MESSAGES, redisPerPacketBesidesPublish: (total - publishes) / MESSAGES }
}

servers('start')
try {
  const state = Object.fromEntries(readFileSync(serversEnv.TEST_SERVERS_STATE, 'utf8').trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
  const env = {
    DATABASE_URL: state.TEST_DATABASE_URL, REDIS_URL: state.TEST_REDIS_URL, ADMIN_API_KEY: ADMIN, LOG_LEVEL: 'warn',
    JWT_SECRET: 'bench-secret-0123456789abcdefghijklmnopqrstuvwxyz',
    RATE_LIMIT_TOKEN: '1000000/minute', RATE_LIMIT_CONNECT: '1000000/minute', RATE_LIMIT_TRANSPORT: '1000000/minute', MAX_CONNECTIONS_PER_IP: '1000000', RATE_LIMIT_SOCKET: '1000000/second', ANOMALY_MAX_FAILURES: '1000000/minute'
  }
  const results: Result[] = []
  const nodes = await Promise.all([startInstance(env), startInstance(env), startInstance(env)])
  try {
    // Alternate: one instance, three, one, three.
    for (let trial = 0; trial < (QUICK ? 1 : 2); trial++) {
      results.push(await run('one instance', [nodes[0]], state.TEST_REDIS_PORT))
      results.push(await run('three instances', nodes, state.TEST_REDIS_PORT))
    }
  } finally {
    await Promise.all(nodes.map(async (n) => await stopInstance(n)))
  }
  console.log(`fan-out: ${MESSAGES} messages to a room of ${MEMBERS}, ${IN_FLIGHT} in flight, Redis adapter`)
  console.table(results)
} finally {
  servers('stop')
  rmSync(stateDir, { recursive: true, force: true })
}
