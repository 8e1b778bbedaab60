import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { isolatedEnv, realServers } from '../helper.js'
import { startServer } from '../support/ops.js'

// SPEC §2: with no ADMIN_API_KEY and no admin key in the table, one is created and printed once; the dev
// JWT_SECRET is generated once into DATA_DIR, so tokens outlive a restart.
t.test('first start prints a bootstrap admin key once; the generated JWT secret survives a restart', { skip: !realServers && 'needs the real PostgreSQL' }, async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'spark-first-start-'))
  t.teardown(async () => { await rm(dataDir, { recursive: true, force: true }) })
  const { DATABASE_URL } = await isolatedEnv(t)
  // No REDIS_URL (one instance), no ADMIN_API_KEY, no JWT_SECRET: the defaults of a first `make dev`.
  const env = { DATABASE_URL, DATA_DIR: dataDir, LOG_LEVEL: 'warn' }

  const first = await startServer(t, env)
  const printed = /Bootstrap admin key[^\n]*\n\s*(spk_\S+)/.exec(first.stdout())
  t.ok(printed, 'the first start prints an admin key')
  const adminKey = printed?.[1] ?? ''
  const base = `http://127.0.0.1:${first.port}`
  const minted = await fetch(`${base}/auth/token`, { method: 'POST', headers: { 'x-api-key': adminKey } })
  t.equal(minted.status, 200, 'the printed key works')
  const { accessToken } = await minted.json() as { accessToken: string }
  first.child.kill('SIGTERM')
  t.equal((await first.exited).code, 0)

  const second = await startServer(t, env)
  t.notMatch(second.stdout(), /spk_/, 'a second start prints no key')
  const listed = await fetch(`http://127.0.0.1:${second.port}/v1/keys`, { headers: { authorization: `Bearer ${accessToken}` } })
  t.equal(listed.status, 200, 'a token from before the restart is still accepted: the secret was kept')
  second.child.kill('SIGTERM')
  await second.exited
})
