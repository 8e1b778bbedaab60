import t from 'tap'
import { fuzz } from './harness.js'
import { describeInput, replayCommand } from './report.js'

// A bounded sample of `make fuzz` (issue 12): a few thousand hostile frames, handshakes, polling bodies and
// HTTP requests against a real gateway with real clients beside them. The inputs follow from the seed alone;
// every run starts with the inputs that stopped the process before (arbitraries.ts, MUST_SEND).
const seed = Number(process.env.FUZZ_SEED ?? 1_203_2026)
const inputs = Number(process.env.FUZZ_SAMPLE_INPUTS ?? 3000)

t.test('hostile inputs neither stop the gateway, nor stall its other clients, nor grow its heap', async (t) => {
  t.comment(`fuzz sample: seed ${seed}, ${inputs} inputs (FUZZ_SEED=${seed} FUZZ_RUNS=${inputs} FUZZ_BATCH=100 make fuzz sends the same)`)
  const result = await fuzz(t, { seed, inputs, maxBatch: 100, stopAtFirstFinding: true, memoryBoundBytes: 64 * 2 ** 20, memorySettleMs: 20_000 })
  t.comment(`${result.inputs} inputs in ${(result.durationMs / 1000).toFixed(1)} s; bystander round trips ${result.roundTrips.count}, max ${result.roundTrips.maxMs.toFixed(0)} ms`)
  for (const finding of result.findings) {
    t.comment(`${finding.kind}: ${finding.message.split('\n').slice(0, 6).join('\n')}`)
    if (finding.path !== undefined) t.comment(`replay: ${replayCommand(result, finding.path)}`)
    for (const input of finding.counterexample ?? []) t.comment(`  ${input.tag}: ${describeInput(input)}`)
  }
  t.same(result.findings.map((f) => f.signature), [], 'no crash, hang, 5xx, error line, echoing refusal, bystander failure or heap growth')
  t.ok(result.inputs >= inputs || result.findings.length > 0, `all ${inputs} inputs were sent`)
  t.ok(result.roundTrips.count >= 2 * result.batches, 'the bystanders made a round trip after every batch')
  const heap = result.memory
  const mb = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(0)} MB`
  t.ok(heap.lastBytes <= heap.baselineBytes + heap.boundBytes, heap.baselineBytes === 0
    ? 'no heap baseline: the run stopped before its second batch'
    : `heap after gc ${mb(heap.lastBytes)}, within ${mb(heap.boundBytes)} of the ${mb(heap.baselineBytes)} baseline`)
})
