// The key editor: scopes, policy, IP allowlist, rate limit, connection cap and expiry, saved with one PATCH;
// the gateway's refusal shown beside the form.
import { $, api, refusal } from './api.js'

export interface KeyView {
  id: string
  name: string
  tenant: string
  scopes: string[]
  policyId: string | null
  allowedIps: string[]
  rateLimit: { max: number, windowSeconds: number } | null
  maxConnections: number | null
  createdAt: string
  revokedAt: string | null
  expiresAt: string | null
}

/** The scopes of the checkboxes `#<prefix>-publish`, `#<prefix>-delegate`, `#<prefix>-admin`. */
const SCOPES = [['publish', 'publish'], ['delegate', 'token:delegate'], ['admin', 'admin']] as const
export const checkedScopes = (prefix: string): string[] =>
  SCOPES.filter(([id]) => ($(`${prefix}-${id}`) as HTMLInputElement).checked).map(([, scope]) => scope)

const input = (id: string): HTMLInputElement => $(id)
let editing: KeyView | undefined

/** An instant as a `datetime-local` value, in the browser's time zone. */
function localInput (iso: string | null): string {
  if (iso === null) return ''
  const at = new Date(iso)
  return new Date(at.getTime() - at.getTimezoneOffset() * 60_000).toISOString().slice(0, 16)
}

/** A number field: blank is null (no limit). */
const numberOrNull = (id: string): number | null => input(id).value.trim() === '' ? null : Number(input(id).value)

export function editKey (key: KeyView): void {
  editing = key
  $('key-editor-title').textContent = `Edit ${key.name}`
  input('edit-name').value = key.name
  for (const [id, scope] of SCOPES) input(`edit-scope-${id}`).checked = key.scopes.includes(scope)
  input('edit-policy').value = key.policyId ?? ''
  input('edit-ips').value = key.allowedIps.join(', ')
  input('edit-rate-max').value = key.rateLimit === null ? '' : String(key.rateLimit.max)
  input('edit-rate-window').value = key.rateLimit === null ? '' : String(key.rateLimit.windowSeconds)
  input('edit-max-connections').value = key.maxConnections === null ? '' : String(key.maxConnections)
  input('edit-expires').value = localInput(key.expiresAt)
  $('edit-key-errors').replaceChildren()
  $('key-editor').classList.remove('hidden')
  input('edit-name').focus()
}

/** The form as a PATCH body; a form the API would read wrongly (half a rate limit) is refused here. */
function patchBody (): Record<string, unknown> | undefined {
  const max = numberOrNull('edit-rate-max')
  const windowSeconds = numberOrNull('edit-rate-window')
  if ((max === null) !== (windowSeconds === null)) {
    refusal(new Error('A rate limit needs both its maximum and its window (or neither, for the gateway default)'), $('edit-key-errors'))
    return undefined
  }
  const policyId = input('edit-policy').value.trim()
  const expires = input('edit-expires').value
  return {
    name: input('edit-name').value,
    scopes: checkedScopes('edit-scope'),
    policyId: policyId === '' ? null : policyId,
    allowedIps: input('edit-ips').value.split(/[\s,]+/).filter((ip) => ip !== ''),
    rateLimit: max === null || windowSeconds === null ? null : { max, windowSeconds },
    maxConnections: numberOrNull('edit-max-connections'),
    expiresAt: expires === '' ? null : new Date(expires).toISOString()
  }
}

export function setUpKeyEditor (saved: () => Promise<void>): void {
  const close = (): void => { editing = undefined; $('key-editor').classList.add('hidden') }
  $('edit-cancel').addEventListener('click', close)
  $('edit-key').addEventListener('submit', (event) => {
    event.preventDefault()
    $('edit-key-errors').replaceChildren()
    const body = patchBody()
    if (editing === undefined || body === undefined) return
    api('PATCH', `/v1/keys/${editing.id}`, body).then(async () => { close(); await saved() }, (err: unknown) => { refusal(err, $('edit-key-errors')) })
  })
}
