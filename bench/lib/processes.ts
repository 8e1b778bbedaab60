// Spawns the benchmark's processes: servers pinned to CPU 0, load generators
// to CPU 1 (when taskset exists), each with an IPC channel for bench/lib/rpc.ts.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { closeSync, cpSync, mkdirSync, openSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { call } from './rpc.js'
import type { ServerKind } from './server.js'

export const SERVER_CPU = '0'
export const LOAD_CPU = '1'

const hasTaskset = spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0
export const pinning = hasTaskset ? `taskset: servers on CPU ${SERVER_CPU}, load generators on CPU ${LOAD_CPU}` : 'not pinned (no taskset)'

const live = new Set<ChildProcess>()
process.on('exit', () => { for (const child of live) child.kill('SIGKILL') })

const BENCH_DIR = fileURLToPath(new URL('../', import.meta.url))
const BUILD_DIR = fileURLToPath(new URL('../../node_modules/.cache/spark-bench-build/', import.meta.url))
/** Each server's stdout (the gateway's pino lines), one file per variant, rewritten every run. */
export const LOG_DIR = fileURLToPath(new URL('../../node_modules/.cache/spark-bench-logs/', import.meta.url))

/**
 * How the servers under test run: compiled to JavaScript like `npm start`
 * (default), or from source under tsx like `make dev` (BENCH_FROM_SOURCE=1).
 * tsx compiles with esbuild's keepNames, which gives every named closure its
 * own property dictionary (~0.3 KB each, several per connection in the
 * gateway): a dev-mode cost that production does not pay.
 */
export const fromSource = process.env.BENCH_FROM_SOURCE === '1'

/** Compiles src/ and the server wrapper to node_modules/.cache/spark-bench-build (tsc, no type check), with the migrations beside them. */
export function buildServers (): void {
  if (fromSource) return
  rmSync(BUILD_DIR, { recursive: true, force: true })
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  const res = spawnSync(process.execPath, [tsc, '-p', `${BENCH_DIR}tsconfig.build.json`], { encoding: 'utf8' })
  if (res.status !== 0) throw new Error(`tsc -p bench/tsconfig.build.json failed:\n${res.stdout}${res.stderr}`)
  // src/plugins/db.ts reads ../../sql/ relative to itself.
  cpSync(fileURLToPath(new URL('../../sql/', import.meta.url)), `${BUILD_DIR}sql`, { recursive: true })
}

/**
 * Runs a script in its own process: TypeScript under tsx, or compiled
 * JavaScript as it is. It starts unpinned (the gateway's start-up compiles
 * PGlite's WebAssembly, slow on one shared core) and is pinned, every thread
 * of it, by `pin` once it is ready.
 */
export function spawnTs (file: string, args: string[], options: { nodeArgs?: string[], ipc?: boolean, stdout?: number } = {}): ChildProcess {
  const argv = [...(options.nodeArgs ?? []), ...(file.endsWith('.ts') ? ['--import', 'tsx'] : []), file, ...args]
  // Children's stdout goes to our stderr (stdout is kept for the report table), or to a file of their own.
  const child = spawn(process.execPath, argv, { stdio: ['ignore', options.stdout ?? process.stderr, 'inherit', ...(options.ipc === false ? [] : ['ipc' as const])] })
  live.add(child)
  child.on('exit', () => { live.delete(child) })
  return child
}

/** Pins every thread of a process to one CPU (no-op without taskset). */
export function pin (child: ChildProcess, cpu: string): void {
  if (!hasTaskset || child.pid === undefined) return
  const res = spawnSync('taskset', ['-a', '-p', '-c', cpu, String(child.pid)], { stdio: 'ignore' })
  if (res.status !== 0) throw new Error(`taskset could not pin ${child.pid} to CPU ${cpu}`)
}

async function ready<T> (child: ChildProcess, what: string): Promise<T> {
  return await new Promise<T>((resolve, reject) => {
    const onMessage = (message: { ready?: boolean }): void => {
      if (message?.ready !== true) return
      child.off('message', onMessage)
      child.off('exit', onExit)
      resolve(message as T)
    }
    const onExit = (code: number | null): void => { reject(new Error(`${what} exited (${code}) before it was ready`)) }
    child.on('message', onMessage)
    child.once('exit', onExit)
  })
}

export interface ServerHandle {
  kind: ServerKind
  label: string
  url: string
  /** Access tokens minted before any measurement, one per subject `user-<i>` (null for the baselines: no auth). */
  tokens: Array<string | null>
  child: ChildProcess
  call: <T = unknown>(cmd: string, args?: unknown, timeoutMs?: number) => Promise<T>
  stop: () => Promise<void>
}

export const SERVER_LABELS: Record<ServerKind, string> = {
  baseline: 'A',
  'baseline-plain': 'A0',
  'baseline-redis': 'Ar',
  gateway: 'B',
  'gateway-embedded': 'Be',
  'gateway-redis': 'Br',
  classic: 'C',
  'classic-keyobject': 'Ck',
  backend: 'D'
}

