import { randomBytes } from 'node:crypto'
import t from 'tap'
import { QuotaLeases, defaultBatch } from '../../src/limits/quota-leases.js'
import { createMemoryStore } from '../../src/stores/memory-store.js'
import { createRedisStore } from '../../src/stores/redis-store.js'
import type { SharedStore } from '../../src/stores/shared-store.js'
import { realServers } from '../helper.js'

/** Counts lease round trips while passing everything to the real store. */
function countingLeases (store: SharedStore): { store: SharedStore, calls: () => number } {
  let calls = 0
  return { store: { ...store, lease: async (...args) => { calls++; return await store.lease(...args) } }, calls: () => calls }
}

async function takeAll (leases: QuotaLeases, key: string, max: number, windowMs: number, count: number): Promise<number> {
  let accepted = 0
  for (let i = 0; i < count; i++) if (await leases.take(key, { max, windowMs })) accepted++
  return accepted
}

t.test('batch sizes: exact for small limits, a twentieth (at most 100) for large ones', async (t) => {
  t.equal(defaultBatch(3), 1)
  t.equal(defaultBatch(20), 1)
  t.equal(defaultBatch(1000), 50)
  t.equal(defaultBatch(1_000_000), 100)
})

t.test('one instance spends exactly the limit, asking the store once per batch', async (t) => {
  const counted = countingLeases(createMemoryStore())
  const leases = new QuotaLeases(counted.store)
  t.equal(await takeAll(leases, 'k', 1000, 60_000, 1200), 1000)
  t.ok(counted.calls() <= 1000 / 50 + 2, `${counted.calls()} store calls for 1,200 takes`)
  const sync = leases.take('k', { max: 1000, windowMs: 60_000 })
  t.equal(sync, false, 'a spent window is refused without asking the store again')
})

t.test('instances sharing one Redis never exceed the limit together', { skip: !realServers && 'needs the real Redis' }, async (t) => {
  const prefix = `t_quota_${randomBytes(4).toString('hex')}:`
  const stores = await Promise.all([0, 1, 2].map(async () => await createRedisStore(process.env.TEST_REDIS_URL as string, prefix)))
  t.teardown(async () => { await Promise.all(stores.map(async (s) => await s.close())) })
  const instances = stores.map((s) => new QuotaLeases(s))
  // Concurrent takes on all three, well past the limit.
  const results = await Promise.all(Array.from({ length: 600 }, async (_, i) => await instances[i % 3].take('shared', { max: 400, windowMs: 60_000 })))
  const accepted = results.filter((ok) => ok).length
  t.ok(accepted <= 400, `accepted ${accepted} of a limit of 400`)
  // What one instance leased and did not spend is still spendable there: draining all three reaches the limit exactly.
  let drained = accepted
  for (const leases of instances) drained += await takeAll(leases, 'shared', 400, 60_000, 50)
  t.equal(drained, 400)
})

t.test('with the store away, the limit is counted on this instance alone, and the store is asked again next window', async (t) => {
  const store = createMemoryStore()
  let away = true
  const flaky: SharedStore = { ...store, lease: async (...args) => { if (away) throw new Error('store down'); return await store.lease(...args) } }
  const leases = new QuotaLeases(flaky)
  t.equal(await takeAll(leases, 'k', 3, 200, 5), 3, 'live traffic keeps its limit, counted locally')
  away = false
  await new Promise((resolve) => setTimeout(resolve, 250))
  t.equal(await takeAll(leases, 'k', 3, 200, 5), 3, 'back on the shared store')
  t.equal((await store.lease('quota:k', 200, 3, 1)).granted, 0, 'and the store counted those')
})
