import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import type { FastifyPluginAsync } from 'fastify'
import { gatewayError } from '../errors.js'

/** Where scripts/build-web.mjs writes the console, the demo and the SDK's browser bundle. */
export const PUBLIC_DIR = fileURLToPath(new URL('../../public/', import.meta.url))

/**
 * The pages' policy (SPEC §13): scripts, styles and connections from the
 * gateway itself only — no inline script, no CDN — and never framed.
 */
export const WEB_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

/**
 * `/console/` and `/demo/` (SPEC §13), and the SDK's browser bundle at
 * `/sdk/spark-sdk.js`: static files built ahead of time, served with their
 * own CSP (the API's forbids everything). Encapsulated: the policy applies to
 * these routes alone.
 */
const webRoutes: FastifyPluginAsync = async (app) => {
  if (!existsSync(`${PUBLIC_DIR}sizes.json`)) {
    app.log.warn('the console and demo are not built (run make build): /console and /demo answer 404')
    for (const page of ['/console', '/demo']) {
      app.get(`${page}/*`, async () => { throw gatewayError('NOT_FOUND', 'The console and demo are not built: run make build') })
    }
    return
  }
  app.addHook('onSend', async (_req, reply) => { void reply.header('content-security-policy', WEB_CSP) })
  await app.register(fastifyStatic, { root: PUBLIC_DIR, prefix: '/', wildcard: false, index: ['index.html'], redirect: true, cacheControl: true, maxAge: 60_000 })
}

export default webRoutes
