/** What the breaker lets through: a normal call, the one probe of an open circuit, or nothing. */
export type Admission = 'call' | 'probe' | undefined

/**
 * A circuit breaker per upstream (SPEC §10): open after `threshold` failures
 * in a row, refusing at once; after `cooldownMs` one call goes through as a
 * probe, and its outcome closes or re-opens the circuit (while open, the
 * outcome of a call that left before it opened changes nothing). A few
 * fields and no timer: cockatiel and opossum do more, and allocate per call.
 */
export class CircuitBreaker {
  private failures = 0
  private openUntil = 0
  private probing = false
  open = false

  constructor (
    private readonly onChange: (open: boolean) => void,
    private readonly threshold = 5,
    private readonly cooldownMs = 5000
  ) {}

  admit (now = Date.now()): Admission {
    if (!this.open) return 'call'
    if (this.probing || now < this.openUntil) return undefined
    this.probing = true
    return 'probe'
  }

  success (admission: Admission): void {
    if (!this.open) {
      this.failures = 0
      return
    }
    if (admission !== 'probe') return
    this.probing = false
    this.open = false
    this.failures = 0
    this.onChange(false)
  }

  failure (admission: Admission, now = Date.now()): void {
    if (this.open) {
      if (admission !== 'probe') return
      // The probe failed: wait another cooldown.
      this.probing = false
      this.openUntil = now + this.cooldownMs
      return
    }
    if (++this.failures < this.threshold) return
    this.open = true
    this.openUntil = now + this.cooldownMs
    this.onChange(true)
  }
}
