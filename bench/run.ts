// `make bench`: every scenario, A (bare Socket.IO) against B (the gateway) in
// the same run, alternating over several trials after a warm-up, then CPU
// profiles of A and B on the relay, token and handshake paths (what B's extra
// CPU per operation is spent on) and the micro-benchmarks beside this file.
// Writes bench/results/latest.json and latest.md; prints a table.
//
// The servers (A, B, and A0 when asked) start once, in parallel, and serve
// every scenario in turn (idle memory first, on fresh heaps); the relay's
// profiled pair starts with them and waits idle for the profile step, the
// token and handshake steps start their own pairs after the scenarios.
//
//   BENCH_QUICK=1           shorter run (2 s windows, fewer sockets, no A0)
//   BENCH_ONLY=relay,fanout only these (idle-memory, handshakes, relay, fanout, open-loop, churn, token, routing, history,
//                           profile (relay), profile-token, profile-handshakes, micro)
//   BENCH_TRIALS=n          measured trials per variant (default 3)
//   BENCH_SECONDS=s         measured relay window (default 5; fan-out uses 3)
//   BENCH_PLAIN_BASELINE=1  add the informational A0 variant (Socket.IO defaults) to relay (default on, off with QUICK)
//   BENCH_ONLY=soak         the soak (only when named: it takes BENCH_SOAK_MINUTES, default 30), written to
//                           bench/results/soak.{md,json}; latest.* is left alone when soak is all that ran
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { summarizeProfile, type ProfileSummary } from './lib/cpuprofile.js'
import { buildServers, fromSource, pinning, SERVER_CPU, serverPool, LOAD_CPU, type ServerHandle } from './lib/processes.js'
import type { ProfiledWindow } from './lib/profiled-window.js'
import { VARIANT_LABELS, type BenchSettings, type Metric, type ScenarioResult, type ServerSet, type WindowStats } from './lib/scenario.js'
import { fmt, median, ratio } from './lib/stats.js'
import { run as runChurn } from './scenarios/churn.js'
import { run as runFanout } from './scenarios/fanout.js'
import { profileHandshakes, run as runHandshakes } from './scenarios/handshakes.js'
import { profileToken, run as runToken } from './scenarios/token.js'
import { IDLE_SOCKETS, IDLE_SOCKETS_QUICK, run as runIdleMemory } from './scenarios/idle-memory.js'
import { run as runHistory } from './scenarios/history.js'
import { run as runOpenLoop } from './scenarios/open-loop.js'
import { run as runRouting } from './scenarios/routing.js'
import { run as runSoak, soakSummary, writeSoakReport, type SoakReport } from './scenarios/soak.js'
import { profileRelay, run as runRelay, startProfiledServer, type ProfileRun } from './scenarios/relay.js'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url))
const PROFILES = fileURLToPath(new URL('./results/profiles/', import.meta.url))

function settingsFromEnv (): BenchSettings & { only: Set<string> | undefined, profileSeconds: number, soakMinutes: number } {
  const quick = process.env.BENCH_QUICK === '1'
  const number = (name: string, fallback: number): number => {
    const value = Number(process.env[name])
    return Number.isFinite(value) && value > 0 ? value : fallback
  }
  const only = process.env.BENCH_ONLY?.split(',').map((s) => s.trim()).filter((s) => s.length > 0)
  return {
    quick,
    trials: number('BENCH_TRIALS', 3),
    seconds: number('BENCH_SECONDS', quick ? 2 : 5),
    fanoutSeconds: quick ? 2 : 3,
    warmupSeconds: quick ? 1 : 2,
    plainBaseline: process.env.BENCH_PLAIN_BASELINE !== undefined ? process.env.BENCH_PLAIN_BASELINE === '1' : !quick,
    only: only === undefined || only.length === 0 ? undefined : new Set(only),
    profileSeconds: quick ? 3 : 6,
    soakMinutes: number('BENCH_SOAK_MINUTES', 30)
  }
}

// ---- verdicts ----

type Verdict = 'server-bound' | 'contended' | 'client-bound' | 'unsaturated'

/**
 * What limited a variant's throughput, from the medians of its windows:
 * - server-bound: the server used ≥ 90% of its core (throughput is the server's);
 * - contended: the server wanted its core ≥ 90% of the time but other processes
 *   on it took part of that (run-queue wait): CPU per operation holds, throughput does not;
 * - client-bound: the load generator used (or wanted) ≥ 90% of its core;
 * - unsaturated: neither side was busy (round trips, or both sides waiting on a shared machine).
 */
