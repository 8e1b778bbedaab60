import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { rmSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { request as httpRequest, Agent } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import parsePrometheusTextFormat from 'parse-prometheus-text-format'

type Tap = { teardown: (fn: () => unknown) => void }

const run = promisify(execFile)

/** The repository root: where `src/server.ts` and `scripts/test-servers.sh` live. */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** Only what a gateway process needs from the test runner's environment (never tap's NODE_OPTIONS or loaders). */
function baseEnv (): Record<string, string> {
  const env: Record<string, string> = {}
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ']) {
    const value = process.env[name]
    if (value !== undefined) env[name] = value
  }
  return env
}

// ------------------------------------------------------------ private servers

export interface PrivateServers {
  /** TEST_DATABASE_URL, TEST_REDIS_URL and the rest of the state file. */
  state: Record<string, string>
  databaseUrl: string
  redisUrl: string
  /** Runs `scripts/test-servers.sh <command>` on this set (pg-stop, pg-start, redis-stop, redis-start). */
  control: (command: 'pg-stop' | 'pg-start' | 'redis-stop' | 'redis-start') => Promise<void>
  stop: () => Promise<void>
}

/**
 * A PostgreSQL and a Redis of this test alone (scripts/test-servers.sh with
 * its own state file), so stopping them never touches the shared servers of
 * `make test`. Stopped when the test ends, unless `stop` ran first.
 */
export async function startPrivateServers (t: Tap): Promise<PrivateServers> {
  const dir = await mkdtemp(join(tmpdir(), 'spark-ops-'))
  const stateFile = join(dir, 'servers.env')
  const script = join(REPO_ROOT, 'scripts/test-servers.sh')
  const env = { ...process.env, TEST_SERVERS_STATE: stateFile }
  const control = async (command: string): Promise<void> => { await run('bash', [script, command], { env, cwd: REPO_ROOT }) }
  let stopped = false
  // Last resort when the test process ends without its teardown (a crash): servers never outlive it.
  const onExit = (): void => {
    try { execFileSync('bash', [script, 'stop'], { env, cwd: REPO_ROOT, stdio: 'ignore' }) } catch {}
    rmSync(dir, { recursive: true, force: true })
  }
  process.once('exit', onExit)
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    process.off('exit', onExit)
    await control('stop').catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
  t.teardown(stop)
  await control('start')
  const state = Object.fromEntries((await readFile(stateFile, 'utf8')).trim().split('\n').map((line) => {
    const at = line.indexOf('=')
    return [line.slice(0, at), line.slice(at + 1)]
  }))
  return { state, databaseUrl: state.TEST_DATABASE_URL, redisUrl: state.TEST_REDIS_URL, control, stop }
}

// ------------------------------------------------------------ a real gateway process

export interface GatewayProcess {
  child: ChildProcess
  port: number
  /** Resolves when the process has exited: its code, signal, and when (Date.now()). */
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null, at: number }>
  stdout: () => string
  stderr: () => string
}

/** Runs `node --import tsx src/server.ts` with exactly `env` (plus PATH and HOME); killed when the test ends. */
export function spawnServer (t: Tap, env: Record<string, string>): Omit<GatewayProcess, 'port'> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd: REPO_ROOT, env: { ...baseEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { err += chunk })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null, at: number }>((resolve) => {
    child.once('exit', (code, signal) => { resolve({ code, signal, at: Date.now() }) })
  })
  // Also when the test process ends without its teardown: a gateway never outlives its test.
  const kill = (): void => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') }
  process.once('exit', kill)
  t.teardown(async () => {
    process.off('exit', kill)
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  return { child, exited, stdout: () => out, stderr: () => err }
}

const LISTENING = /Spark Gateway listening on https?:\/\/[^\s:]+:(\d+)\n/

// A guard against a hang only: a start under tsx took 15 s with two at once on a loaded 2-core machine.
const START_WITHIN_MS = 120_000

/** Spawns the server and waits for its `Spark Gateway listening on …:PORT` line. */
export async function startServer (t: Tap, env: Record<string, string>, timeoutMs = START_WITHIN_MS): Promise<GatewayProcess> {
  const proc = spawnServer(t, env)
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => { done(new Error(`no listening line within ${timeoutMs} ms; stderr: ${proc.stderr()}`)) }, timeoutMs)
    const onData = (): void => {
      const match = LISTENING.exec(proc.stdout())
      if (match !== null) done(undefined, Number(match[1]))
    }
    const onExit = (): void => { done(new Error(`server exited before listening; stderr: ${proc.stderr()}`)) }
    function done (err?: Error, value?: number): void {
      clearTimeout(timer)
      proc.child.stdout?.off('data', onData)
      proc.child.off('exit', onExit)
      if (err !== undefined) reject(err)
      else resolve(value as number)
    }
    proc.child.stdout?.on('data', onData)
    proc.child.once('exit', onExit)
  })
  return { ...proc, port }
}

