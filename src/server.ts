import closeWithGrace from 'close-with-grace'
import { build } from './app.js'
import { ConfigError, parseConfig, type Config } from './config.js'

let config: Config
try {
  config = parseConfig(process.env)
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  process.stderr.write(`${err.message}\n`)
  process.exit(1)
}

const app = build(config)
try {
  await app.listen({ host: config.host, port: config.port })
} catch (err) {
  app.log.fatal({ err }, 'could not start')
  process.exit(1)
}

if (config.adminApiKey === undefined) {
  const adminKey = await app.keys.bootstrapAdmin()
  // Printed once, on the terminal only: it is never logged, and never printed again.
  if (adminKey !== undefined) process.stdout.write(`\nBootstrap admin key (shown once, keep it safe):\n  ${adminKey}\n\n`)
}
const scheme = config.tls === undefined ? 'http' : 'https'
process.stdout.write(`Spark Gateway listening on ${scheme}://${config.host}:${(app.server.address() as { port: number }).port}\n`)

closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
  if (err !== undefined) app.log.error({ err }, 'closing after an error')
  else app.log.info({ signal }, 'closing')
  await app.close()
})