function verdict (result: ScenarioResult, label: string): { verdict: Verdict, cpu: number, wait: number, load?: number, loadWait?: number } | undefined {
  const cpu = result.serverCpuShare[label]
  if (cpu === undefined || cpu.length === 0) return undefined
  const c = median(cpu)
  const w = median(result.serverWaitShare?.[label] ?? [0])
  const l = result.loadCpuShare?.[label] !== undefined ? median(result.loadCpuShare[label]) : undefined
  const lw = result.loadWaitShare?.[label] !== undefined ? median(result.loadWaitShare[label]) : undefined
  const v: Verdict = c >= 0.9 ? 'server-bound' : c + w >= 0.9 ? 'contended' : l !== undefined && l + (lw ?? 0) >= 0.9 ? 'client-bound' : l === undefined ? 'client-bound' : 'unsaturated'
  return { verdict: v, cpu: c, wait: w, ...(l !== undefined ? { load: l } : {}), ...(lw !== undefined ? { loadWait: lw } : {}) }
}

function describeVerdict (label: string, v: NonNullable<ReturnType<typeof verdict>>): string {
  return `${label}: ${v.verdict} (server CPU ${(v.cpu * 100).toFixed(0)}% of a core + run-queue wait ${(v.wait * 100).toFixed(0)}%` +
    `${v.load !== undefined ? `; load generator CPU ${(v.load * 100).toFixed(0)}% + wait ${((v.loadWait ?? 0) * 100).toFixed(0)}%` : ''})`
}

interface Row {
  scenario: string
  metric: Metric
  labels: string[]
  /** Ratio per comparison column, keyed "B/A". */
  ratios: Record<string, ReturnType<typeof ratio> | undefined>
  goalRatio?: ReturnType<typeof ratio>
  /** An absolute goal's subject: the `of` variant's own value. */
  goalValue?: { median: number, min: number, max: number }
  goalMet?: boolean
}

/** The variants of a scenario in report order (as VARIANT_DESCRIPTIONS lists them). */
function variantsOf (result: ScenarioResult): string[] {
  const present = new Set(result.metrics.flatMap((m) => Object.keys(m.byVariant)))
  return [...VARIANT_LABELS.filter((l) => present.has(l)), ...[...present].filter((l) => !VARIANT_LABELS.includes(l))]
}

/** Ratio columns: B/A, B/A0 when A0 ran, then the scenario's own. */
function comparisonsOf (result: ScenarioResult): Array<[string, string]> {
  const present = new Set(variantsOf(result))
  const all: Array<[string, string]> = [['B', 'A'], ['B', 'A0'], ...(result.comparisons ?? [])]
  return all.filter(([x, y], i) => present.has(x) && present.has(y) && all.findIndex(([p, q]) => p === x && q === y) === i)
}

function rows (result: ScenarioResult): Row[] {
  const comparisons = comparisonsOf(result)
  return result.metrics.map((metric) => {
    const labels = Object.keys(metric.byVariant)
    const ratioOf = (x: string, y: string): ReturnType<typeof ratio> | undefined =>
      metric.byVariant[x] !== undefined && metric.byVariant[y] !== undefined ? ratio(metric.byVariant[x], metric.byVariant[y]) : undefined
    const ratios = Object.fromEntries(comparisons.map(([x, y]) => [`${x}/${y}`, ratioOf(x, y)]))
    const row: Row = { scenario: result.name, metric, labels, ratios }
    if (metric.goal !== undefined) {
      const { goal } = metric
      const r = goal.absolute === true ? undefined : ratioOf(goal.of ?? 'B', goal.to ?? 'A')
      const v = goal.absolute === true ? metric.byVariant[goal.of ?? 'B'] : undefined
      if (r !== undefined) row.goalRatio = r
      if (v !== undefined) row.goalValue = { median: v.median, min: v.min, max: v.max }
      const subject = r ?? v
      if (subject !== undefined) row.goalMet = goal.op === '>=' ? subject.median >= goal.value : subject.median <= goal.value
    }
    return row
  })
}

function digits (value: number): number {
  const abs = Math.abs(value)
  return abs >= 100 ? 0 : abs >= 10 ? 1 : 2
}

const num = (v: number): string => fmt(v, digits(v))
const cell = (s: { median: number, min: number, max: number } | undefined): string =>
  s === undefined ? '' : `${num(s.median)} (${num(s.min)}–${num(s.max)})`
// A ratio over a zero (latency under autocannon's 1 ms resolution) says nothing: shown as n/a.
const ratioCell = (r: { median: number, min: number, max: number } | undefined): string =>
  r === undefined ? '' : !Number.isFinite(r.median) ? 'n/a' : `${r.median.toFixed(3)} (${r.min.toFixed(2)}–${r.max.toFixed(2)})`

// ---- micro-benchmarks written beside this file (run as they are, in their own process) ----

function runMicro (file: string): { file: string, ok: boolean, output: string } | undefined {
  const path = fileURLToPath(new URL(file, import.meta.url))
  if (!existsSync(path)) return undefined
  const hasTaskset = spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0
  const argv = [process.execPath, '--import', 'tsx', path]
  const res = hasTaskset
    ? spawnSync('taskset', ['-c', SERVER_CPU, ...argv], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 })
    : spawnSync(argv[0], argv.slice(1), { cwd: ROOT, encoding: 'utf8', timeout: 120_000 })
  const output = `${res.stdout ?? ''}${res.status === 0 ? '' : res.stderr ?? ''}`.trim()
  return { file: `bench/${file}`, ok: res.status === 0, output: res.status === 0 ? output : `failed (${res.status ?? res.signal}): ${output.slice(-2000)}` }
}

