// The admin API as the console calls it: the admin key from sessionStorage (never a cookie, never the URL),
// and every refusal shown with its §6 code and message, never a blank page.

export const STORAGE_KEY = 'spark-admin-key'

export const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T

export class RefusedError extends Error {
  constructor (readonly code: string, message: string) { super(message) }
}

export async function api<T> (method: string, path: string, body?: unknown): Promise<T> {
  const key = sessionStorage.getItem(STORAGE_KEY) ?? ''
  const res = await fetch(path, {
    method,
    headers: { 'x-api-key': key, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {})
  })
  const text = await res.text()
  const json = text.length > 0 ? JSON.parse(text) as unknown : undefined
  if (!res.ok) {
    const { code, message } = (json ?? {}) as { code?: string, message?: string }
    throw new RefusedError(code ?? `HTTP_${res.status}`, message ?? res.statusText)
  }
  return json as T
}

/** Shows a refusal at the top of the page (or in `where`), newest first. */
export function refusal (err: unknown, where: HTMLElement = $('refusals')): void {
  const box = document.createElement('div')
  box.className = 'refusal'
  const code = document.createElement('strong')
  code.className = 'code'
  code.textContent = err instanceof RefusedError ? err.code : 'ERROR'
  box.append(code, document.createTextNode(` ${err instanceof Error ? err.message : String(err)}`))
  where.prepend(box)
}

export function cell (text: string, mono = false): HTMLTableCellElement {
  const td = document.createElement('td')
  td.textContent = text
  if (mono) td.className = 'mono'
  return td
}

export function button (text: string, className: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement('button')
  b.type = 'button'
  b.textContent = text
  b.className = className
  b.addEventListener('click', onClick)
  return b
}

/** The text of a JSON editor, parsed; a parse error is shown in `errors` and gives undefined. */
export function parseJson (text: string, what: string, errors: HTMLElement): unknown {
  try {
    return JSON.parse(text)
  } catch (err) {
    refusal(new Error(`${what} is not JSON: ${(err as Error).message}`), errors)
    return undefined
  }
}

/**
 * A secret shown once, in box `#<id>` (its text in `#<id>-value`, a copy button `#<id>-copy`): it lives in
 * this page's DOM only, never stored, so a reload loses it.
 */
export function revealSecret (id: string, secret: string): void {
  $(`${id}-value`).textContent = secret
  $(id).classList.remove('hidden')
}

export function setUpSecretBox (id: string): void {
  $(`${id}-copy`).addEventListener('click', () => {
    void navigator.clipboard?.writeText($(`${id}-value`).textContent ?? '')
  })
}
