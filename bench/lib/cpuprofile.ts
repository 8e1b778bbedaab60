// Reads a V8 .cpuprofile (node --cpu-prof) and sums self and total time by
// function, optionally only over samples inside a time window (the measured
// window, so start-up and teardown do not count).
import { spawnSync } from 'node:child_process'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

interface CallFrame { functionName: string, url: string, lineNumber: number, columnNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame, children?: number[] }
interface CpuProfile { nodes: ProfileNode[], startTime: number, endTime: number, samples: number[], timeDeltas: number[] }

export interface FunctionCost {
  /** "name (file:line)" */
  name: string
  /** Where the function lives: `src/...`, a package name, `node:…`, or a V8 pseudo-frame. */
  origin: string
  kind: 'src' | 'dependency' | 'node' | 'v8'
  selfSamples: number
  totalSamples: number
  selfShare: number
  totalShare: number
}

export interface ProfileSummary {
  samples: number
  /** Samples that fell inside the window (all of them without a window). */
  windowed: boolean
  functions: FunctionCost[]
  /** Self time by origin (package, src, node, v8). */
  byOrigin: Array<{ origin: string, kind: FunctionCost['kind'], selfShare: number }>
}

/** The gateway's own code: src/*.ts under tsx, or its compiled copy (see bench/tsconfig.build.json). */
const COMPILED_SRC = 'node_modules/.cache/spark-bench-build/src/'
/**
 * The compiled bench servers (A's routes and handlers): origin `bench`, as under tsx. Named by their
 * .js file and line: sourceLines cannot map them (importing a server file starts a server).
 */
const COMPILED_BENCH = 'node_modules/.cache/spark-bench-build/bench/'

function classify (url: string, functionName: string, root: string): { origin: string, kind: FunctionCost['kind'], file: string } {
  if (url === '') return { origin: functionName.startsWith('(') ? functionName : '(native)', kind: 'v8', file: '' }
  if (url.startsWith('node:')) return { origin: 'node', kind: 'node', file: url }
  const path = url.replace(/^file:\/\//, '')
  if (path.startsWith(root + COMPILED_SRC)) return { origin: 'src', kind: 'src', file: `src/${path.slice(root.length + COMPILED_SRC.length).replace(/\.js$/, '.ts')}` }
  if (path.startsWith(root + COMPILED_BENCH)) return { origin: 'bench', kind: 'dependency', file: `bench/${path.slice(root.length + COMPILED_BENCH.length)}` }
  const nm = path.lastIndexOf('/node_modules/')
  if (nm !== -1) {
    const rest = path.slice(nm + '/node_modules/'.length).split('/')
    const pkg = rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
    return { origin: pkg, kind: 'dependency', file: rest.slice(pkg.includes('/') ? 2 : 1).join('/') }
  }
  const rel = path.startsWith(root) ? path.slice(root.length) : path
  if (rel.startsWith('src/')) return { origin: 'src', kind: 'src', file: rel }
  return { origin: rel.split('/')[0] ?? rel, kind: 'dependency', file: rel }
}

/**
 * Original 1-based lines of call frames in tsx-compiled files (`src/…ts`), by
 * "url|line|column"; frames it cannot map are left out.
 */
function sourceLines (profile: CpuProfile, root: string): Map<string, number> {
  const positions = profile.nodes.map((n) => n.callFrame)
    .filter((f) => (f.url.startsWith(`file://${root}src/`) && f.url.endsWith('.ts')) || (f.url.startsWith(`file://${root}${COMPILED_SRC}`) && f.url.endsWith('.js')))
    .map((f) => ({ url: f.url, line: f.lineNumber, column: f.columnNumber }))
  const lines = new Map<string, number>()
  if (positions.length === 0) return lines
  const input = join(tmpdir(), `bench-positions-${process.pid}.json`)
  writeFileSync(input, JSON.stringify(positions))
  try {
    const script = fileURLToPath(new URL('./source-positions.ts', import.meta.url))
    const res = spawnSync(process.execPath, ['--enable-source-maps', '--import', 'tsx', script, input], { cwd: root, encoding: 'utf8', timeout: 60_000 })
    if (res.status !== 0) return lines
    for (const p of JSON.parse(res.stdout) as Array<{ url: string, line: number, column: number, originalLine: number | null }>) {
      if (p.originalLine !== null) lines.set(`${p.url}|${p.line}|${p.column}`, p.originalLine)
    }
  } finally {
    rmSync(input, { force: true })
  }
  return lines
}

/**
 * Sums a profile. With `window` (CLOCK_MONOTONIC µs, as process.hrtime gives
 * and V8 stamps samples with), only samples inside it count.
 */
export function summarizeProfile (file: string, root: string, window?: { startUs: number, stopUs: number }): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const byId = new Map<number, ProfileNode>()
  const parent = new Map<number, number>()
  for (const node of profile.nodes) {
    byId.set(node.id, node)
    for (const child of node.children ?? []) parent.set(child, node.id)
  }
  // Sample times: startTime plus the running sum of deltas.
  let t = profile.startTime
  const inWindow = window !== undefined && window.startUs >= profile.startTime - 1e6 && window.stopUs <= profile.endTime + 1e6
  const self = new Map<number, number>()
  let counted = 0
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i]
    if (inWindow && (t < window.startUs || t > window.stopUs)) continue
    self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + 1)
    counted++
  }

  const original = sourceLines(profile, root)
  const keyOf = (node: ProfileNode): string => `${node.callFrame.functionName}|${node.callFrame.url}|${node.callFrame.lineNumber}|${node.callFrame.columnNumber}`
  const functions = new Map<string, FunctionCost>()
  const entry = (node: ProfileNode): FunctionCost => {
    const key = keyOf(node)
    let cost = functions.get(key)
    if (cost === undefined) {
      const { origin, kind, file } = classify(node.callFrame.url, node.callFrame.functionName, root)
      const { url, lineNumber, columnNumber } = node.callFrame
      const line = original.get(`${url}|${lineNumber}|${columnNumber}`) ?? lineNumber + 1
      const name = `${node.callFrame.functionName || '(anonymous)'}${file === '' ? '' : ` (${file}:${line})`}`
      cost = { name, origin, kind, selfSamples: 0, totalSamples: 0, selfShare: 0, totalShare: 0 }
      functions.set(key, cost)
    }
    return cost
  }
  for (const [id, count] of self) {
    const node = byId.get(id)!
    entry(node).selfSamples += count
    // Total: each distinct function on the stack once (recursion is not counted twice).
    const seen = new Set<string>()
    for (let n: ProfileNode | undefined = node; n !== undefined; n = byId.get(parent.get(n.id) ?? -1)) {
      const key = keyOf(n)
      if (seen.has(key)) continue
      seen.add(key)
      entry(n).totalSamples += count
    }
  }
  const origins = new Map<string, { origin: string, kind: FunctionCost['kind'], selfShare: number }>()
  for (const cost of functions.values()) {
    cost.selfShare = cost.selfSamples / counted
    cost.totalShare = cost.totalSamples / counted
    const o = origins.get(cost.origin) ?? { origin: cost.origin, kind: cost.kind, selfShare: 0 }
    o.selfShare += cost.selfShare
    origins.set(cost.origin, o)
  }
  return {
    samples: counted,
    windowed: inWindow,
    functions: [...functions.values()].sort((a, b) => b.selfSamples - a.selfSamples),
    byOrigin: [...origins.values()].sort((a, b) => b.selfShare - a.selfShare)
  }
}
