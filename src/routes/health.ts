import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from '@sinclair/typebox'
import { withDeadline } from '../deadline.js'

const CHECK_TIMEOUT_MS = 1000

const CheckStatus = Type.Union([Type.Literal('ok'), Type.Literal('fail')])
const ReadyBody = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('fail')]),
  checks: Type.Record(Type.String(), CheckStatus)
})

const healthRoutes: FastifyPluginAsync = async (app) => {
  app.get('/health/live', {
    schema: { tags: ['health'], response: { 200: Type.Object({ status: Type.Literal('ok') }) } }
  }, async () => ({ status: 'ok' as const }))

  app.get('/health/ready', {
    schema: { tags: ['health'], response: { 200: ReadyBody, 503: ReadyBody } }
  }, async (_req, reply) => {
    const probes: Record<string, () => Promise<unknown>> = {
      postgres: async () => await app.sql`select 1`,
      ...(app.store.kind === 'redis' ? { redis: async () => { await app.store.ping() } } : {})
    }
    const names = Object.keys(probes)
    const results = await Promise.allSettled(names.map(async (name) => await withDeadline(probes[name](), CHECK_TIMEOUT_MS, `${name} check`)))
    const checks = Object.fromEntries(names.map((name, i) => [name, results[i].status === 'fulfilled' ? 'ok' as const : 'fail' as const]))
    const healthy = Object.values(checks).every((s) => s === 'ok')
    return await reply.code(healthy ? 200 : 503).send({ status: healthy ? 'ok' : 'fail', checks })
  })
}

export default fp(healthRoutes, { name: 'health-routes', fastify: '5.x', dependencies: ['db', 'store'] })