// ---- profile ----

/** One profiled server: its measured window, CPU per operation in it, and the profile summed over it. */
interface ProfiledServer { summary: ProfileSummary, file: string, window: WindowStats, opsPerSec: number, cpuUsPerOp: number }
interface ProfileReport { B: ProfiledServer, A?: ProfiledServer }

/** A profiled path: what one operation is called in the report, its rate's unit and JSON key, and what loaded it. */
interface ProfileUnit { op: string, rate: string, rateKey: string, load: string }

const RELAY_UNIT: ProfileUnit = { op: 'publish', rate: 'msg/s', rateKey: 'msgsPerSec', load: 'the relay load' }

/** The token and handshake profile steps: step name (BENCH_ONLY), the scenario they explain, their unit and load. */
const PATH_PROFILES: Array<{ step: string, scenario: string, unit: ProfileUnit, run: typeof profileToken }> = [
  { step: 'profile-token', scenario: 'token', unit: { op: 'token', rate: 'tokens/s', rateKey: 'tokensPerSec', load: 'the token scenario\'s valid-key load (autocannon, POST /auth/token)' }, run: profileToken },
  { step: 'profile-handshakes', scenario: 'handshakes', unit: { op: 'handshake', rate: 'handshakes/s', rateKey: 'handshakesPerSec', load: 'the handshakes scenario\'s authorised cycles (CPU per handshake: open, close, audit row)' }, run: profileHandshakes }
]

/** A token or handshake profile as the report shows it. */
interface PathProfile { scenario: string, unit: ProfileUnit, report: ProfileReport }

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`
const signed = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(1)}`
const cpuKey = (unit: ProfileUnit): string => `cpuUsPer${unit.op[0].toUpperCase()}${unit.op.slice(1)}`

/** A kept profile summed over its window, with its path relative to the repository. */
function summarized (file: string, window: WindowStats): Pick<ProfiledServer, 'summary' | 'file'> {
  return { summary: summarizeProfile(file, ROOT, window), file: file.slice(ROOT.length) }
}

/**
 * Main-thread µs per operation of a profile's share: its share of the busy
 * (non-idle) samples times the process's CPU per operation in the window.
 */
function usPerOp (p: ProfiledServer): (share: number) => number {
  const idle = p.summary.byOrigin.find((o) => o.origin === '(idle)')?.selfShare ?? 0
  return (share) => (share / (1 - idle)) * p.cpuUsPerOp
}

/** µs per operation spent in each origin (self time). */
function usPerOpByOrigin (p: ProfiledServer): Map<string, number> {
  const us = usPerOp(p)
  return new Map(p.summary.byOrigin.filter((o) => o.origin !== '(idle)').map((o) => [o.origin, us(o.selfShare)]))
}

/** Of rows sorted by B − A, the `n` largest differences either way, still in that order. */
function largest<T extends { a: number, b: number }> (rows: T[], n: number): { shown: T[], rest: T[] } {
  const keep = new Set([...rows].sort((x, y) => Math.abs(y.b - y.a) - Math.abs(x.b - x.a)).slice(0, n))
  return { shown: rows.filter((r) => keep.has(r)), rest: rows.filter((r) => !keep.has(r)) }
}

/** A against B by origin, largest B − A first. */
function originRows (p: Required<ProfileReport>): Array<{ origin: string, a: number, b: number }> {
  const a = usPerOpByOrigin(p.A)
  const b = usPerOpByOrigin(p.B)
  return [...new Set([...a.keys(), ...b.keys()])]
    .map((o) => ({ origin: o, a: a.get(o) ?? 0, b: b.get(o) ?? 0 }))
    .sort((x, y) => (y.b - y.a) - (x.b - x.a))
}

/**
 * A against B by function outside src/ (self time), largest B − A first: names
 * what the node and (native) rows are. V8's pseudo-frames, (program) and the
 * like, are their own origin rows already.
 */
function functionDiffRows (p: Required<ProfileReport>): Array<{ name: string, origin: string, a: number, b: number }> {
  const byName = (s: ProfiledServer): Map<string, { origin: string, us: number }> => {
    const us = usPerOp(s)
    return new Map(s.summary.functions.filter((f) => f.kind !== 'src' && f.name !== f.origin).map((f) => [f.name, { origin: f.origin, us: us(f.selfShare) }]))
  }
  const a = byName(p.A)
  const b = byName(p.B)
  return [...new Set([...a.keys(), ...b.keys()])]
    .map((name) => ({ name, origin: (b.get(name) ?? a.get(name))!.origin, a: a.get(name)?.us ?? 0, b: b.get(name)?.us ?? 0 }))
    .sort((x, y) => (y.b - y.a) - (x.b - x.a))
}

