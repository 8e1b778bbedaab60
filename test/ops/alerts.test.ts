import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { adminHeaders, buildApp, createKey, logCollector } from '../helper.js'
import { timed, waitUntil } from '../support/ops.js'

type Tap = Parameters<typeof buildApp>[0]

/* SPEC §2 ALERT_WEBHOOK_URL: alerts are also POSTed there, retried with backoff; §7: the close still fits in 10 s. */

/** A webhook receiver on an ephemeral port; `answer` decides each response (or never answers). */
async function webhook (t: Tap, answer: (n: number, res: ServerResponse) => void): Promise<{ url: string, bodies: unknown[] }> {
  const bodies: unknown[] = []
  const server = createServer((req: IncomingMessage, res) => {
    let text = ''
    req.setEncoding('utf8').on('data', (chunk: string) => { text += chunk }).on('end', () => {
      bodies.push(JSON.parse(text))
      answer(bodies.length, res)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, bodies }
}

t.test('an alert is POSTed to ALERT_WEBHOOK_URL, retried after a failure', async (t) => {
  const hook = await webhook(t, (n, res) => { res.statusCode = n === 1 ? 503 : 204; res.end() })
  const app = await buildApp(t, { ALERT_WEBHOOK_URL: hook.url })
  const { id } = await createKey(app)
  const revoked = await app.inject({ method: 'POST', url: `/v1/keys/${id}/revoke`, headers: adminHeaders })
  t.equal(revoked.statusCode, 200)
  const ms = await waitUntil(() => hook.bodies.length >= 2, 5000, 20)
  t.match(hook.bodies, [{ kind: 'key_revoked', keyId: id, at: String }, { kind: 'key_revoked', keyId: id, at: String }], `delivered on the second try (${ms} ms)`)
  t.same(hook.bodies[0], hook.bodies[1], 'the retry sends the same alert')
  await new Promise((resolve) => setTimeout(resolve, 1000))
  t.equal(hook.bodies.length, 2, 'no further retry once delivered')
})

t.test('an unanswering webhook does not hold the shutdown; the alert is logged as undelivered', async (t) => {
  const hook = await webhook(t, () => {})
  const logs = logCollector()
  const app = await buildApp(t, { ALERT_WEBHOOK_URL: hook.url, LOG_LEVEL: 'warn' }, { logStream: logs.stream })
  app.alerts.raise({ kind: 'ip_blocked', ip: '203.0.113.9', count: 21 })
  await waitUntil(() => hook.bodies.length === 1, 2000, 20)
  const closed = await timed(async () => { await app.close() })
  t.ok(closed.ms < 3000, `app.close() took ${closed.ms} ms with a delivery hanging`)
  const undelivered = logs.lines().map((line) => JSON.parse(line) as { level: number, msg: string, alert?: { kind: string, ip: string } })
    .filter((line) => line.level >= 50 && /alert webhook/.test(line.msg))
  t.match(undelivered, [{ msg: 'alert webhook not delivered before shutdown', alert: { kind: 'ip_blocked', ip: '203.0.113.9' } }], 'one error line keeps the alert')
})
