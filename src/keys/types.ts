export const SCOPES = ['admin', 'publish', 'token:delegate'] as const
export type Scope = typeof SCOPES[number]

/** Publishes allowed per window for all of a key's sockets and HTTP publishes, cluster-wide. */
export interface KeyRateLimit { max: number, windowSeconds: number }

/** A key as stored, hashes included: never serialised as it is (see the key routes' view). */
export interface ApiKeyRecord {
  id: string
  name: string
  /** The tenant the key and its tokens' clients live in (SPEC §14); never changes. */
  tenant: string
  scopes: Scope[]
  policyId: string | null
  allowedIps: string[]
  rateLimit: KeyRateLimit | null
  maxConnections: number | null
  expiresAt: Date | null
  revokedAt: Date | null
  createdAt: Date
  lastUsedAt: Date | null
  secretHash: Buffer
  previousSecretHash: Buffer | null
  previousExpiresAt: Date | null
  /** Counts the key's rotations: the current secret's generation (the previous one's is one less). */
  secretGeneration: number
}

export interface NewKeyInput {
  name: string
  tenant?: string
  scopes?: Scope[]
  policyId?: string | null
  allowedIps?: string[]
  rateLimit?: KeyRateLimit | null
  maxConnections?: number | null
  expiresAt?: string | null
}

export type KeyPatch = Partial<Omit<NewKeyInput, 'tenant'>>

export interface Page<T> { items: T[], nextCursor: string | null }