/** B's src/ functions by inclusive time (their callees included), in µs per operation. */
function srcInclusiveRows (p: ProfiledServer): Array<{ name: string, totalUs: number, selfUs: number, totalShare: number }> {
  const us = usPerOp(p)
  return p.summary.functions.filter((f) => f.kind === 'src').sort((x, y) => y.totalSamples - x.totalSamples)
    .map((f) => ({ name: f.name, totalUs: us(f.totalShare), selfUs: us(f.selfShare), totalShare: f.totalShare }))
}

/**
 * A profile section: B's window, A against B by origin (µs per `unit.op`),
 * B's top src/ functions by inclusive µs, and with `selfTables` the self-time
 * detail the relay section has always shown; `note` says how to read it.
 */
function profileTables (p: ProfileReport, unit: ProfileUnit, options: { selfTables: boolean, note: string }): string[] {
  const lines: string[] = []
  const { B } = p
  const { summary } = B
  const { op } = unit
  lines.push(`Profile of B under ${unit.load}: ${(B.window.elapsedUs / 1e6).toFixed(1)} s window, ${summary.samples} samples at 250 µs${summary.windowed ? ', window only' : ', whole process'}; ` +
    `${num(B.opsPerSec)} ${unit.rate}, ${num(B.cpuUsPerOp)} µs CPU/${op} while profiled. \`${B.file}\``)
  if (p.A !== undefined) {
    const { shown, rest } = largest(originRows({ B, A: p.A }), 16)
    lines.push('')
    lines.push(`A profiled the same way (${num(p.A.opsPerSec)} ${unit.rate}, ${num(p.A.cpuUsPerOp)} µs CPU/${op}): \`${p.A.file}\`. ` +
      `Main-thread µs per ${op} by origin (self time: share of busy samples × CPU per ${op}), the largest differences, B − A descending:`)
    lines.push('')
    lines.push(`| origin | A µs/${op} | B µs/${op} | B − A |`)
    lines.push('|---|---:|---:|---:|')
    for (const o of shown) lines.push(`| ${o.origin} | ${o.a.toFixed(1)} | ${o.b.toFixed(1)} | ${signed(o.b - o.a)} |`)
    if (rest.length > 0) {
      const a = rest.reduce((s, o) => s + o.a, 0)
      const b = rest.reduce((s, o) => s + o.b, 0)
      lines.push(`| ${rest.length} other origins | ${a.toFixed(1)} | ${b.toFixed(1)} | ${signed(b - a)} |`)
    }
    lines.push(`| **all (server CPU/${op})** | ${p.A.cpuUsPerOp.toFixed(1)} | ${B.cpuUsPerOp.toFixed(1)} | ${signed(B.cpuUsPerOp - p.A.cpuUsPerOp)} |`)
    lines.push('')
    lines.push(`The same by function outside src/ (self µs/${op}), the largest differences, B − A descending:`)
    lines.push('')
    lines.push(`| origin | function | A µs/${op} | B µs/${op} | B − A |`)
    lines.push('|---|---|---:|---:|---:|')
    for (const f of largest(functionDiffRows({ B, A: p.A }), 12).shown) lines.push(`| ${f.origin} | ${f.name} | ${f.a.toFixed(1)} | ${f.b.toFixed(1)} | ${signed(f.b - f.a)} |`)
  }
  const srcTotal = summary.byOrigin.find((o) => o.origin === 'src')?.selfShare ?? 0
  lines.push('')
  lines.push(`B's top src/ functions by inclusive time (their callees included; all of src/: ${usPerOp(B)(srcTotal).toFixed(1)} µs/${op} self):`)
  lines.push('')
  lines.push(`| µs/${op} incl. | µs/${op} self | incl. share | function |`)
  lines.push('|---:|---:|---:|---|')
  for (const f of srcInclusiveRows(B).slice(0, 12)) lines.push(`| ${f.totalUs.toFixed(1)} | ${f.selfUs.toFixed(1)} | ${pct(f.totalShare)} | ${f.name} |`)
  if (options.selfTables) {
    lines.push('')
    lines.push('Self time by origin: ' + summary.byOrigin.slice(0, 14).map((o) => `${o.origin} ${pct(o.selfShare)}`).join(', '))
    lines.push('')
    lines.push(`Top self time in src/ (all of src/: ${pct(srcTotal)} self):`)
    lines.push('')
    lines.push('| self | total | function |')
    lines.push('|---:|---:|---|')
    for (const f of summary.functions.filter((f) => f.kind === 'src').slice(0, 12)) lines.push(`| ${pct(f.selfShare)} | ${pct(f.totalShare)} | ${f.name}${f.selfShare >= 0.03 ? ' **≥3%**' : ''} |`)
    lines.push('')
    lines.push('Top self time in dependencies, Node and V8:')
    lines.push('')
    lines.push('| self | total | origin | function |')
    lines.push('|---:|---:|---|---|')
    for (const f of summary.functions.filter((f) => f.kind !== 'src').slice(0, 20)) lines.push(`| ${pct(f.selfShare)} | ${pct(f.totalShare)} | ${f.origin} | ${f.name} |`)
  }
  lines.push('')
  lines.push(options.note)
  return lines
}

