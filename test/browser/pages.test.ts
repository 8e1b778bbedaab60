import { mkdirSync } from 'node:fs'
import t from 'tap'
import { chromium, type Browser, type Page } from 'playwright-core'
import { ADMIN_KEY, buildApp, listen } from '../helper.js'
import { keyWithPolicy, revokeKey, ROOMY_LIMITS } from '../support/sockets.js'

// SPEC §13 in a real browser: Debian's Chromium (make test installs it), driven by playwright-core.
const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']
const WAIT_MS = 15_000
const RULES = [
  { effect: 'allow', namespace: '/chat', actions: ['connect', 'subscribe', 'publish'], events: ['message'], rooms: ['lobby', 'room:*'] },
  { effect: 'deny', namespace: '/chat', actions: ['publish'], rooms: ['room:readonly*'] }
]

mkdirSync(ARTIFACTS, { recursive: true })

/** A page that records every console error and uncaught exception it meets. */
async function openPage (t: Tap, browser: Browser): Promise<{ page: Page, errors: string[] }> {
  const context = await browser.newContext()
  const page = await context.newPage()
  const errors: string[] = []
  page.on('console', (message) => { if (message.type() === 'error') errors.push(message.text()) })
  page.on('pageerror', (err) => { errors.push(err.message) })
  t.teardown(async () => { await context.close() })
  return { page, errors }
}
type Tap = { teardown: (fn: () => unknown) => void }

async function joinDemo (page: Page, url: string, apiKey: string, name: string, room = 'lobby'): Promise<void> {
  await page.goto(`${url}/demo/`)
  await page.fill('#key', apiKey)
  await page.fill('#name', name)
  await page.fill('#room', room)
  await page.click('#join button[type=submit]')
  await page.waitForSelector('body[data-joined="true"]', { timeout: WAIT_MS })
}

