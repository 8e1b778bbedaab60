// How long the calling thread was runnable but waiting for a CPU (Linux
// schedstat): on a shared machine, other processes on the benchmark's CPUs
// show up here, not in the process's own CPU time.
import { readFileSync } from 'node:fs'

/** Run-queue wait of the calling thread so far, in µs; 0 where /proc/thread-self/schedstat is absent. */
export function runQueueWaitUs (): number {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[1]) / 1000
  } catch {
    return 0
  }
}

/** CPU time and run-queue wait of this process since `from`, as shares of the elapsed wall time. */
export interface Usage { cpu: NodeJS.CpuUsage, waitUs: number, at: number }

export function usageNow (): Usage {
  return { cpu: process.cpuUsage(), waitUs: runQueueWaitUs(), at: performance.now() }
}

export function usageSince (from: Usage): { cpuShare: number, waitShare: number } {
  const cpu = process.cpuUsage(from.cpu)
  const elapsedUs = (performance.now() - from.at) * 1000
  return { cpuShare: (cpu.user + cpu.system) / elapsedUs, waitShare: (runQueueWaitUs() - from.waitUs) / elapsedUs }
}