/** A profile for latest.json: the window, the summary's heads, and the per-operation tables the report shows. */
function profileReportJson (p: ProfileReport, unit: ProfileUnit): Record<string, unknown> {
  const one = (s: ProfiledServer): Record<string, unknown> => ({
    file: s.file, window: s.window, [unit.rateKey]: s.opsPerSec, [cpuKey(unit)]: s.cpuUsPerOp, samples: s.summary.samples, windowed: s.summary.windowed,
    byOrigin: s.summary.byOrigin.slice(0, 30), functions: s.summary.functions.slice(0, 80), src: s.summary.functions.filter((f) => f.kind === 'src').slice(0, 40),
    srcInclusiveUsPerOp: srcInclusiveRows(s).slice(0, 40)
  })
  return {
    unit: unit.op,
    B: one(p.B),
    ...(p.A !== undefined
      ? {
          A: one(p.A),
          usPerOpByOrigin: originRows({ B: p.B, A: p.A }).map((o) => ({ origin: o.origin, A: o.a, B: o.b, diff: o.b - o.a })),
          usPerOpByFunction: largest(functionDiffRows({ B: p.B, A: p.A }), 40).shown.map((f) => ({ origin: f.origin, name: f.name, A: f.a, B: f.b, diff: f.b - f.a }))
        }
      : {})
  }
}

// ---- reports ----

function markdown (meta: Record<string, unknown>, results: ScenarioResult[], micro: Array<{ file: string, ok: boolean, output: string }>, profile: ProfileReport | undefined, pathProfiles: PathProfile[]): string {
  const lines: string[] = []
  lines.push('# Spark Gateway benchmarks (latest run)')
  lines.push('')
  lines.push(`Run with \`make bench\` (\`npx tsx bench/run.ts\`) on ${String(meta.date)}: Node ${String(meta.node)}, ${String(meta.cpus)} CPUs, ${String(meta.pinning)}; servers ${String(meta.servers)}. ` +
    `Settings: ${JSON.stringify(meta.settings)}.`)
  lines.push('')
  lines.push('Values are medians over the trials with (min–max); B/A is the ratio of the medians with the range of per-trial-pair ratios. ' +
    'Server CPU µs per operation (the server process\'s own `process.cpuUsage()` over the measured window) is the metric of record: ' +
    'throughput depends on the load generator and on other processes sharing the machine.')
  lines.push('')
  const goals = goalLines(results)
  if (goals.length > 0) {
    lines.push('Goals:', '', ...goals.map((g) => `- ${g}`), '')
  }
  for (const result of results) {
    lines.push(`## ${result.title}`)
    lines.push('')
    for (const [label, description] of Object.entries(result.variants)) lines.push(`- ${label}: ${description}`)
    lines.push('')
    const variants = variantsOf(result)
    const comparisons = comparisonsOf(result).map(([x, y]) => `${x}/${y}`)
    lines.push(`| metric | ${variants.join(' | ')} | ${comparisons.join(' | ')} | goal |`)
    lines.push(`|---|${variants.map(() => '---:').join('|')}|${comparisons.map(() => '---:').join('|')}|---|`)
    for (const row of rows(result)) {
      const goal = row.metric.goal === undefined ? '' : `${row.metric.goal.text}: ${row.goalMet === true ? 'met' : 'NOT met'}`
      lines.push(`| ${row.metric.label} (${row.metric.unit}) | ${variants.map((v) => cell(row.metric.byVariant[v])).join(' | ')} | ${comparisons.map((c) => ratioCell(row.ratios[c])).join(' | ')} | ${goal} |`)
    }
    lines.push('')
    const verdicts = Object.keys(result.serverCpuShare).map((label) => {
      const v = verdict(result, label)
      return v === undefined ? '' : describeVerdict(label, v)
    }).filter((s) => s.length > 0)
    if (verdicts.length > 0) lines.push(`Load: ${verdicts.join('; ')}.`, '')
    for (const note of result.notes) lines.push(`- ${note}`)
    if (result.notes.length > 0) lines.push('')
  }
  if (profile !== undefined) {
    lines.push('## Profile: the gateway\'s relay path')
    lines.push('')
    lines.push(...profileTables(profile, RELAY_UNIT, {
      selfTables: true,
      note: 'One profiled window each, not alternated: the syscall rows ((native) writev, node streams) move with the machine\'s load from one window to the next; ' +
        'the rows that only B has (src, prom-client) are the gateway\'s own per-packet work. The A/B comparison of record is the relay table above.'
    }))
    lines.push('')
  }
  for (const { scenario, unit, report } of pathProfiles) {
    lines.push(`## Profile: where B's CPU per ${unit.op} goes`)
    lines.push('')
    lines.push(...profileTables(report, unit, {
      selfTables: false,
      note: "One profiled window each (B, then A, each its own process under --cpu-prof), not alternated: the figures move with the machine's load from one window to the next, " +
        `and the profiler adds its own cost. The A/B comparison of record is the ${scenario} table above; this says where B's extra CPU per ${unit.op} goes.`
    }))
    lines.push('')
  }
  if (micro.length > 0) {
    lines.push('## Micro-benchmarks')
    lines.push('')
    for (const m of micro) lines.push(`- \`${m.file}\`${m.ok ? '' : ' (FAILED)'}:`, '', '```', m.output, '```', '')
  }
  return lines.join('\n')
}