t.test('the demo and the console in Chromium', async (t) => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_FLAGS })
  t.teardown(async () => { await browser.close() })
  const app = await buildApp(t, ROOMY_LIMITS)
  const url = await listen(app)
  const key = await keyWithPolicy(app, RULES)

  await t.test('pages come with a CSP that allows no inline script, and log no error', async (t) => {
    for (const path of ['/console/', '/demo/']) {
      const { page, errors } = await openPage(t, browser)
      const response = await page.goto(`${url}${path}`)
      const csp = response?.headers()['content-security-policy'] ?? ''
      t.match(csp, /script-src 'self'/, `${path}: scripts from the gateway only`)
      t.notMatch(csp, /unsafe-inline|unsafe-eval/, `${path}: no inline script`)
      // An inline script a page might be tricked into carrying does not run.
      const ran = await page.evaluate(`(() => {
        const script = document.createElement('script')
        script.textContent = 'window.__inline = true'
        document.body.append(script)
        return window.__inline === true
      })()`)
      t.equal(ran, false, `${path}: an inline script is refused by the policy`)
      t.same(errors.filter((e) => !e.includes('Content Security Policy')), [], `${path}: no console error`)
    }
  })

  await t.test('two demo pages chat, see each other, and a refused publish shows its code', async (t) => {
    const alice = await openPage(t, browser)
    const bob = await openPage(t, browser)
    await joinDemo(alice.page, url, key.apiKey, 'alice')
    await joinDemo(bob.page, url, key.apiKey, 'bob')
    await alice.page.fill('#text', 'hello from alice')
    await alice.page.click('#send button[type=submit]')
    await bob.page.waitForSelector('#log li:has-text("hello from alice")', { timeout: WAIT_MS })
    await alice.page.waitForSelector('#presence li:has-text("bob")', { timeout: WAIT_MS })
    t.match(await bob.page.textContent('#presence'), /alice/, 'bob sees alice here')
    await alice.page.screenshot({ path: `${ARTIFACTS}demo-alice.png`, fullPage: true })
    await bob.page.screenshot({ path: `${ARTIFACTS}demo-bob.png`, fullPage: true })
    t.pass('two tabs chatting: test-artifacts/demo-alice.png, demo-bob.png')

    const reader = await openPage(t, browser)
    await joinDemo(reader.page, url, key.apiKey, 'carol', 'room:readonly-news')
    await reader.page.fill('#text', 'may I?')
    await reader.page.click('#send button[type=submit]')
    await reader.page.waitForSelector('#refusals .code', { timeout: WAIT_MS })
    t.equal(await reader.page.textContent('#refusals .code'), 'FORBIDDEN', 'the refusal is shown with its code')
    await reader.page.screenshot({ path: `${ARTIFACTS}demo-refused.png`, fullPage: true })
    for (const { errors } of [alice, bob]) t.same(errors, [], 'no console error')
  })

  await t.test('a key revoked while its demo tab is connected: the tab is told', async (t) => {
    const doomed = await keyWithPolicy(app, RULES)
    const tab = await openPage(t, browser)
    await joinDemo(tab.page, url, doomed.apiKey, 'dave')
    await revokeKey(app, doomed.id)
    await tab.page.waitForSelector('#refusals .code:has-text("KEY_REVOKED")', { timeout: WAIT_MS })
    t.pass('the tab shows KEY_REVOKED')
    await tab.page.screenshot({ path: `${ARTIFACTS}demo-revoked.png`, fullPage: true })
  })

  await t.test('console: a bad key is refused with its code; an admin key signs in, creates a key and sees its secret once', async (t) => {
    const { page, errors } = await openPage(t, browser)
    await page.goto(`${url}/console/`)
    await page.fill('#admin-key', 'spk_not_a-real-key')
    await page.click('#signin-form button[type=submit]')
    await page.waitForSelector('#refusals .code', { timeout: WAIT_MS })
    t.equal(await page.textContent('#refusals .code'), 'UNAUTHORIZED')
    t.equal(await page.evaluate('sessionStorage.getItem("spark-admin-key")'), null, 'a refused key is not kept')

    await page.fill('#admin-key', ADMIN_KEY)
    await page.click('#signin-form button[type=submit]')
    await page.waitForSelector('body[data-signed-in="true"]', { timeout: WAIT_MS })
    await page.waitForSelector(`#key-rows tr[data-id="${key.id}"]`, { timeout: WAIT_MS })
    t.same(await page.context().cookies(), [], 'no cookie')
    t.notMatch(page.url(), new RegExp(ADMIN_KEY), 'not in the URL')
    t.equal(await page.evaluate('sessionStorage.getItem("spark-admin-key")'), ADMIN_KEY, 'in sessionStorage')

    await page.fill('#key-name', 'made in the console')
    await page.check('#scope-publish')
    await page.click('#create-key button[type=submit]')
    await page.waitForSelector('#key-secret:not(.hidden)', { timeout: WAIT_MS })
    const secret = await page.textContent('#key-secret-value') ?? ''
    t.match(secret, /^spk_[0-9a-f-]+_/, 'the full key is shown')
    await page.screenshot({ path: `${ARTIFACTS}console-keys.png`, fullPage: true })
    await page.reload()
    await page.waitForSelector('body[data-signed-in="true"]', { timeout: WAIT_MS })
    await page.waitForSelector('#key-rows tr:has-text("made in the console")', { timeout: WAIT_MS })
    t.notOk((await page.content()).includes(secret), 'after a reload the secret is gone')
    // Policies: a bad rule's refusal is shown beside the editor; a policy in use cannot be deleted.
    await page.goto(`${url}/console/#policies`)
    await page.waitForSelector(`#policy-rows tr[data-id="${key.policyId}"]`, { timeout: WAIT_MS })
    await page.fill('#policy-name', 'broken')
    await page.fill('#policy-rules', '[{ "effect": "maybe" }]')
    await page.click('#policy-save')
    await page.waitForSelector('#policy-errors .code', { timeout: WAIT_MS })
    t.equal(await page.textContent('#policy-errors .code'), 'VALIDATION_FAILED', 'the validation error is shown inline')
    await page.fill('#policy-rules', '[{ not json')
    await page.click('#policy-save')
    await page.waitForSelector('#policy-errors:has-text("not JSON")', { timeout: WAIT_MS })
    await page.click(`#policy-rows tr[data-id="${key.policyId}"] button.delete`)
    await page.waitForSelector('#refusals .code:has-text("CONFLICT")', { timeout: WAIT_MS })
    t.pass('a policy in use: CONFLICT shown')

    // Auth attempts: the refused sign-in above is among the refusals by reason.
    await page.goto(`${url}/console/#attempts`)
    await page.waitForSelector('#refusal-chart .bar:has-text("UNAUTHORIZED")', { timeout: WAIT_MS })
    t.match(await page.textContent('#attempt-rows'), /allowed/, 'the newest rows are listed')
    await page.screenshot({ path: `${ARTIFACTS}console-attempts.png`, fullPage: true })

    // Presence of a room, as the demo's users left it.
    await page.goto(`${url}/console/#presence`)
    await page.fill('#presence-room', 'lobby')
    await page.click('#presence-form button[type=submit]')
    await page.waitForSelector('#presence-count:has-text("subject")', { timeout: WAIT_MS })
    // The one the test asked for: Chromium logs the refused sign-in's 401 as a failed resource.
    t.same(errors.filter((e) => !/status of (400|401|409)/.test(e)), [], 'no console error but the refusals the test asked for (400, 401, 409)')
  })

  await t.test('console: a key edited (refusals beside the form), keys filtered by tenant, a route created, edited and deleted', async (t) => {
    const { page, errors } = await openPage(t, browser)
    const edited = await keyWithPolicy(app, RULES, { name: 'to edit' })
    const other = await keyWithPolicy(app, RULES, { name: 'of tenant app-b', tenant: 'app-b' })
    await page.goto(`${url}/console/`)
    await page.fill('#admin-key', ADMIN_KEY)
    await page.click('#signin-form button[type=submit]')
    await page.waitForSelector(`#key-rows tr[data-id="${edited.id}"]`, { timeout: WAIT_MS })

    await page.click(`#key-rows tr[data-id="${edited.id}"] button.edit`)
    await page.fill('#edit-ips', '10.0.0.0/8, not-an-address')
    await page.click('#edit-save')
    await page.waitForSelector('#edit-key-errors .code', { timeout: WAIT_MS })
    t.equal(await page.textContent('#edit-key-errors .code'), 'VALIDATION_FAILED', 'a bad CIDR: the refusal beside the form')
    await page.fill('#edit-rate-max', '5')
    await page.click('#edit-save')
    await page.waitForSelector('#edit-key-errors:has-text("both its maximum and its window")', { timeout: WAIT_MS })
    await page.fill('#edit-ips', '10.0.0.0/8 192.168.1.1/32')
    await page.fill('#edit-rate-window', '60')
    await page.fill('#edit-max-connections', '3')
    await page.check('#edit-scope-publish')
    await page.fill('#edit-expires', '2099-01-02T03:04')
    await page.screenshot({ path: `${ARTIFACTS}console-key-edit.png`, fullPage: true })
    await page.click('#edit-save')
    await page.waitForSelector('#key-editor.hidden', { state: 'attached', timeout: WAIT_MS })
    const stored = (await app.inject({ url: `/v1/keys/${edited.id}`, headers: { 'x-api-key': ADMIN_KEY } })).json()
    t.match(stored, { scopes: ['publish', 'token:delegate'], allowedIps: ['10.0.0.0/8', '192.168.1.1/32'], rateLimit: { max: 5, windowSeconds: 60 }, maxConnections: 3, policyId: edited.policyId }, 'saved with one PATCH')
    t.equal(new Date(stored.expiresAt).getFullYear(), 2099, 'the expiry is saved')

    await page.fill('#filter-tenant', 'app-b')
    await page.click('#key-filter button[type=submit]')
    await page.waitForSelector(`#key-rows tr[data-id="${edited.id}"]`, { state: 'detached', timeout: WAIT_MS })
    const shown = await page.$$eval('#key-rows tr', (rows) => rows.map((row) => row.getAttribute('data-id')))
    t.same(shown, [other.id], 'only the tenant\'s keys are listed')

    await page.goto(`${url}/console/#routes`)
    await page.waitForSelector('#routes-empty:not(.hidden)', { timeout: WAIT_MS })
    await page.fill('#route-definition', '{ "name": "orders", "namespace": "/chat", "events": ["order:*"], "upstream": { "type": "http", "url": "ftp://nowhere" } }')
    await page.click('#route-save')
    await page.waitForSelector('#route-errors .code', { timeout: WAIT_MS })
    t.equal(await page.textContent('#route-errors .code'), 'VALIDATION_FAILED', 'a bad route: the refusal beside the editor')
    await page.fill('#route-definition', '{ "name": "orders", "namespace": "/chat", "events": ["order:*"], "upstream": { "type": "http", "url": "http://127.0.0.1:9/events" } }')
    await page.click('#route-save')
    await page.waitForSelector('#route-secret:not(.hidden)', { timeout: WAIT_MS })
    t.match(await page.textContent('#route-secret-value'), /^whsec_/, 'the signing secret is shown once')
    await page.waitForSelector('#route-rows tr:has-text("orders")', { timeout: WAIT_MS })
    await page.click('#route-rows tr:has-text("orders") button.edit')
    t.match(await page.inputValue('#route-definition'), /"timeoutMs": 5000/, 'the editor holds the route with its defaults')
    t.notMatch(await page.inputValue('#route-definition'), /createdAt|whsec_/, 'and neither its times nor any secret')
    await page.fill('#route-definition', (await page.inputValue('#route-definition')).replace('"order:*"', '"order:*", "invoice:*"'))
    await page.click('#route-save')
    await page.waitForSelector('#route-rows tr:has-text("invoice:*")', { timeout: WAIT_MS })
    const routes = (await app.inject({ url: '/v1/routes', headers: { 'x-api-key': ADMIN_KEY } })).json()
    t.same(routes.items.map((r: { events: string[] }) => r.events), [['order:*', 'invoice:*']], 'the edit replaced the route')
    await page.screenshot({ path: `${ARTIFACTS}console-routes.png`, fullPage: true })
    page.once('dialog', (dialog) => { void dialog.accept() })
    await page.click('#route-rows tr:has-text("orders") button.delete')
    await page.waitForSelector('#route-rows tr', { state: 'detached', timeout: WAIT_MS })
    t.equal((await app.inject({ url: '/v1/routes', headers: { 'x-api-key': ADMIN_KEY } })).json().items.length, 0, 'deleted')
    t.same(errors.filter((e) => !/status of 400/.test(e)), [], 'no console error but the refusals the test asked for (400)')
  })

  await t.test('console: connections per namespace, and alerts as they happen', async (t) => {
    const operator = await keyWithPolicy(app, [{ effect: 'allow', namespace: '/system', actions: ['connect', 'subscribe'], rooms: ['admin'] }], { scopes: ['admin'] })
    const { page, errors } = await openPage(t, browser)
    await page.goto(`${url}/console/`)
    await page.fill('#admin-key', operator.apiKey)
    await page.click('#signin-form button[type=submit]')
    await page.waitForSelector('body[data-signed-in="true"]', { timeout: WAIT_MS })
    await page.goto(`${url}/console/#live`)
    await page.waitForSelector('#alerts-state:has-text("listening")', { timeout: WAIT_MS })
    t.match(await page.textContent('#connection-rows'), /\/system\s*[1-9]/, 'the console\'s own /system socket is counted')
    const doomed = await keyWithPolicy(app, RULES)
    await revokeKey(app, doomed.id)
    await page.waitForSelector('#alert-rows tr:has-text("key_revoked")', { timeout: WAIT_MS })
    t.match(await page.textContent('#alert-rows'), new RegExp(doomed.id), 'the alert names the key')
    await page.screenshot({ path: `${ARTIFACTS}console-live.png`, fullPage: true })
    t.same(errors, [], 'no console error')
  })
})
