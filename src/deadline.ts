/** `work`'s result, or a rejection once `ms` have passed without one (the work itself is left to finish). */
export async function withDeadline<T> (work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([work, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms) })])
  } finally {
    clearTimeout(timer)
  }
}
