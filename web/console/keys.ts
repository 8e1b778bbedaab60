// Keys: list with paging, create (the secret shown once), revoke (with the sockets it disconnected).
import { $, api, button, cell, refusal } from './api.js'

interface KeyView { id: string, name: string, tenant: string, scopes: string[], policyId: string | null, createdAt: string, revokedAt: string | null, expiresAt: string | null }

let nextCursor: string | null = null

function keyRow (key: KeyView): HTMLTableRowElement {
  const row = document.createElement('tr')
  row.dataset.id = key.id
  const state = key.revokedAt !== null ? 'revoked' : key.expiresAt !== null && Date.parse(key.expiresAt) < Date.now() ? 'expired' : 'active'
  row.append(cell(key.name), cell(key.id, true), cell(key.tenant), cell(key.scopes.join(' ')), cell(key.policyId ?? '—', true), cell(new Date(key.createdAt).toLocaleString()), cell(state))
  const actions = document.createElement('td')
  if (state === 'active') {
    actions.append(button('Rotate', 'rotate', () => {
      const grace = prompt('Grace period in seconds (the old secret, and tokens minted from it, keep working this long):', '0')
      if (grace === null) return
      api<KeyView & { apiKey: string }>('POST', `/v1/keys/${key.id}/rotate`, { gracePeriodSeconds: Number(grace) }).then((rotated) => {
        $('secret-value').textContent = rotated.apiKey
        $('new-secret').classList.remove('hidden')
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
  const page = await api<{ items: KeyView[], nextCursor: string | null }>('GET', `/v1/keys?limit=20${more && nextCursor !== null ? `&cursor=${encodeURIComponent(nextCursor)}` : ''}`)
  if (!more) $('key-rows').replaceChildren()
  $('key-rows').append(...page.items.map(keyRow))
  nextCursor = page.nextCursor
  $('more-keys').classList.toggle('hidden', nextCursor === null)
}

export function setUpKeys (): void {
  $('more-keys').addEventListener('click', () => { loadKeys(true).catch((err: unknown) => { refusal(err) }) })
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
    }, (err: unknown) => { refusal(err) })
  })
  $('copy-secret').addEventListener('click', () => {
    void navigator.clipboard?.writeText($('secret-value').textContent ?? '')
  })
}
