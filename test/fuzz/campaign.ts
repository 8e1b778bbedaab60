import fc from 'fast-check'
import { fuzzBatch, MUST_SEND, type FuzzInput } from './arbitraries.js'
import type { Problem, ProblemKind } from './problems.js'

/**
 * The fuzzing loop, shared by the sample in `make test` and `make fuzz`.
 *
 * fast-check draws batches of inputs from one seed (run N of a seed is the
 * same batch on every machine); the harness runs each against the gateway.
 * The first time a problem shows, the property fails and fast-check shrinks
 * the batch, keeping only candidates that show the same problem; the shrunk
 * batch is then cut down further by dropping inputs one at a time. Problems
 * seen before are only counted, so a long campaign goes past a known bug and
 * on to the next one. Memory is checked apart from the batches: a leak is the
 * sum of many inputs, not one.
 */

export interface Finding {
  kind: ProblemKind | 'memory'
  signature: string
  message: string
  count: number
  /** fast-check's seed and path of the failing batch: FUZZ_SEED and FUZZ_PATH replay it. */
  seed: number
  path?: string
  /** The smallest batch found that still shows the problem. */
  counterexample?: FuzzInput[]
}

export interface MemoryReport {
  baselineBytes: number
  lastBytes: number
  peakBytes: number
  boundBytes: number
  checks: number
  /** Checks that found the heap over the bound and waited for it to come back (it did, unless there is a finding). */
  settles: number
  /** When the baseline was taken, after the start. */
  warmUpMs: number
}

/** What sends the inputs (FuzzDriver in lanes.ts). */
export interface BatchRunner {
  /** Sends a batch; returns the problems its connections showed (hangs, 5xx, echoes). */
  runBatch: (batch: FuzzInput[]) => Promise<Problem[]>
  summary: () => Record<string, Record<string, number>>
  readonly sessions: Record<string, number>
}

/** What the campaign asks of the gateway's side (another thread): judge a batch, weigh the heap. */
export interface GatewayLink {
  /** Problems the gateway showed since the last call (crashes, error lines, a failed bystander round trip). */
  check: () => Promise<Problem[]>
  /** The gateway's heap after gc, in bytes. */
  heap: () => Promise<number>
  roundTrips: () => Promise<CampaignResult['roundTrips']>
}

export interface CampaignResult {
  seed: number
  /** The batch size bound: with the seed, what a replay needs (FUZZ_BATCH). */
  maxBatch: number
  /** What the gateway stored its state in (filled in by the gateway's side). */
  stores?: string
  inputs: number
  batches: number
  durationMs: number
  /** Inputs sent while shrinking, not counted in `inputs`. */
  shrinkInputs: number
  findings: Finding[]
  memory: MemoryReport
  counts: Record<string, Record<string, number>>
  /** Connections the fuzzer opened per kind (each close by the server costs a new one). */
  sessions: Record<string, number>
  roundTrips: { count: number, meanMs: number, maxMs: number }
}

/** `heapBytes` is the gateway's heap (not collected first). */
export interface Progress { inputs: number, target: number, elapsedMs: number, findings: number, heapBytes: number }

export interface CampaignOptions {
  seed: number
  /** Stop once this many inputs were sent (shrinking excluded). */
  inputs: number
  /** Inputs per batch, at most (batches are 1 to this long). */
  maxBatch: number
  /** Replay one path of `seed` (as printed with a finding) instead of running a campaign. */
  path?: string
  /** End at the first finding (the sample); a campaign records it and goes on. */
  stopAtFirstFinding?: boolean
  /**
   * The heap baseline is taken after this long (and at least two batches):
   * the gateway's bounded buffers (connection-state recovery keeps two minutes
   * of packets) are full by then, and belong to its working set.
   */
  warmUpMs?: number
  /** Heap after gc may exceed the warm-up baseline by this much. */
  memoryBoundBytes?: number
  /** Over the bound, wait this long for the heap to come back before calling it a finding (recovery buffers age out). */
  memorySettleMs?: number
  memoryEveryMs?: number
  /** Runs tried while shrinking one finding, at most. */
  shrinkRuns?: number
  onProgress?: (progress: Progress) => void
  progressEveryMs?: number
}

