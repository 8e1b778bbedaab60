import t from 'tap'
import { generationStanding, parseRotationNotice, RotationCutoffs, type SupersededTest } from '../../src/keys/rotation.js'
import { eventually, WAIT_MS } from '../support/sockets.js'

// The rule and the timers behind SPEC §3's rotation, without a server: what each generation is worth, and when the cut runs.

const token = (keyId: string, keyGeneration?: number): Parameters<SupersededTest>[0] => ({ keyId, keyGeneration, via: 'token' })

t.test('a token\'s generation against the key: current, in grace, superseded, or ahead of a stale record', async (t) => {
  const now = Date.now()
  const inGrace = { secretGeneration: 3, previousExpiresAt: new Date(now + 1000) }
  t.same(generationStanding(inGrace, 3, now), { kind: 'current' })
  t.same(generationStanding(inGrace, 2, now), { kind: 'grace', until: now + 1000 })
  t.same(generationStanding(inGrace, 1, now), { kind: 'superseded' }, 'only the secret just replaced has a grace')
  t.same(generationStanding(inGrace, 4, now), { kind: 'ahead' })
  t.same(generationStanding(inGrace, 2, now + 1000), { kind: 'superseded' }, 'the grace ends at its instant')
  t.same(generationStanding({ secretGeneration: 1, previousExpiresAt: null }, 0, now), { kind: 'superseded' }, 'no grace: at once')
})

t.test('a rotation notice that is not one is ignored', async (t) => {
  t.same(parseRotationNotice('{"keyId":"k","generation":2,"graceUntil":null}'), { keyId: 'k', generation: 2, graceUntil: null })
  for (const bad of ['not json', '{"keyId":1,"generation":2,"graceUntil":null}', '{"keyId":"k","generation":1.5,"graceUntil":null}', '{"keyId":"k","generation":2,"graceUntil":"soon"}', '{"keyId":"k","generation":2}']) {
    t.equal(parseRotationNotice(bad), undefined, bad)
  }
})

t.test('a cut runs at once, and once more after a handshake in flight could have joined', async (t) => {
  const cuts: SupersededTest[] = []
  const cutoffs = new RotationCutoffs((test) => { cuts.push(test) })
  t.teardown(() => { cutoffs.close() })
  cutoffs.rotated({ keyId: 'k', generation: 1, graceUntil: null })
  t.equal(cuts.length, 1, 'at once when there is no grace')
  const [cut] = cuts
  t.ok(cut(token('k', 0)), 'an older token of the key')
  t.ok(cut(token('k')), 'a token without a generation is of the first')
  t.notOk(cut(token('k', 1)), 'a token of the new secret')
  t.notOk(cut(token('other', 0)), 'another key\'s token')
  t.notOk(cut({ keyId: 'k', keyGeneration: 0, via: 'key' }), 'only token principals hold sockets')
  // SETTLE_MS (2 s) later, and a loaded machine's delay on top: the deadline is generous (it ends once the pass ran).
  await eventually(() => cuts.length === 2, WAIT_MS, 'the second pass')
  t.ok(cuts[1](token('k', 0)), 'the second pass cuts the same tokens')
})

t.test('a grace cut waits for its end; a later rotation of the key replaces it', async (t) => {
  const cuts: SupersededTest[] = []
  const cutoffs = new RotationCutoffs((test) => { cuts.push(test) })
  t.teardown(() => { cutoffs.close() })
  const started = Date.now()
  cutoffs.rotated({ keyId: 'k', generation: 1, graceUntil: started + 300 })
  t.equal(cuts.length, 0, 'nothing before the grace ends')
  await eventually(() => cuts.length > 0, 5000, 'the cut at the grace\'s end')
  t.ok(Date.now() - started >= 300, 'not before')
  t.ok(cuts[0](token('k', 0)))

  cuts.length = 0
  cutoffs.rotated({ keyId: 'j', generation: 1, graceUntil: Date.now() + 60_000 })
  cutoffs.rotated({ keyId: 'j', generation: 2, graceUntil: Date.now() + 60_000 })
  t.equal(cuts.length, 1, 'the second rotation during the first\'s grace stops the first generation at once')
  t.ok(cuts[0](token('j', 0)))
  t.notOk(cuts[0](token('j', 1)), 'the previous generation keeps its grace')
  cutoffs.schedule('j', 1, Date.now())
  t.equal(cuts.length, 1, 'a stale notice for an older generation changes nothing')

  // Longer than one setTimeout can wait (30 days is the API's maximum): not fired early.
  cutoffs.rotated({ keyId: 'long', generation: 1, graceUntil: Date.now() + 30 * 86_400_000 })
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(cuts.length, 1, 'a 30-day grace does not end at once')
})
