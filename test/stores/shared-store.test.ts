import { randomBytes } from 'node:crypto'
import t from 'tap'
import { createMemoryStore } from '../../src/stores/memory-store.js'
import { createRedisStore } from '../../src/stores/redis-store.js'
import type { SharedStore } from '../../src/stores/shared-store.js'
import { realServers, sleep } from '../helper.js'

type Factory = (prefix: string) => Promise<SharedStore>

const factories: Array<[string, Factory | undefined]> = [
  ['memory', async () => createMemoryStore()],
  ['redis', realServers ? async (prefix) => await createRedisStore(process.env.TEST_REDIS_URL as string, prefix) : undefined]
]

// One contract, both implementations: a limit counted in either must behave the same.
for (const [kind, factory] of factories) {
  t.test(`${kind} store`, { skip: factory === undefined && 'needs the real Redis' }, async (t) => {
    const prefix = `t_store_${randomBytes(4).toString('hex')}:`
    const open = async (): Promise<SharedStore> => {
      const store = await (factory as Factory)(prefix)
      t.teardown(async () => { await store.close() })
      return store
    }
    const store = await open()
    t.equal(store.kind, kind)

    t.test('hit counts in a fixed window that resets', async (t) => {
      const first = await store.hit('w', 300)
      t.equal(first.count, 1)
      t.ok(first.resetInMs > 0 && first.resetInMs <= 300, `resetInMs ${first.resetInMs}`)
      t.equal((await store.hit('w', 300)).count, 2)
      t.equal((await store.hit('w', 300, 5)).count, 7, 'by adds more than one')
      t.equal((await store.hit('other', 300)).count, 1, 'keys count apart')
      await sleep(350)
      t.equal((await store.hit('w', 300)).count, 1, 'a new window starts from 1')
    })

    t.test('lease never grants more than the window allows, whoever asks', async (t) => {
      const other = kind === 'redis' ? await open() : store
      t.same((await store.lease('q', 300, 5, 3)).granted, 3)
      t.same((await other.lease('q', 300, 5, 3)).granted, 2, 'only what is left')
      const spent = await store.lease('q', 300, 5, 1)
      t.equal(spent.granted, 0, 'spent for this window')
      t.ok(spent.resetInMs > 0 && spent.resetInMs <= 300, `resetInMs ${spent.resetInMs}`)
      await sleep(350)
      t.equal((await other.lease('q', 300, 5, 5)).granted, 5, 'a new window grants again')
    })

    t.test('slots hold to max across instances and are given back', async (t) => {
      const other = kind === 'redis' ? await open() : store
      t.equal(await store.acquireSlot('s', 2), true)
      t.equal(await other.acquireSlot('s', 2), true)
      t.equal(await store.acquireSlot('s', 2), false, 'the third is refused wherever it asks')
      await other.releaseSlot('s')
      t.equal(await store.acquireSlot('s', 2), true, 'a released slot is free again')
      if (kind === 'redis') {
        await other.close()
        t.equal(await store.acquireSlot('s', 2), false, 'still full: this instance holds both')
        await store.releaseSlot('s')
        t.equal(await store.acquireSlot('s', 2), true)
      }
    })

    t.test('flags expire and flagTtl reports the first one set', async (t) => {
      t.equal(await store.flagTtl('f1', 'f2'), 0, 'none set')
      await store.setFlag('f2', 300)
      const ttl = await store.flagTtl('f1', 'f2')
      t.ok(ttl > 0 && ttl <= 300, `ttl ${ttl}`)
      await sleep(350)
      t.equal(await store.flagTtl('f1', 'f2'), 0, 'expired')
    })

    t.test('publish reaches every subscriber of the channel, this instance included', async (t) => {
      const other = await open()
      const got: string[] = []
      await store.subscribe('ch', (m) => { got.push(`self:${m}`) })
      if (kind === 'redis') await other.subscribe('ch', (m) => { got.push(`other:${m}`) })
      await store.subscribe('elsewhere', (m) => { got.push(`wrong:${m}`) })
      await store.publish('ch', 'hello')
      // Polled with a deadline a loaded machine cannot miss (it ends once they arrived).
      const deadline = Date.now() + 10_000
      while (got.length < (kind === 'redis' ? 2 : 1) && Date.now() < deadline) await sleep(10)
      t.same(got.sort(), kind === 'redis' ? ['other:hello', 'self:hello'] : ['self:hello'])
    })

    t.test('ping answers', async (t) => {
      await t.resolves(store.ping())
    })
  })
}

t.test('redis stores with different prefixes share nothing', { skip: !realServers && 'needs the real Redis' }, async (t) => {
  const a = await createRedisStore(process.env.TEST_REDIS_URL as string, `t_a_${randomBytes(4).toString('hex')}:`)
  const b = await createRedisStore(process.env.TEST_REDIS_URL as string, `t_b_${randomBytes(4).toString('hex')}:`)
  t.teardown(async () => { await a.close(); await b.close() })
  await a.hit('k', 10_000)
  t.equal((await b.hit('k', 10_000)).count, 1)
  await a.setFlag('f', 10_000)
  t.equal(await b.flagTtl('f'), 0)
  const got: string[] = []
  await b.subscribe('ch', (m) => { got.push(m) })
  await a.publish('ch', 'x')
  await sleep(100)
  t.same(got, [], 'no message crosses prefixes')
})
