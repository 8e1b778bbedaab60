import type { Socket } from 'node:net'
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import { ConfigError, parseConfig, type Config } from './config.js'

// SPEC §7: exit 0 within 10 s of SIGTERM. In-flight requests get DRAIN_MS to finish; what is left
// is then cut so the audit flush and store close still fit before CLOSE_DEADLINE_MS (exit 1 past it).
const DRAIN_MS = 4_000
const CLOSE_DEADLINE_MS = 9_500
const IDLE_SWEEP_MS = 100

let config: Config
try {
  config = parseConfig(process.env)
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  process.stderr.write(`${err.message}\n`)
  process.exit(1)
}

// Loaded after the configuration is checked, so a bad variable is reported without loading the whole app.
const { build } = await import('./app.js')
let app: FastifyInstance
try {
  app = build(config)
} catch (err) {
  // e.g. TLS material that reads as PEM but that the TLS stack refuses: one line, not a stack trace.
  process.stderr.write(`could not start: ${(err as Error).message}\n`)
  process.exit(1)
}

// Every TCP connection, upgraded ones (WebSocket) included: closeAllConnections() only knows HTTP ones.
const connections = new Set<Socket>()
app.server.on('connection', (socket: Socket) => {
  connections.add(socket)
  socket.once('close', () => connections.delete(socket))
})
try {
  await app.listen({ host: config.host, port: config.port })
} catch (err) {
  app.log.fatal({ err }, 'could not start')
  // pino's asynchronous destination writes what it holds (this line included) on exit.
  process.exit(1)
}

if (config.adminApiKey === undefined) {
  const adminKey = await app.keys.bootstrapAdmin()
  // Printed once, on the terminal only: it is never logged, and never printed again.
  if (adminKey !== undefined) process.stdout.write(`\nBootstrap admin key (shown once, keep it safe):\n  ${adminKey}\n\n`)
}

/**
 * Closes the app without letting connections hold it open: Fastify closes the
 * keep-alive connections idle when the close starts, but one busy then stays
 * open after its response until its keep-alive timeout (72 s), a request that
 * never completes (a stalled body) forever, and so does a WebSocket nobody
 * closed. Idle ones are swept until the server has closed; after DRAIN_MS
 * whatever is still open is cut.
 */
async function closeDraining (): Promise<void> {
  const sweep = setInterval(() => { app.server.closeIdleConnections() }, IDLE_SWEEP_MS)
  const cut = setTimeout(() => {
    app.log.warn({ connections: connections.size }, 'connections still open after the drain period: cutting them')
    for (const socket of connections) socket.destroy()
  }, DRAIN_MS)
  try {
    await app.close()
  } finally {
    clearInterval(sweep)
    clearTimeout(cut)
  }
}

let closing = false

// A second signal during the close exits at once (code 1); so does passing CLOSE_DEADLINE_MS.
closeWithGrace({ delay: CLOSE_DEADLINE_MS, skip: ['unhandledRejection'] }, async ({ signal, err }) => {
  closing = true
  if (err !== undefined) app.log.error({ err }, 'closing after an error')
  else app.log.info({ signal }, 'closing')
  await closeDraining()
})

/*
 * Outside a close, an unhandled rejection is rethrown: close-with-grace takes it as an uncaught
 * exception (close, exit 1). During the close it is logged and the close goes on: a backing store
 * already gone that refuses a cleanup command must not cost the audit flush still to come.
 */
process.on('unhandledRejection', (reason) => {
  if (!closing) throw reason
  app.log.error({ err: reason }, 'a promise was rejected while closing; the close goes on')
})

// Announced only once a signal is handled: whoever waits for this line may stop the process right after it.
const scheme = config.tls === undefined ? 'http' : 'https'
process.stdout.write(`Spark Gateway listening on ${scheme}://${config.host}:${(app.server.address() as { port: number }).port}\n`)
