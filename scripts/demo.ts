// `make demo` (SPEC §13): the gateway on its embedded defaults (or what the environment says), with a demo
// policy and a demo key (token:delegate), and the URLs of the chat demo and the console. Ctrl-C stops it.
import { randomBytes } from 'node:crypto'
import { build } from '../src/app.js'
import { parseConfig } from '../src/config.js'

// An admin credential for this run only, unless one is configured: the console signs in with it.
const adminKey = process.env.ADMIN_API_KEY ?? `demo-admin-${randomBytes(24).toString('base64url')}`
const config = parseConfig({ LOG_LEVEL: 'warn', ...process.env, ADMIN_API_KEY: adminKey })
const app = build(config)
await app.listen({ host: config.host, port: config.port })
const headers = { 'x-api-key': adminKey }
const rules = [
  { effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], events: ['message'], rooms: ['lobby', 'room:*'] },
  { effect: 'deny', namespace: '/chat', actions: ['publish'], rooms: ['room:readonly*'] }
]
const policy = await app.inject({ method: 'POST', url: '/v1/policies', headers, payload: { name: `demo-chat-${randomBytes(3).toString('hex')}`, rules } })
const key = await app.inject({
  method: 'POST',
  url: '/v1/keys',
  headers,
  // A per-key limit, so the demo's burst button shows RATE_LIMITED.
  payload: { name: 'demo', scopes: ['token:delegate'], policyId: policy.json<{ id: string }>().id, rateLimit: { max: 5, windowSeconds: 5 } }
})
if (key.statusCode !== 201) throw new Error(`demo key: ${key.statusCode} ${key.body}`)
const base = `http://${config.host}:${(app.server.address() as { port: number }).port}`
process.stdout.write([
  '',
  `Chat demo:  ${base}/demo/   key (token:delegate): ${key.json<{ apiKey: string }>().apiKey}`,
  `Console:    ${base}/console/   admin key: ${adminKey}`,
  'Rooms lobby and room:* are open; room:readonly* is read-only; anything else is FORBIDDEN. Ctrl-C stops.',
  ''
].join('\n') + '\n')
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => { void app.close().then(() => process.exit(0)) })