/** One line per goal of the brief: the B/A ratio, its goal, met or not, and what limited the run. */
function goalLines (results: ScenarioResult[]): string[] {
  const lines: string[] = []
  for (const result of results) {
    for (const row of rows(result)) {
      if (row.metric.goal === undefined || (row.goalRatio === undefined && row.goalValue === undefined)) continue
      const of = row.metric.goal.of ?? 'B'
      // The verdict of the variant under test, whichever side of the ratio it is on (A/B goals included).
      const subject = [of, row.metric.goal.to ?? 'A'].find((l) => l.startsWith('B')) ?? of
      const b = verdict(result, subject)
      const measured = row.goalRatio !== undefined
        ? `${of}/${row.metric.goal.to ?? 'A'} ${row.goalRatio.median.toFixed(3)} (pairs ${row.goalRatio.min.toFixed(2)}–${row.goalRatio.max.toFixed(2)})`
        : `${of} ${num(row.goalValue!.median)} ${row.metric.unit} (trials ${num(row.goalValue!.min)}–${num(row.goalValue!.max)})`
      lines.push(`${result.name} ${row.metric.label}: ${measured}, goal ${row.metric.goal.text}: ` +
        `${row.goalMet === true ? 'met' : 'NOT met'}${b !== undefined && b.verdict !== 'server-bound' ? ` [${subject} ${b.verdict}]` : ''}` +
        `${row.goalMet !== true && row.metric.goal.cost !== undefined ? `. Cost: ${row.metric.goal.cost}` : ''}`)
    }
  }
  return lines
}

function table (results: ScenarioResult[]): string {
  const out: string[][] = [['scenario', 'metric', 'variant', 'value', 'ratios', 'goal']]
  for (const result of results) {
    for (const row of rows(result)) {
      const goal = row.metric.goal === undefined ? '' : `${row.metric.goal.text} ${row.goalMet === true ? 'met' : 'NOT met'}`
      const ratios = Object.entries(row.ratios).filter(([, r]) => r !== undefined && Number.isFinite(r.median)).map(([c, r]) => `${c} ${r!.median.toFixed(2)}`).join(', ')
      variantsOf(result).filter((v) => row.metric.byVariant[v] !== undefined).forEach((v, i) => {
        out.push([i === 0 ? result.name : '', i === 0 ? `${row.metric.label} (${row.metric.unit})` : '', v, cell(row.metric.byVariant[v]), i === 0 ? ratios : '', i === 0 ? goal : ''])
      })
    }
    for (const label of Object.keys(result.serverCpuShare)) {
      const v = verdict(result, label)
      if (v !== undefined) {
        out.push(['', `  ${label}: ${v.verdict}`, `server cpu ${(v.cpu * 100).toFixed(0)}% wait ${(v.wait * 100).toFixed(0)}%`,
          v.load !== undefined ? `load cpu ${(v.load * 100).toFixed(0)}% wait ${((v.loadWait ?? 0) * 100).toFixed(0)}%` : '', '', ''])
      }
    }
  }
  const widths = out[0].map((_, i) => Math.max(...out.map((r) => r[i].length)))
  return out.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n')
}

// ---- PostgreSQL and Redis for the B variants ----

/**
 * PostgreSQL and Redis for the gateway variants that use them: BENCH_DATABASE_URL
 * and BENCH_REDIS_URL when set, else a private pair from scripts/test-servers.sh
 * (installed from Debian when missing, as `make test` does). Their processes are
 * pinned beside the load generators, so the server CPU runs only the server under test.
 */
