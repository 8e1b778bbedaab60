import fc from 'fast-check'
import t from 'tap'
import { fuzzBatch, MUST_SEND, type FuzzInput } from './arbitraries.js'
import { runCampaign, type BatchRunner, type GatewayLink } from './campaign.js'
import type { Problem } from './problems.js'

// The campaign's own logic, without a gateway: a stand-in that "crashes" on chosen inputs.

const same = (a: FuzzInput, b: FuzzInput): boolean => JSON.stringify(a) === JSON.stringify(b)

function standIn (crashesOn: (input: FuzzInput) => boolean): { runner: BatchRunner, link: GatewayLink, sent: FuzzInput[] } {
  const pending: Problem[] = []
  const sent: FuzzInput[] = []
  const runner: BatchRunner = {
    sessions: {},
    summary: () => ({}),
    runBatch: async (batch) => {
      sent.push(...batch)
      if (batch.some(crashesOn)) pending.push({ kind: 'crash', signature: 'crash: stand-in', message: 'RangeError: Maximum call stack size exceeded' })
      return []
    }
  }
  const link: GatewayLink = { check: async () => pending.splice(0), heap: async () => 0, roundTrips: async () => ({ count: 0, meanMs: 0, maxMs: 0 }) }
  return { runner, link, sent }
}

t.test('every run starts with the inputs that stopped the process before', async (t) => {
  const { runner, link, sent } = standIn(() => false)
  await runCampaign(runner, link, { seed: 1, inputs: 1, maxBatch: 10 })
  t.ok(MUST_SEND.every((input, i) => same(sent[i], input)), 'the first batch is MUST_SEND, whatever the seed')
  const first = MUST_SEND[0]
  const text = first.kind === 'socket' && 'text' in first.frames[0] ? first.frames[0].text : ''
  t.ok(text.startsWith('42/chat,') && text.includes(`"data":${'['.repeat(6000)}0${']'.repeat(6000)}}`), 'among them the 6,000-level relay of issue 12')
})

t.test('a crash is shrunk to the input that causes it, replays from its seed and path, and the campaign goes on', async (t) => {
  const deep = MUST_SEND[0]
  const { runner, link } = standIn((input) => same(input, deep))
  const result = await runCampaign(runner, link, { seed: 7, inputs: 300, maxBatch: 20 })
  t.equal(result.findings.length, 1)
  const [finding] = result.findings
  t.same(finding.counterexample, [deep], 'shrunk to the deep relay alone')
  t.equal(finding.path?.split(':')[0], '0', 'found in run 0 (the MUST_SEND batch)')
  t.ok(result.inputs >= 300, 'the campaign went on to its target after the finding')
})

t.test('a crash found among generated inputs is shrunk by fast-check and counted when it shows again', async (t) => {
  // Any REST input "crashes": common enough to be met again after the first finding.
  const { runner, link } = standIn((input) => input.kind === 'rest')
  const result = await runCampaign(runner, link, { seed: 3, inputs: 2000, maxBatch: 30 })
  t.equal(result.findings.length, 1, 'one signature, one finding')
  t.equal(result.findings[0].counterexample?.length, 1, 'shrunk to one input')
  t.equal(result.findings[0].counterexample?.[0].kind, 'rest')
  t.ok(result.findings[0].count > 1, 'later occurrences are counted, not shrunk again')
})

t.test('the inputs follow from the seed alone', async (t) => {
  const draw = (seed: number): string => JSON.stringify(fc.sample(fuzzBatch(40), { seed, numRuns: 5 }))
  t.equal(draw(11), draw(11))
  t.not(draw(11), draw(12))
})