/** Runs the server with an environment that must not start: its exit code and stderr lines. */
export async function failedStart (t: Tap, env: Record<string, string>, timeoutMs = START_WITHIN_MS): Promise<{ code: number | null, lines: string[] }> {
  const proc = spawnServer(t, env)
  const timer = setTimeout(() => { proc.child.kill('SIGKILL') }, timeoutMs)
  const { code } = await proc.exited
  clearTimeout(timer)
  return { code, lines: proc.stderr().split('\n').filter((line) => line.length > 0) }
}

// ------------------------------------------------------------ timing

/** Milliseconds `work` took, with its result. */
export async function timed<T> (work: () => Promise<T>): Promise<{ ms: number, value: T }> {
  const start = performance.now()
  const value = await work()
  return { ms: Math.round(performance.now() - start), value }
}

/**
 * Polls `check` every `intervalMs` until it returns true; resolves with the
 * milliseconds it took, rejects after `timeoutMs` with the last failure.
 */
export async function waitUntil (check: () => Promise<boolean> | boolean, timeoutMs: number, intervalMs = 100): Promise<number> {
  const start = performance.now()
  let last: unknown
  for (;;) {
    try {
      if (await check()) return Math.round(performance.now() - start)
    } catch (err) {
      last = err
    }
    if (performance.now() - start > timeoutMs) throw new Error(`not true within ${timeoutMs} ms${last !== undefined ? `: ${String(last)}` : ''}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

// ------------------------------------------------------------ HTTP load

export interface HttpResult { status: number, body: string }

/** One request over a shared agent; rejects on a network error. */
export async function httpJson (agent: Agent, port: number, method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<HttpResult> {
  const payload = body === undefined ? undefined : JSON.stringify(body)
  return await new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      method,
      path,
      agent,
      headers: { ...headers, ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) } : {}) }
    }, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (chunk: string) => { text += chunk }).on('end', () => { resolve({ status: res.statusCode ?? 0, body: text }) })
    })
    req.on('error', reject)
    req.end(payload)
  })
}

/** Runs `count` jobs with at most `concurrency` in flight; returns each job's result or error, in order. */
export async function runPool<T> (count: number, concurrency: number, job: (i: number) => Promise<T>): Promise<Array<{ ok: true, value: T } | { ok: false, error: unknown }>> {
  const results = new Array<{ ok: true, value: T } | { ok: false, error: unknown }>(count)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, async () => {
    while (next < count) {
      const i = next++
      try {
        results[i] = { ok: true, value: await job(i) }
      } catch (error) {
        results[i] = { ok: false, error }
      }
    }
  }))
  return results
}

// ------------------------------------------------------------ Prometheus exposition

export interface PromSample { name: string, labels: Record<string, string>, value: number }
export interface PromFamily { name: string, type: string, samples: PromSample[] }

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/
const LABEL_PAIR = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])

function parseNumber (text: string): number {
  if (text === '+Inf') return Infinity
  if (text === '-Inf') return -Infinity
  if (text === 'NaN') return NaN
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) throw new Error(`not a number: ${text}`)
  return Number(text)
}

/**
 * The text exposition format checked line by line, stricter than the parser
 * package (which accepts any name and any value text): metric and label
 * names, escapes, numbers, one TYPE per family before its samples, samples
 * of a family together, no series twice. Throws on the first bad line.
 */
export function parseExposition (text: string): Map<string, PromFamily> {
  // The package must read it too; it throws on a malformed line.
  parsePrometheusTextFormat(text)
  if (!text.endsWith('\n')) throw new Error('exposition does not end with a newline')
  const families = new Map<string, PromFamily>()
  const closed = new Set<string>()
  const seen = new Set<string>()
  let current: PromFamily | undefined
  const familyOf = (sample: string): PromFamily | undefined => {
    if (current === undefined) return undefined
    const suffixes = current.type === 'histogram' ? ['', '_bucket', '_sum', '_count'] : current.type === 'summary' ? ['', '_sum', '_count'] : ['']
    return suffixes.some((s) => current!.name + s === sample) ? current : undefined
  }
  const open = (name: string): PromFamily => {
    if (current?.name === name) return current
    if (current !== undefined) closed.add(current.name)
    if (closed.has(name) || families.has(name)) throw new Error(`family ${name} appears twice`)
    current = { name, type: 'untyped', samples: [] }
    families.set(name, current)
    return current
  }
  for (const [i, line] of text.split('\n').entries()) {
    const where = `line ${i + 1}: ${line}`
    if (line === '') continue
    const meta = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line)
    if (meta !== null) {
      const [, kind, name, rest = ''] = meta
      if (!METRIC_NAME.test(name)) throw new Error(`bad metric name, ${where}`)
      const family = open(name)
      if (kind === 'TYPE') {
        if (!TYPES.has(rest)) throw new Error(`bad type, ${where}`)
        if (family.samples.length > 0) throw new Error(`TYPE after samples, ${where}`)
        family.type = rest
      } else if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) throw new Error(`bad HELP escape, ${where}`)
      continue
    }
    if (line.startsWith('#')) continue
    const sample = SAMPLE.exec(line)
    if (sample === null) throw new Error(`bad sample, ${where}`)
    const [, name, , labelText = '', valueText] = sample
    const family = familyOf(name) ?? open(name)
    const labels: Record<string, string> = {}
    let rest = labelText
    while (rest.length > 0) {
      const pair = LABEL_PAIR.exec(rest)
      if (pair === null) throw new Error(`bad labels, ${where}`)
      if (!LABEL_NAME.test(pair[1]) || pair[1] in labels) throw new Error(`bad or repeated label ${pair[1]}, ${where}`)
      labels[pair[1]] = pair[2].replace(/\\(.)/g, (_m, c: string) => c === 'n' ? '\n' : c)
      rest = rest.slice(pair[0].length)
    }
    const series = `${name}{${Object.keys(labels).sort().map((k) => `${k}=${JSON.stringify(labels[k])}`).join(',')}}`
    if (seen.has(series)) throw new Error(`series repeated, ${where}`)
    seen.add(series)
    family.samples.push({ name, labels, value: parseNumber(valueText) })
  }
  return families
}

/** The samples named `sample` (default: the family's own name) of a family whose labels include `match`. */
export function samplesOf (families: Map<string, PromFamily>, family: string, match: Record<string, string> = {}, sample = family): PromSample[] {
  return (families.get(family)?.samples ?? []).filter((s) => s.name === sample && Object.entries(match).every(([k, v]) => s.labels[k] === v))
}

// ------------------------------------------------------------ TLS

/** A self-signed P-256 certificate for localhost and 127.0.0.1, valid one day, in a temp dir removed after the test. */
export async function selfSignedCert (t: Tap): Promise<{ dir: string, certFile: string, keyFile: string, cert: Buffer }> {
  const dir = await mkdtemp(join(tmpdir(), 'spark-tls-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const certFile = join(dir, 'cert.pem')
  const keyFile = join(dir, 'key.pem')
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-days', '1',
    '-keyout', keyFile, '-out', certFile])
  return { dir, certFile, keyFile, cert: await readFile(certFile) }
}
