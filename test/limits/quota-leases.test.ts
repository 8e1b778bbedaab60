import { randomBytes } from 'node:crypto'
import t from 'tap'
import { QuotaLeases, defaultBatch } from '../../src/limits/quota-leases.js'
import { createMemoryStore } from '../../src/stores/memory-store.js'
import { createRedisStore } from '../../src/stores/redis-store.js'
import type { SharedStore } from '../../src/stores/shared-store.js'
import { realServers, sleep } from '../helper.js'
import { startPrivateServers, waitUntil } from '../support/ops.js'

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

t.test('with Redis away, the limit is counted on this instance alone, and Redis is asked again once back', { skip: !realServers && 'needs the real Redis' }, async (t) => {
  // A Redis of this test alone, so stopping it touches no other test.
  const servers = await startPrivateServers(t)
  const store = await createRedisStore(servers.redisUrl, 't_outage:')
  t.teardown(async () => { await store.close() })
  const leases = new QuotaLeases(store)
  t.equal(await takeAll(leases, 'k', 3, 300, 5), 3, 'counted in Redis while it is up')
  await servers.control('redis-stop')
  await sleep(350)
  t.equal(await takeAll(leases, 'k', 3, 300, 5), 3, 'Redis down: live traffic keeps its limit, counted locally')
  await servers.control('redis-start')
  await waitUntil(async () => await store.ping().then(() => true, () => false), 10_000)
  await sleep(350)
  t.equal(await takeAll(leases, 'k', 3, 300, 5), 3, 'back on Redis')
  t.equal((await store.lease('quota:k', 300, 3, 1)).granted, 0, 'which counted those')
})
