// Keys: list with paging and a tenant filter, create (the secret shown once), edit, rotate, revoke (with the
// sockets it disconnected).
import { $, api, button, cell, refusal, revealSecret, setUpSecretBox } from './api.js'
import { checkedScopes, editKey, setUpKeyEditor, type KeyView } from './key-editor.js'

let nextCursor: string | null = null

const stateOf = (key: KeyView): string =>
  key.revokedAt !== null ? 'revoked' : key.expiresAt !== null && Date.parse(key.expiresAt) < Date.now() ? 'expired' : 'active'

function keyRow (key: KeyView): HTMLTableRowElement {
  const row = document.createElement('tr')
  row.dataset.id = key.id
  const state = stateOf(key)
  row.append(cell(key.name), cell(key.id, true), cell(key.tenant), cell(key.scopes.join(' ')), cell(key.policyId ?? '—', true), cell(new Date(key.createdAt).toLocaleString()), cell(state))
  const actions = document.createElement('td')
  if (state !== 'revoked') actions.append(button('Edit', 'edit', () => { editKey(key) }))
  if (state === 'active') {
    actions.append(button('Rotate', 'rotate', () => {
      const grace = prompt('Grace period in seconds (the old secret, and tokens minted from it, keep working this long):', '0')
      if (grace === null) return
      api<KeyView & { apiKey: string }>('POST', `/v1/keys/${key.id}/rotate`, { gracePeriodSeconds: Number(grace) }).then((rotated) => {
        revealSecret('key-secret', rotated.apiKey)
      }, (err: unknown) => { refusal(err) })
    }))
    actions.append(button('Revoke', 'revoke', () => {
      if (!confirm(`Revoke ${key.name}? Its tokens stop and its sockets are disconnected on every instance.`)) return
      api<{ disconnected: number }>('POST', `/v1/keys/${key.id}/revoke`).then(({ disconnected }) => {
        actions.textContent = `revoked, ${disconnected} socket${disconnected === 1 ? '' : 's'} disconnected`
      }, refusal)
    }))
  }
  row.append(actions)
  return row
}

export async function loadKeys (more = false): Promise<void> {
  const tenant = ($('filter-tenant') as HTMLInputElement).value.trim()
  const query = new URLSearchParams({ limit: '20' })
  if (tenant !== '') query.set('tenant', tenant)
  if (more && nextCursor !== null) query.set('cursor', nextCursor)
  const page = await api<{ items: KeyView[], nextCursor: string | null }>('GET', `/v1/keys?${query.toString()}`)
  if (!more) $('key-rows').replaceChildren()
  $('key-rows').append(...page.items.map(keyRow))
  nextCursor = page.nextCursor
  $('more-keys').classList.toggle('hidden', nextCursor === null)
}

export function setUpKeys (): void {
  $('more-keys').addEventListener('click', () => { loadKeys(true).catch((err: unknown) => { refusal(err) }) })
  $('key-filter').addEventListener('submit', (event) => {
    event.preventDefault()
    loadKeys().catch((err: unknown) => { refusal(err) })
  })
  $('create-key').addEventListener('submit', (event) => {
    event.preventDefault()
    const tenant = ($('key-tenant') as HTMLInputElement).value.trim()
    const policyId = ($('key-policy') as HTMLInputElement).value.trim()
    const body = { name: ($('key-name') as HTMLInputElement).value, scopes: checkedScopes('scope'), ...(tenant !== '' ? { tenant } : {}), ...(policyId !== '' ? { policyId } : {}) }
    api<KeyView & { apiKey: string }>('POST', '/v1/keys', body).then((created) => {
      revealSecret('key-secret', created.apiKey)
      $('key-rows').prepend(keyRow(created))
    }, (err: unknown) => { refusal(err) })
  })
  setUpSecretBox('key-secret')
  setUpKeyEditor(async () => { await loadKeys() })
}
