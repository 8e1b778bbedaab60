import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fp from 'fastify-plugin'
import postgres, { type Sql } from 'postgres'
import { PGlite } from '@electric-sql/pglite'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

declare module 'fastify' {
  interface FastifyInstance {
    /** postgres.js on DATABASE_URL, or on the embedded PGlite: the same SQL either way. */
    sql: Sql
  }
}

const MIGRATIONS_DIR = new URL('../../sql/', import.meta.url)
// Any constant works; it only has to be the same on every instance so concurrent starts migrate once.
const MIGRATION_LOCK = 7_270_001

/** Applies sql/NNN_name.sql files not yet recorded, in order, in one transaction. */
export async function migrate (sql: Sql): Promise<string[]> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d{3}_[\w-]+\.sql$/.test(f)).sort()
  const applied: string[] = []
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK})`
    await tx`create table if not exists schema_migrations (name text primary key, applied_at timestamptz not null default now())`
    const done = new Set((await tx<Array<{ name: string }>>`select name from schema_migrations`).map((r) => r.name))
    for (const file of files) {
      if (done.has(file)) continue
      await tx.unsafe(await readFile(new URL(file, MIGRATIONS_DIR), 'utf8'))
      await tx`insert into schema_migrations (name) values (${file})`
      applied.push(file)
    }
  })
  return applied
}

interface Embedded { sql: Sql, close: () => Promise<void> }

/** PGlite is one connection: serve it on a private unix socket and give postgres.js max 1. */
async function startEmbedded (dataDir: string): Promise<Embedded> {
  const inMemory = dataDir === 'memory://'
  if (!inMemory) await mkdir(dataDir, { recursive: true })
  const db = inMemory ? new PGlite() : new PGlite(join(dataDir, 'pgdata'))
  const socketDir = await mkdtemp(join(tmpdir(), 'spark-pglite-'))
  const path = join(socketDir, '.s.PGSQL.5432')
  const server = new PGLiteSocketServer({ db, path })
  await server.start()
  const sql = postgres({ path, max: 1, username: 'postgres', database: 'postgres', onnotice: () => {} })
  return {
    sql,
    async close () {
      await sql.end({ timeout: 2 })
      await server.stop()
      await db.close()
      await rm(socketDir, { recursive: true, force: true })
    }
  }
}

/** The close hook and a failed migration may both close: the second call waits for the first. */
function once (fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined
  return async () => { await (running ??= fn()) }
}

export default fp(async (app) => {
  const { databaseUrl, dataDir } = app.config
  let closed = false
  let close: (() => Promise<void>) | undefined
  // Hooked before the first await: when the start outlives the plugin timeout (a cold PGlite on a busy
  // machine) and the app is closed meanwhile, what the start opens is still closed, not left running.
  app.addHook('onClose', async () => {
    closed = true
    await close?.()
  })
  let sql: Sql
  if (databaseUrl !== undefined) {
    sql = postgres(databaseUrl, { max: 10, connect_timeout: 2, idle_timeout: 60, onnotice: () => {} })
    close = once(async () => { await sql.end({ timeout: 5 }) })
  } else {
    const embedded = await startEmbedded(dataDir)
    sql = embedded.sql
    close = once(embedded.close)
    if (closed) {
      await close()
      throw new Error('the app was closed while the embedded database started')
    }
  }
  try {
    const applied = await migrate(sql)
    if (applied.length > 0) app.log.info({ applied }, 'database migrated')
  } catch (err) {
    await close()
    throw err
  }
  app.decorate('sql', sql)
}, { name: 'db', fastify: '5.x', dependencies: ['config'] })
