// The operator console (SPEC §13): signs in with an admin key and shows one page at a time (#keys, #policies,
// #routes, #attempts, #presence, #live).
import { $, refusal, STORAGE_KEY } from './api.js'
import { loadAttempts } from './attempts.js'
import { loadKeys, setUpKeys } from './keys.js'
import { loadPolicies, setUpPolicies } from './policies.js'
import { setUpPresence } from './presence.js'
import { loadRoutes, setUpRoutes } from './routes.js'
import { loadConnections, stopAlerts, watchAlerts } from './live.js'

const PAGES: Record<string, () => Promise<void>> = {
  keys: async () => { await loadKeys() },
  policies: loadPolicies,
  routes: loadRoutes,
  attempts: loadAttempts,
  presence: async () => {},
  live: async () => { await watchAlerts(); await loadConnections() }
}
let refreshTimer: ReturnType<typeof setInterval> | undefined

function signedIn (yes: boolean): void {
  $('signin').classList.toggle('hidden', yes)
  $('nav').classList.toggle('hidden', !yes)
  document.body.dataset.signedIn = String(yes)
  if (!yes) for (const name of Object.keys(PAGES)) $(name).classList.add('hidden')
}

async function show (name: string): Promise<void> {
  const page = name in PAGES ? name : 'keys'
  for (const other of Object.keys(PAGES)) $(other).classList.toggle('hidden', other !== page)
  clearInterval(refreshTimer)
  // A new page: the refusals of the last one are done with.
  $('refusals').replaceChildren()
  await PAGES[page]()
  // The attempts page is live: refreshed every few seconds while it is shown.
  if (page === 'attempts') refreshTimer = setInterval(() => { loadAttempts().catch((err: unknown) => { refusal(err) }) }, 5000)
  if (page === 'live') refreshTimer = setInterval(() => { loadConnections().catch((err: unknown) => { refusal(err) }) }, 5000)
}

async function start (): Promise<void> {
  if (sessionStorage.getItem(STORAGE_KEY) === null) return signedIn(false)
  try {
    await show(location.hash.slice(1))
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
  clearInterval(refreshTimer)
  stopAlerts()
  signedIn(false)
})
window.addEventListener('hashchange', () => {
  if (document.body.dataset.signedIn === 'true') show(location.hash.slice(1)).catch((err: unknown) => { refusal(err) })
})
setUpKeys()
setUpPolicies()
setUpRoutes()
setUpPresence()
void start()
