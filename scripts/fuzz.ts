// make fuzz: a long fuzzing campaign against an in-process gateway (issue 12).
//   FUZZ_RUNS   inputs to send (default 1000000)
//   FUZZ_SEED   fast-check seed (default random; printed first, so that a failure replays)
//   FUZZ_PATH   replay one failing batch of FUZZ_SEED, as printed with a finding
//   FUZZ_BATCH  inputs per batch, at most (default 200): the gateway is checked after each
//   FUZZ_OUT    where results go (default fuzz-results/: latest.md and latest.json)
//   FUZZ_STORES embedded (default: PGlite in memory, no Redis, as `make dev`), postgres (TEST_DATABASE_URL,
//               in-process limits and adapter) or servers (TEST_DATABASE_URL and TEST_REDIS_URL, as `make test`);
//               the last two need `make test-servers-start` and `. ./.test-servers.env` first
import { randomInt } from 'node:crypto'
import type { Stores } from '../test/fuzz/gateway.js'
import { fuzz } from '../test/fuzz/harness.js'
import { replayCommand, writeResults } from '../test/fuzz/report.js'

const env = process.env
const inputs = Number(env.FUZZ_RUNS ?? 1_000_000)
const seed = env.FUZZ_SEED !== undefined && env.FUZZ_SEED !== '' ? Number(env.FUZZ_SEED) : randomInt(2 ** 31)
const path = env.FUZZ_PATH !== undefined && env.FUZZ_PATH !== '' ? env.FUZZ_PATH : undefined
const maxBatch = Number(env.FUZZ_BATCH ?? 200)
const out = env.FUZZ_OUT ?? 'fuzz-results'
const stores = (env.FUZZ_STORES ?? 'embedded') as Stores
if (!Number.isSafeInteger(inputs) || inputs < 1 || !Number.isSafeInteger(seed) || !Number.isSafeInteger(maxBatch) || maxBatch < 1 || !['embedded', 'postgres', 'servers'].includes(stores)) {
  console.error('FUZZ_RUNS and FUZZ_BATCH must be positive integers, FUZZ_SEED an integer, FUZZ_STORES one of embedded, postgres, servers')
  process.exit(2)
}
console.log(`fuzz: seed ${seed}${path === undefined ? `, ${inputs} inputs` : `, replaying path ${path}`}, batches of up to ${maxBatch}, gateway on stores: ${stores}`)
if (path === undefined) console.log(`fuzz: the same run again: FUZZ_SEED=${seed} FUZZ_RUNS=${inputs} FUZZ_BATCH=${maxBatch}${stores === 'embedded' ? '' : ` FUZZ_STORES=${stores}`} make fuzz`)

const teardowns: Array<() => unknown> = []
const t = { teardown: (fn: () => unknown) => { teardowns.push(fn) } }
let stopping = false
const stop = async (code: number): Promise<never> => {
  if (!stopping) {
    stopping = true
    for (const fn of teardowns.reverse()) await Promise.resolve(fn()).catch(() => {})
  }
  process.exit(code)
}
process.once('SIGINT', () => { void stop(130) })

let last = { at: Date.now(), inputs: 0 }
const result = await fuzz(t, {
  stores,
  seed,
  inputs,
  maxBatch,
  path,
  memoryBoundBytes: 64 * 2 ** 20,
  // The baseline after 150 s of traffic: two minutes of recovery buffers are full by then, and the adapter has swept once.
  warmUpMs: 150_000,
  // Connection-state recovery keeps a disconnected session's packets for 2 minutes: a heap over the bound gets that long to come back.
  memorySettleMs: 150_000,
  memoryEveryMs: 30_000,
  progressEveryMs: 5000,
  onProgress: (p) => {
    const now = Date.now()
    const rate = ((p.inputs - last.inputs) / Math.max(1, now - last.at)) * 1000
    last = { at: now, inputs: p.inputs }
    const eta = p.inputs === 0 ? 0 : ((p.target - p.inputs) * p.elapsedMs) / p.inputs / 60_000
    console.log(`fuzz: ${p.inputs}/${p.target} inputs, ${Math.round(rate)}/s now, ${Math.round((p.inputs / p.elapsedMs) * 1000)}/s overall, ${p.findings} finding(s), heap ${(p.heapBytes / 2 ** 20).toFixed(0)} MB, ~${eta.toFixed(1)} min left`)
  }
}).catch(async (err: unknown) => {
  console.error(err)
  return await stop(1)
})

await writeResults(out, result, `Fuzzing campaign, seed ${result.seed}`)
const seconds = result.durationMs / 1000
console.log(`fuzz: ${result.inputs} inputs in ${seconds.toFixed(0)} s (${Math.round(result.inputs / seconds)} inputs/s), ${result.findings.length} finding(s); seed ${result.seed}`)
for (const finding of result.findings) {
  console.log(`fuzz: ${finding.kind}: ${finding.signature} (seen ${finding.count} time(s))${finding.path === undefined ? '' : `; replay: ${replayCommand(result, finding.path)}`}`)
}
console.log(`fuzz: results in ${out}/latest.md and ${out}/latest.json`)
await stop(result.findings.length === 0 ? 0 : 1)
