// The operator console (SPEC §13): the admin API from the browser, signed in with an admin key kept in
// sessionStorage only (never a cookie, never the URL). Every refusal is shown with its §6 code.

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T
const STORAGE_KEY = 'spark-admin-key'

interface ApiRefusal { code: string, message: string }
class RefusedError extends Error { constructor (readonly code: string, message: string) { super(message) } }
interface KeyView { id: string, name: string, tenant: string, scopes: string[], policyId: string | null, createdAt: string, revokedAt: string | null, expiresAt: string | null }

function refusal (err: unknown): void {
  const box = document.createElement('div')
  box.className = 'refusal'
  const code = document.createElement('strong')
  code.className = 'code'
  code.textContent = err instanceof RefusedError ? err.code : 'ERROR'
  box.append(code, document.createTextNode(` ${err instanceof Error ? err.message : String(err)}`))
  $('refusals').prepend(box)
}

async function api<T> (method: string, path: string, body?: unknown): Promise<T> {
  const key = sessionStorage.getItem(STORAGE_KEY) ?? ''
  const res = await fetch(path, {
    method,
    headers: { 'x-api-key': key, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {})
  })
  const text = await res.text()
  const json = text.length > 0 ? JSON.parse(text) as unknown : undefined
  if (!res.ok) {
    const { code, message } = (json ?? {}) as Partial<ApiRefusal>
    throw new RefusedError(code ?? `HTTP_${res.status}`, message ?? res.statusText)
  }
  return json as T
}

function cell (text: string, mono = false): HTMLTableCellElement {
  const td = document.createElement('td')
  td.textContent = text
  if (mono) td.className = 'mono'
  return td
}

let nextCursor: string | null = null

function keyRow (key: KeyView): HTMLTableRowElement {
  const row = document.createElement('tr')
  row.dataset.id = key.id
  const state = key.revokedAt !== null ? 'revoked' : key.expiresAt !== null && Date.parse(key.expiresAt) < Date.now() ? 'expired' : 'active'
  row.append(cell(key.name), cell(key.id, true), cell(key.tenant), cell(key.scopes.join(' ')), cell(key.policyId ?? '—', true), cell(new Date(key.createdAt).toLocaleString()), cell(state))
  const actions = document.createElement('td')
  if (state === 'active') {
    const revoke = document.createElement('button')
    revoke.type = 'button'
    revoke.textContent = 'Revoke'
    revoke.className = 'revoke'
    revoke.addEventListener('click', () => {
      if (!confirm(`Revoke ${key.name}? Its tokens stop and its sockets are disconnected on every instance.`)) return
      api<{ disconnected: number }>('POST', `/v1/keys/${key.id}/revoke`).then(({ disconnected }) => {
        actions.textContent = `revoked, ${disconnected} socket${disconnected === 1 ? '' : 's'} disconnected`
      }, refusal)
    })
    actions.append(revoke)
  }
  row.append(actions)
  return row
}

async function loadKeys (more = false): Promise<void> {
  const page = await api<{ items: KeyView[], nextCursor: string | null }>('GET', `/v1/keys?limit=20${more && nextCursor !== null ? `&cursor=${encodeURIComponent(nextCursor)}` : ''}`)
  if (!more) $('key-rows').replaceChildren()
  $('key-rows').append(...page.items.map(keyRow))
  nextCursor = page.nextCursor
  $('more-keys').classList.toggle('hidden', nextCursor === null)
}

function signedIn (yes: boolean): void {
  $('signin').classList.toggle('hidden', yes)
  $('keys').classList.toggle('hidden', !yes)
  $('nav').classList.toggle('hidden', !yes)
  document.body.dataset.signedIn = String(yes)
}

async function start (): Promise<void> {
  if (sessionStorage.getItem(STORAGE_KEY) === null) return signedIn(false)
  try {
    await loadKeys()
    // Signed in: the refusals of earlier attempts are done with.
    $('refusals').replaceChildren()
    signedIn(true)
  } catch (err) {
    sessionStorage.removeItem(STORAGE_KEY)
    signedIn(false)
    refusal(err)
  }
}

$('signin-form').addEventListener('submit', (event) => {
  event.preventDefault()
  sessionStorage.setItem(STORAGE_KEY, ($('admin-key') as HTMLInputElement).value)
  ;($('admin-key') as HTMLInputElement).value = ''
  void start()
})
$('signout').addEventListener('click', () => {
  sessionStorage.removeItem(STORAGE_KEY)
  signedIn(false)
})
$('more-keys').addEventListener('click', () => { loadKeys(true).catch(refusal) })
$('create-key').addEventListener('submit', (event) => {
  event.preventDefault()
  const scopes = [['scope-publish', 'publish'], ['scope-delegate', 'token:delegate'], ['scope-admin', 'admin']]
    .filter(([id]) => ($(id) as HTMLInputElement).checked).map(([, scope]) => scope)
  const tenant = ($('key-tenant') as HTMLInputElement).value.trim()
  const policyId = ($('key-policy') as HTMLInputElement).value.trim()
  const body = { name: ($('key-name') as HTMLInputElement).value, scopes, ...(tenant !== '' ? { tenant } : {}), ...(policyId !== '' ? { policyId } : {}) }
  api<KeyView & { apiKey: string }>('POST', '/v1/keys', body).then((created) => {
    // Shown once: it is in this page's DOM only, never stored; a reload loses it.
    $('secret-value').textContent = created.apiKey
    $('new-secret').classList.remove('hidden')
    $('key-rows').prepend(keyRow(created))
  }, refusal)
})
$('copy-secret').addEventListener('click', () => {
  void navigator.clipboard?.writeText($('secret-value').textContent ?? '')
})

void start()
