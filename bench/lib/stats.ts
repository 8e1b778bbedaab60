// Small statistics for trials: medians, ranges and ratios against the baseline.

export function median (values: number[]): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** Nearest-rank percentile of an unsorted sample (p in 0..100). */
export function percentile (values: ArrayLike<number>, p: number): number {
  if (values.length === 0) return NaN
  const sorted = Float64Array.from(values).sort()
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]
}

export interface Summary { median: number, min: number, max: number, trials: number[] }

export function summarize (trials: number[]): Summary {
  return { median: median(trials), min: Math.min(...trials), max: Math.max(...trials), trials }
}

/** B/A of the medians, and the range of the per-trial-pair ratios (trial i of B over trial i of A). */
export function ratio (b: Summary, a: Summary): { median: number, min: number, max: number } {
  const pairs = b.trials.map((v, i) => v / a.trials[i]).filter((r) => Number.isFinite(r))
  return { median: b.median / a.median, min: Math.min(...pairs), max: Math.max(...pairs) }
}

/** Alternating order of the variants for trial `t`: A B, then B A, … so drift hits both alike. */
export function trialOrder<T> (variants: T[], t: number): T[] {
  return t % 2 === 0 ? [...variants] : [...variants].reverse()
}

export const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** Polls until `check` is true, or throws after `timeoutMs`. */
export async function waitFor (what: string, check: () => Promise<boolean>, timeoutMs = 30_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(everyMs)
  }
}

export function fmt (value: number, digits = 0): string {
  if (!Number.isFinite(value)) return 'n/a'
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}
