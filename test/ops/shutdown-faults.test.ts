import { Agent } from 'node:http'
import t from 'tap'
import postgres from 'postgres'
import { ADMIN_KEY } from '../helper.js'
import { TEST_JWT_SECRET } from '../support/jwt.js'
import { httpJson, startPrivateServers, startServer, waitUntil, type GatewayProcess } from '../support/ops.js'

/*
 * SPEC §7 SIGTERM while a backing service is down, on servers of this file
 * alone: the process still exits 0 within 10 s, and no audit row is lost
 * (written to PostgreSQL when it is up, to the log when it is not).
 */

const ATTEMPTS = 5

const servers = await startPrivateServers(t)
const admin = { 'x-api-key': ADMIN_KEY }
const agent = new Agent({ keepAlive: false })
const sql = postgres(servers.databaseUrl, { max: 1, onnotice: () => {} })
t.teardown(async () => { await sql.end({ timeout: 1 }) })

async function gateway (prefix: string): Promise<GatewayProcess> {
  return await startServer(t, {
    DATABASE_URL: servers.databaseUrl,
    REDIS_URL: servers.redisUrl,
    REDIS_KEY_PREFIX: `${prefix}:`,
    ADMIN_API_KEY: ADMIN_KEY,
    JWT_SECRET: TEST_JWT_SECRET,
    DATA_DIR: 'memory://',
    PORT: '0',
    LOG_LEVEL: 'warn'
  })
}

/** Admin calls with a user agent of their own, so their audit rows can be counted. */
async function adminCalls (proc: GatewayProcess, userAgent: string): Promise<number[]> {
  const statuses: number[] = []
  for (let i = 0; i < ATTEMPTS; i++) statuses.push((await httpJson(agent, proc.port, 'GET', '/v1/keys', { ...admin, 'user-agent': userAgent })).status)
  return statuses
}

async function sigterm (proc: GatewayProcess): Promise<{ code: number | null, signal: string | null, ms: number }> {
  const at = Date.now()
  proc.child.kill('SIGTERM')
  const timer = setTimeout(() => { proc.child.kill('SIGKILL') }, 12_000)
  const exit = await proc.exited
  clearTimeout(timer)
  return { code: exit.code, signal: exit.signal, ms: exit.at - at }
}

const rowsOf = async (userAgent: string): Promise<number> => (await sql<Array<{ n: number }>>`select count(*)::int as n from auth_attempts where user_agent = ${userAgent}`)[0].n

t.test('SIGTERM while Redis is down: exit 0 in time, every audit row in PostgreSQL', async (t) => {
  const proc = await gateway('redis-down')
  t.same(await adminCalls(proc, 'before-redis-stop'), Array(ATTEMPTS).fill(200), 'admin calls while all is up')
  await servers.control('redis-stop')
  t.same(await adminCalls(proc, 'while-redis-down'), Array(ATTEMPTS).fill(503), 'refused UNAVAILABLE while Redis is down (each one an audited attempt)')
  const exit = await sigterm(proc)
  await servers.control('redis-start')
  t.same({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, `exit 0 (stderr: ${proc.stderr().slice(0, 300)})`)
  t.ok(exit.ms < 10_000, `exited ${exit.ms} ms after SIGTERM`)
  t.equal(await rowsOf('before-redis-stop'), ATTEMPTS, 'rows from before the outage')
  t.equal(await rowsOf('while-redis-down'), ATTEMPTS, 'rows queued when SIGTERM came, flushed by the close')
  t.notMatch(proc.stdout(), /auditRow/, 'none went to the log instead')
  t.comment(`figures: SIGTERM with Redis down → exit ${exit.code} after ${exit.ms} ms`)
})

t.test('SIGTERM while PostgreSQL is down: exit 0 in time, queued audit rows kept in the log', async (t) => {
  const proc = await gateway('pg-down')
  t.same(await adminCalls(proc, 'before-pg-stop'), Array(ATTEMPTS).fill(200), 'admin calls while all is up')
  // Their rows are written (every 250 ms, later on a loaded machine) before PostgreSQL goes: polled, not slept on.
  await waitUntil(async () => await rowsOf('before-pg-stop') === ATTEMPTS, 10_000).catch(() => {})
  await servers.control('pg-stop')
  // The root credential needs no database: the attempt is allowed and audited, the route itself fails.
  t.same(await adminCalls(proc, 'while-pg-down'), Array(ATTEMPTS).fill(503), 'the listing is UNAVAILABLE while PostgreSQL is down')
  const exit = await sigterm(proc)
  await servers.control('pg-start')
  t.same({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, `exit 0 (stderr: ${proc.stderr().slice(0, 300)})`)
  t.ok(exit.ms < 10_000, `exited ${exit.ms} ms after SIGTERM`)
  t.equal(await rowsOf('before-pg-stop'), ATTEMPTS, 'rows from before the outage are in PostgreSQL')
  const logged = proc.stdout().split('\n').filter((line) => line.includes('"auditRow"')).map((line) => JSON.parse(line) as { auditRow: { user_agent: string } })
  t.equal(logged.filter((line) => line.auditRow.user_agent === 'while-pg-down').length, ATTEMPTS, 'each row of the outage is written to the log, whole')
  t.equal(await rowsOf('while-pg-down'), 0, 'and not also to PostgreSQL (no duplicate)')
  t.comment(`figures: SIGTERM with PostgreSQL down → exit ${exit.code} after ${exit.ms} ms`)
})
