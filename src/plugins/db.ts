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

export default fp(async (app) => {
  const { databaseUrl, dataDir } = app.config
  let sql: Sql
  let close: () => Promise<void>
  if (databaseUrl !== undefined) {
    sql = postgres(databaseUrl, { max: 10, connect_timeout: 2, idle_timeout: 60, onnotice: () => {} })
    close = async () => { await sql.end({ timeout: 5 }) }
  } else {
    ({ sql, close } = await startEmbedded(dataDir))
  }
  try {
    const applied = await migrate(sql)
    if (applied.length > 0) app.log.info({ applied }, 'database migrated')
  } catch (err) {
    await close()
    throw err
  }
  app.decorate('sql', sql)
  app.addHook('onClose', close)
}, { name: 'db', dependencies: ['config'] })