const KIND_OF_LABEL = new Map(Object.entries(SERVER_LABELS).map(([kind, label]) => [label, kind as ServerKind]))

/** The server process behind a variant label (A, B, C, …). */
export function kindOf (label: string): ServerKind {
  const kind = KIND_OF_LABEL.get(label)
  if (kind === undefined) throw new Error(`no server variant ${label}`)
  return kind
}

/**
 * The run's servers, started on first use (each minting `tokens` tokens) and
 * kept until `stopAll`. A variant that fails to start fails every scenario
 * that asks for it, not the run.
 */
export function serverPool (tokens: number): { get: (label: string, config?: Record<string, string>) => Promise<ServerHandle>, stopAll: () => Promise<void> } {
  const started = new Map<string, Promise<ServerHandle>>()
  return {
    get: async (label, config) => {
      const id = config === undefined ? label : `${label} ${JSON.stringify(config)}`
      let server = started.get(id)
      if (server === undefined) {
        server = startServer(kindOf(label), { tokens, label, ...(config !== undefined ? { config } : {}) })
        started.set(id, server)
      }
      return await server
    },
    stopAll: async () => {
      for (const server of started.values()) await server.then(async (s) => { await s.stop() }, () => {}).catch(() => {})
      started.clear()
    }
  }
}

/**
 * Starts one server under test (with --expose-gc; `nodeArgs` adds e.g.
 * --cpu-prof). Tried twice: on a busy machine the gateway's embedded database
 * can miss Fastify's plugin timeout once.
 */
export async function startServer (kind: ServerKind, options: { nodeArgs?: string[], tokens?: number, label?: string, config?: Record<string, string> } = {}): Promise<ServerHandle> {
  let server: ServerHandle
  const once = async (): Promise<ServerHandle> => await startServerOnce(kind, options.nodeArgs ?? [], options.label, options.config)
  try {
    server = await once()
  } catch (err) {
    process.stderr.write(`[bench] ${String(err)}; starting it again\n`)
    server = await once()
  }
  server.tokens = await server.call<Array<string | null>>('mint', { subs: Array.from({ length: options.tokens ?? 0 }, (_, i) => `user-${i}`) })
  return server
}

/** The classic reference stack and the routing backend are server files of their own; every other kind is bench/lib/server.ts. */
function serverScript (kind: ServerKind): string {
  const file = kind === 'classic' || kind === 'classic-keyobject' ? 'reference/server' : kind === 'backend' ? 'lib/backend' : 'lib/server'
  return fromSource ? `${BENCH_DIR}${file}.ts` : `${BUILD_DIR}bench/${file}.js`
}

let serversStarted = 0

async function startServerOnce (kind: ServerKind, nodeArgs: string[], label: string | undefined, config: Record<string, string> | undefined): Promise<ServerHandle> {
  const script = serverScript(kind)
  // The gateway logs at its default level, info: one line per authentication attempt (SPEC §7), written
  // to a file as a deployment would (a terminal would slow it and flood the report).
  mkdirSync(LOG_DIR, { recursive: true })
  const logFile = openSync(`${LOG_DIR}${label ?? SERVER_LABELS[kind]}-${kind}-${++serversStarted}.log`, 'w')
  const child = spawnTs(script, [kind, ...(config !== undefined ? [JSON.stringify(config)] : [])], { nodeArgs: ['--expose-gc', ...nodeArgs], stdout: logFile })
  closeSync(logFile)
  const { port } = await ready<{ port: number }>(child, `server ${kind}`)
  pin(child, SERVER_CPU)
  return {
    kind,
    label: label ?? SERVER_LABELS[kind],
    url: `http://127.0.0.1:${port}`,
    tokens: [],
    child,
    call: async <T>(cmd: string, args?: unknown, timeoutMs?: number) => await call<T>(child, cmd, args, timeoutMs),
    stop: async () => { await stopChild(child) }
  }
}

export interface LoadHandle {
  child: ChildProcess
  call: <T = unknown>(cmd: string, args?: unknown, timeoutMs?: number) => Promise<T>
  stop: () => Promise<void>
}

/** Starts a scenario file as a load generator (its `runLoadGenerator` side), pinned away from the servers. */
export async function startLoad (scenarioFile: string): Promise<LoadHandle> {
  // BENCH_LOAD_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/load") profiles the load generators themselves.
  const nodeArgs = (process.env.BENCH_LOAD_NODE_ARGS ?? '').split(' ').filter((a) => a.length > 0)
  const child = spawnTs(scenarioFile, ['--load-generator'], { nodeArgs })
  await ready(child, `load generator ${scenarioFile}`)
  pin(child, LOAD_CPU)
  return {
    child,
    call: async <T>(cmd: string, args?: unknown, timeoutMs?: number) => await call<T>(child, cmd, args, timeoutMs),
    stop: async () => { await stopChild(child) }
  }
}

async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  await call(child, 'close', {}, 15_000).catch(() => { child.kill('SIGTERM') })
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
  await exited
  clearTimeout(timer)
}
