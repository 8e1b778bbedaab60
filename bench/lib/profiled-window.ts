// A server under `node --cpu-prof`, loaded for one warm-up and one measured
// window, then stopped so V8 writes its profile. The window's CLOCK_MONOTONIC
// bounds let bench/lib/cpuprofile.ts keep only the samples inside it.
import { mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { startServer, type ServerHandle } from './processes.js'
import { windowStart, windowStop, type WindowStats } from './scenario.js'
import type { ServerKind } from './server.js'

export interface ProfiledWindow {
  label: string
  /** The main thread's .cpuprofile, moved out of the scratch directory. */
  file: string
  window: WindowStats
  /** Operations (tokens, handshakes, …) the load completed inside the window. */
  ops: number
  opsPerSec: number
  cpuUsPerOp: number
}

/** Starts a server that profiles itself from start to exit into `scratch` (the window is cut out later). */
export async function startProfiledServer (kind: ServerKind, label: string, scratch: string, tokens = 0): Promise<ServerHandle> {
  mkdirSync(scratch, { recursive: true })
  return await startServer(kind, { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${scratch}`, '--cpu-prof-interval=250'], tokens, label })
}

/**
 * Moves the main thread's profile of the (exited) process `pid` to `file` and
 * drops its others: tsx's loader thread writes one too (thread id ≠ 0).
 */
export function keepMainProfile (pid: number | undefined, scratch: string, file: string): void {
  const main = readdirSync(scratch).find((f) => f.endsWith('.cpuprofile') && f.includes(`.${pid}.0.`))
  if (main === undefined) throw new Error(`no main-thread profile of ${pid} in ${scratch}`)
  renameSync(join(scratch, main), file)
  for (const f of readdirSync(scratch)) if (f.includes(`.${pid}.`)) rmSync(join(scratch, f), { force: true })
}

/**
 * Warm-up, then one measured window of `drive(seconds)` (which loads the
 * server and resolves with the operations it completed), each between settles
 * so deferred work (audit rows) lands in the window that caused it. Then
 * `release` (the load generator's clean-up) and the server stop, whatever
 * failed, and the main-thread profile is kept as `file`.
 */
export async function profileWindow (options: {
  server: ServerHandle
  scratch: string
  file: string
  warmupSeconds: number
  seconds: number
  drive: (seconds: number) => Promise<number>
  release?: () => Promise<void>
}): Promise<ProfiledWindow> {
  const { server } = options
  const pid = server.child.pid
  let measured: { window: WindowStats, ops: number }
  try {
    await options.drive(options.warmupSeconds)
    await server.call('settle')
    await windowStart(server)
    const ops = await options.drive(options.seconds)
    await server.call('settle')
    measured = { window: await windowStop(server), ops }
  } finally {
    await options.release?.().catch(() => {})
    await server.stop()
  }
  keepMainProfile(pid, options.scratch, options.file)
  const { window, ops } = measured
  if (ops === 0) throw new Error(`${server.label}: no operation completed in the profiled window`)
  return { label: server.label, file: options.file, window, ops, opsPerSec: ops / (window.elapsedUs / 1e6), cpuUsPerOp: window.cpuUs / ops }
}

/**
 * Profiles B (the gateway), then A (bare Socket.IO), each started under
 * --cpu-prof only for its own window (minting `tokens` tokens) and stopped
 * after it whatever failed; `profile` stops its server (see profileWindow).
 */
export async function profilePair (scratch: string, tokens: number, profile: (server: ServerHandle) => Promise<ProfiledWindow>): Promise<{ B: ProfiledWindow, A: ProfiledWindow }> {
  // One at a time: a server idling under --cpu-prof still samples (about a tenth of a core), and
  // would take that from the other's measured window on the same CPU.
  const one = async (kind: 'gateway' | 'baseline', label: string): Promise<ProfiledWindow> => {
    const server = await startProfiledServer(kind, label, scratch, tokens)
    try {
      return await profile(server)
    } finally {
      // A no-op when profileWindow already stopped it.
      await server.stop().catch(() => {})
    }
  }
  const B = await one('gateway', 'B')
  return { B, A: await one('baseline', 'A') }
}
