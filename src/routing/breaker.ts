/**
 * A circuit breaker per upstream (SPEC §10): open after `threshold` failures
 * in a row, refusing at once; after `cooldownMs` one call goes through as a
 * probe, and its outcome closes or re-opens the circuit. A few fields and no
 * timer: cockatiel and opossum do more (and allocate per call) than this needs.
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

  /** Whether a call may go out now; when open and cooled down, the caller's call is the probe. */
  admit (now = Date.now()): boolean {
    if (!this.open) return true
    if (this.probing || now < this.openUntil) return false
    this.probing = true
    return true
  }

  success (): void {
    this.failures = 0
    this.probing = false
    if (!this.open) return
    this.open = false
    this.onChange(false)
  }

  failure (now = Date.now()): void {
    if (this.open) {
      // The probe failed (or a call that left before the circuit opened): wait another cooldown.
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