function startStores (log: (msg: string) => void): { stop: () => void } {
  if (process.env.BENCH_DATABASE_URL !== undefined && process.env.BENCH_REDIS_URL !== undefined) return { stop: () => {} }
  const dir = mkdtempSync(join(tmpdir(), 'spark-bench-stores-'))
  const env = { ...process.env, TEST_SERVERS_STATE: join(dir, 'servers.env') }
  const script = join(ROOT, 'scripts/test-servers.sh')
  log('starting a private PostgreSQL and Redis (scripts/test-servers.sh)…')
  execFileSync('bash', [script, 'start'], { env, stdio: ['ignore', 'ignore', 'inherit'] })
  const state = Object.fromEntries(readFileSync(env.TEST_SERVERS_STATE, 'utf8').split('\n')
    .map((line) => line.match(/^(?:export )?([A-Z_]+)=['"]?(.*?)['"]?$/)).filter((m) => m !== null).map((m) => [m[1], m[2]]))
  process.env.BENCH_DATABASE_URL = state.TEST_DATABASE_URL
  process.env.BENCH_REDIS_URL = state.TEST_REDIS_URL
  pinStores(state.TEST_SERVERS_DIR)
  return {
    stop: () => {
      try { execFileSync('bash', [script, 'stop'], { env, stdio: ['ignore', 'ignore', 'inherit'] }) } finally { rmSync(dir, { recursive: true, force: true }) }
    }
  }
}

/**
 * Pins redis-server, the postmaster and the processes it already forked (writer, checkpointer,
 * autovacuum…) to the load CPU; backends forked later inherit the postmaster's affinity.
 */
function pinStores (serversDir: string | undefined): void {
  if (serversDir === undefined) return
  const pids = [join(serversDir, 'pgdata/postmaster.pid'), join(serversDir, 'redis.pid')]
    .filter((file) => existsSync(file)).map((file) => readFileSync(file, 'utf8').split('\n')[0].trim())
  const children = pids.flatMap((pid) => spawnSync('pgrep', ['-P', pid], { encoding: 'utf8' }).stdout.split('\n').filter((c) => c.trim() !== ''))
  for (const pid of [...pids, ...children]) spawnSync('taskset', ['-a', '-p', '-c', LOAD_CPU, pid.trim()], { stdio: 'ignore' })
}

async function main (): Promise<void> {
  const settings = settingsFromEnv()
  const wants = (name: string): boolean => settings.only === undefined || settings.only.has(name)
  mkdirSync(PROFILES, { recursive: true })
  const started = Date.now()
  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    pinning,
    servers: fromSource ? 'from source under tsx (BENCH_FROM_SOURCE=1)' : 'compiled with tsc (as npm start runs dist/)',
    settings: { quick: settings.quick, trials: settings.trials, seconds: settings.seconds, fanoutSeconds: settings.fanoutSeconds, warmupSeconds: settings.warmupSeconds, plainBaseline: settings.plainBaseline, only: settings.only === undefined ? null : [...settings.only] }
  }
  const log = (msg: string): void => { process.stderr.write(`[bench +${((Date.now() - started) / 1000).toFixed(0)}s] ${msg}\n`) }

  const scenarios: Array<[string, (s: BenchSettings, servers: ServerSet) => Promise<ScenarioResult>]> = [
    ['idle-memory', runIdleMemory], ['handshakes', runHandshakes], ['relay', runRelay], ['fanout', runFanout],
    ['open-loop', runOpenLoop], ['churn', runChurn], ['token', runToken], ['routing', runRouting], ['history', runHistory]
  ]
  const wanted = scenarios.filter(([name]) => wants(name))
  const tokens = settings.quick ? IDLE_SOCKETS_QUICK : IDLE_SOCKETS
  const scratch = join(PROFILES, `tmp-${process.pid}`)
  const pool = serverPool(tokens)
  const profiled: ServerHandle[] = []

  const results: ScenarioResult[] = []
  let profile: ProfileReport | undefined
  const pathProfiles: PathProfile[] = []
  const wantedPaths = PATH_PROFILES.filter(({ step }) => wants(step))
  // Never part of the full run: the soak takes BENCH_SOAK_MINUTES on its own.
  const wantsSoak = settings.only?.has('soak') === true
  const onlySoak = wantsSoak && settings.only !== undefined && settings.only.size === 1
  let soak: SoakReport | undefined
  const stores = wanted.length > 0 || wantsSoak || wants('profile') || wantedPaths.length > 0 ? startStores(log) : undefined
  // Ctrl-C skips the finally below: the private PostgreSQL and Redis are stopped here instead
  // (the children exit with their IPC channel).
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      try { stores?.stop() } finally { process.exit(130) }
    })
  }
  try {
    log(fromSource ? 'servers run from source (tsx)' : 'compiling the servers (tsc)…')
    buildServers()
    log('starting servers…')
    for (const [name, run] of wanted) {
      log(`${name}…`)
      results.push(await run(settings, pool))
    }
    if (wantsSoak) {
      // Alone on the server CPU: the scenarios' servers stop, the soak starts its own B.
      await pool.stopAll()
      log(`soak (${settings.soakMinutes} min)…`)
      soak = await runSoak(settings.soakMinutes, pool, log)
      await pool.stopAll()
    }
    // The profiles come after the scenarios, each server started only for its own window (profilePair):
    // a server idling under --cpu-prof still samples, and would share CPU 0 with a measurement.
    if (wants('profile') || wantedPaths.length > 0) await pool.stopAll()
    if (wants('profile')) {
      log('profiles of B and A under the relay load…')
      const summarize = (run: ProfileRun): ProfiledServer => ({ ...summarized(run.file, run.window), window: run.window, opsPerSec: run.msgsPerSec, cpuUsPerOp: run.cpuUsPerPublish })
      const one = async (kind: 'gateway' | 'baseline', label: string, file: string): Promise<ProfiledServer> => {
        const server = await startProfiledServer(kind, label, scratch)
        profiled.push(server)
        return summarize(await profileRelay(settings, server, scratch, join(PROFILES, file), settings.profileSeconds))
      }
      const B = await one('gateway', 'B', 'relay-gateway.cpuprofile')
      profile = { B, A: await one('baseline', 'A', 'relay-baseline.cpuprofile') }
    }
    for (const { step, scenario, unit, run } of wantedPaths) {
      log(`profiles of B and A per ${unit.op} (${step})…`)
      const pair = await run(settings, scratch, PROFILES, settings.profileSeconds)
      const summarize = (w: ProfiledWindow): ProfiledServer => ({ ...summarized(w.file, w.window), window: w.window, opsPerSec: w.opsPerSec, cpuUsPerOp: w.cpuUsPerOp })
      pathProfiles.push({ scenario, unit, report: { B: summarize(pair.B), A: summarize(pair.A) } })
    }
  } finally {
    await pool.stopAll()
    for (const server of profiled) await server.stop().catch(() => {})
    rmSync(scratch, { recursive: true, force: true })
    stores?.stop()
  }

  const micro: Array<{ file: string, ok: boolean, output: string }> = []
  if (wants('micro')) {
    for (const file of ['policy.ts']) {
      log(`micro-benchmark bench/${file}…`)
      const m = runMicro(file)
      if (m !== undefined) micro.push(m)
    }
  }

  const elapsedSeconds = (Date.now() - started) / 1000
  const json = {
    meta: { ...meta, elapsedSeconds },
    scenarios: results.map((r) => ({ ...r, rows: rows(r).map((row) => ({ metric: row.metric.key, ratios: row.ratios, goal: row.metric.goal, goalRatio: row.goalRatio, goalValue: row.goalValue, goalMet: row.goalMet })), verdicts: Object.fromEntries(Object.keys(r.serverCpuShare).map((l) => [l, verdict(r, l)])) })),
    profile: profile === undefined ? undefined : profileReportJson(profile, RELAY_UNIT),
    profiles: Object.fromEntries(pathProfiles.map((p) => [p.scenario, profileReportJson(p.report, p.unit)])),
    micro
  }
  mkdirSync(RESULTS, { recursive: true })
  if (soak !== undefined) {
    writeSoakReport(soak, { ...meta, settings: { ...meta.settings, soakMinutes: settings.soakMinutes }, elapsedSeconds })
    for (const line of soakSummary(soak)) console.log(line)
    console.log('soak report: bench/results/soak.md, bench/results/soak.json')
  }
  if (onlySoak) return
  writeFileSync(new URL('./results/latest.json', import.meta.url), `${JSON.stringify(json, null, 2)}\n`)
  writeFileSync(new URL('./results/latest.md', import.meta.url), `${markdown({ ...meta, elapsedSeconds }, results, micro, profile, pathProfiles)}\n`)

  console.log(`Spark Gateway bench: Node ${process.version}, ${meta.cpus} CPUs, ${pinning}, ${elapsedSeconds.toFixed(0)} s`)
  console.log(table(results))
  for (const goal of goalLines(results)) console.log(`goal: ${goal}`)
  if (profile !== undefined) {
    const src = profile.B.summary.functions.filter((f) => f.kind === 'src').slice(0, 4)
    console.log(`profile (B, relay): src/ self ${pct(profile.B.summary.byOrigin.find((o) => o.origin === 'src')?.selfShare ?? 0)}; top: ${src.map((f) => `${f.name} ${pct(f.selfShare)}`).join(', ')}`)
  }
  for (const { unit, report } of pathProfiles) {
    if (report.A === undefined) continue
    const top = originRows({ B: report.B, A: report.A }).slice(0, 5)
    console.log(`profile (${unit.op}): CPU/${unit.op} A ${num(report.A.cpuUsPerOp)} µs, B ${num(report.B.cpuUsPerOp)} µs; largest B − A: ${top.map((o) => `${o.origin} ${signed(o.b - o.a)}`).join(', ')}`)
  }
  for (const m of micro) console.log(`${m.file}: ${m.ok ? m.output.split('\n').slice(-1)[0] : 'FAILED (see latest.md)'}`)
  console.log('full report: bench/results/latest.md, bench/results/latest.json')
}

main().then(() => { process.exit(0) }, (err: unknown) => {
  console.error(err)
  process.exit(1)
})