/** A thrown finding: fails the property so that fast-check shrinks the batch. */
class ProblemShown extends Error {
  constructor (readonly problem: Problem) { super(problem.signature) }
}

export async function runCampaign (driver: BatchRunner, gateway: GatewayLink, options: CampaignOptions): Promise<CampaignResult> {
  const started = Date.now()
  const runBatch = async (batch: FuzzInput[]): Promise<Problem[]> => [...await driver.runBatch(batch), ...await gateway.check()]
  const memoryBoundBytes = options.memoryBoundBytes ?? 64 * 1024 * 1024
  const findings = new Map<string, Finding>()
  const memory: MemoryReport = { baselineBytes: 0, lastBytes: 0, peakBytes: 0, boundBytes: memoryBoundBytes, checks: 0, settles: 0, warmUpMs: 0 }
  let inputs = 0
  let batches = 0
  let shrinkInputs = 0
  let shrinking: { signature: string, runs: number } | undefined
  // Runs of the current fc.check that were not shrinking: where the next check starts.
  let mainRuns = 0
  // Other new problems of the batch that failed first: a run that stops there lists them too (unshrunk).
  let besides: Problem[] = []
  let lastProgress = started
  let lastMemoryCheck = started
  const budget = options.shrinkRuns ?? 300

  const checkMemory = async (settle: boolean): Promise<void> => {
    let heap = await gateway.heap()
    memory.checks++
    memory.peakBytes = Math.max(memory.peakBytes, heap)
    const deadline = Date.now() + (settle ? options.memorySettleMs ?? 0 : 0)
    if (heap > memory.baselineBytes + memoryBoundBytes && Date.now() < deadline) memory.settles++
    while (heap > memory.baselineBytes + memoryBoundBytes && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5000))
      heap = await gateway.heap()
    }
    memory.lastBytes = heap
    if (heap > memory.baselineBytes + memoryBoundBytes) {
      const grown = Math.round((heap - memory.baselineBytes) / 2 ** 20)
      const known = findings.get('memory')
      if (known !== undefined) known.count++
      else findings.set('memory', { kind: 'memory', signature: 'memory', message: `heap after gc ${grown} MB over the warm-up baseline (bound ${memoryBoundBytes / 2 ** 20} MB) after ${inputs} inputs`, count: 1, seed: options.seed })
    }
  }

  const property = fc.asyncProperty(fuzzBatch(options.maxBatch), async (batch) => {
    if (shrinking !== undefined) {
      // Past the budget every candidate passes, which ends shrinking with the smallest failure so far.
      if (++shrinking.runs > budget) return
      shrinkInputs += batch.length
      const problems = await runBatch(batch)
      const same = problems.find((p) => p.signature === shrinking?.signature)
      if (same !== undefined) throw new ProblemShown(same)
      return
    }
    // A replayed path runs its one batch; fast-check then walks that batch's shrink candidates, which are skipped.
    if (options.path !== undefined && mainRuns > 0) return
    mainRuns++
    const problems = await runBatch(batch)
    inputs += batch.length
    batches++
    if (memory.baselineBytes === 0 && batches >= 2 && Date.now() - started >= (options.warmUpMs ?? 0)) {
      memory.baselineBytes = await gateway.heap()
      memory.warmUpMs = Date.now() - started
      lastMemoryCheck = Date.now()
    }
    const now = Date.now()
    if (options.onProgress !== undefined && now - lastProgress >= (options.progressEveryMs ?? 5000)) {
      lastProgress = now
      options.onProgress({ inputs, target: options.inputs, elapsedMs: now - started, findings: findings.size, heapBytes: process.memoryUsage().heapUsed })
    }
    if (memory.baselineBytes > 0 && now - lastMemoryCheck >= (options.memoryEveryMs ?? 30_000)) {
      await checkMemory(true)
      lastMemoryCheck = Date.now()
    }
    let fresh: Problem | undefined
    besides = []
    for (const problem of problems) {
      const known = findings.get(problem.signature)
      if (known !== undefined) known.count++
      else if (fresh === undefined) fresh = problem
      else if (problem.signature !== fresh.signature && !besides.some((p) => p.signature === problem.signature)) besides.push(problem)
    }
    if (fresh !== undefined) {
      shrinking = { signature: fresh.signature, runs: 0 }
      throw new ProblemShown(fresh)
    }
  })

  let nextRun = 0
  while (inputs < options.inputs || options.path !== undefined) {
    mainRuns = 0
    // About enough runs to reach the target; the loop goes round again if batches came out short.
    const numRuns = options.path !== undefined ? 1 : Math.max(1, Math.ceil((options.inputs - inputs) / (options.maxBatch / 2)))
    // Replaying, the skipped candidates are cut short by a time limit (a shrink after a failure too).
    const replay = options.path !== undefined ? { interruptAfterTimeLimit: 10_000, markInterruptAsFailure: false } : {}
    const details = await fc.check(property, { seed: options.seed, path: options.path ?? String(nextRun), numRuns, examples: [[MUST_SEND]], ...replay })
    if (details.failed && details.errorInstance instanceof ProblemShown) {
      const { problem } = details.errorInstance
      const counterexample = await minimise(runBatch, details.counterexample?.[0] ?? [], problem.signature, () => { shrinkInputs++ })
      findings.set(problem.signature, {
        kind: problem.kind,
        signature: problem.signature,
        message: problem.message,
        count: (findings.get(problem.signature)?.count ?? 0) + 1,
        seed: options.seed,
        path: details.counterexamplePath ?? undefined,
        counterexample
      })
      shrinking = undefined
      if (options.stopAtFirstFinding === true || options.path !== undefined) {
        for (const other of besides) {
          findings.set(other.signature, { kind: other.kind, signature: other.signature, message: `${other.message}\n(seen in the same batch; not shrunk)`, count: 1, seed: options.seed, path: details.counterexamplePath?.split(':')[0], counterexample: other.input === undefined ? undefined : [other.input] })
        }
        break
      }
      nextRun = Number((details.counterexamplePath ?? String(nextRun)).split(':')[0]) + 1
    } else if (details.failed) {
      // Not a finding: an error of the harness itself, which must not pass for a clean run.
      throw details.errorInstance ?? new Error(`fast-check failed after ${details.numRuns} runs`)
    } else {
      nextRun += mainRuns
      if (options.path !== undefined) break
    }
  }
  // A run that ended before its warm-up has no baseline to compare with.
  if (memory.baselineBytes > 0) await checkMemory(true)

  return {
    seed: options.seed,
    maxBatch: options.maxBatch,
    inputs,
    batches,
    durationMs: Date.now() - started,
    shrinkInputs,
    findings: [...findings.values()],
    memory,
    counts: driver.summary(),
    sessions: { ...driver.sessions },
    roundTrips: await gateway.roundTrips()
  }
}

/**
 * Drops inputs from a failing batch while the problem still shows: first
 * each input alone, then halves, then one input at a time (bounded).
 */
async function minimise (runBatch: (batch: FuzzInput[]) => Promise<Problem[]>, batch: FuzzInput[], signature: string, onInput: () => void): Promise<FuzzInput[]> {
  const shows = async (candidate: FuzzInput[]): Promise<boolean> => {
    for (let i = 0; i < candidate.length; i++) onInput()
    return (await runBatch(candidate)).some((p) => p.signature === signature)
  }
  if (batch.length <= 1) return batch
  for (const input of batch.slice(0, 40)) {
    if (await shows([input])) return [input]
  }
  let current = batch
  for (let tries = 0; current.length > 1 && tries < 60; tries++) {
    const half = Math.ceil(current.length / 2)
    if (await shows(current.slice(0, half))) current = current.slice(0, half)
    else if (await shows(current.slice(half))) current = current.slice(half)
    else break
  }
  for (let i = current.length - 1; i >= 0 && current.length > 1 && i < 80; i--) {
    const without = [...current.slice(0, i), ...current.slice(i + 1)]
    if (await shows(without)) current = without
  }
  return current
}
