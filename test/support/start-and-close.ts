// Run as a child process by test/plugins/redis.test.ts: builds the gateway from this process's
// environment, expects the start to fail, closes it, and then must exit by itself (no handle left).
import { build } from '../../src/app.js'
import { parseConfig } from '../../src/config.js'

const app = build(parseConfig({ ...process.env, LOG_LEVEL: 'silent' }))
try {
  await app.ready()
  process.stdout.write('started\n')
} catch (err) {
  process.stdout.write(`failed: ${(err as Error).message}\n`)
}
await app.close()
process.stdout.write('closed\n')
