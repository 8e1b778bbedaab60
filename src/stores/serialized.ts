/**
 * Runs an async task one call at a time, in the order asked: a reload that
 * read the table before a change must not land after the change's own reload
 * and put the old rows back. Each caller awaits its own run.
 */
export function serialized<A extends unknown[]> (task: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  let running: Promise<void> = Promise.resolve()
  return async (...args: A) => {
    const run = running.then(async () => { await task(...args) })
    running = run.catch(() => {})
    await run
  }
}
