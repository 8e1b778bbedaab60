// What the servers compared with the gateway copy of it, in a module that starts
// no server (bench/lib/server.ts and bench/reference/server.ts both run on import).
/** The bench gateway's ADMIN_API_KEY (the routing scenario creates its routes through the admin API with it). */
export const ADMIN_KEY = 'bench-admin-key-0123456789abcdefghijklmnopqrstuvwxyz'
/** The bench's JWT secret, and the issuer, audience and lifetime the gateway defaults to (src/config.ts). */
export const JWT_SECRET = 'bench-jwt-secret-0123456789abcdefghijklmnopqrstuvwxyz'
export const ISSUER = 'spark-gateway'
export const AUDIENCE = 'spark-gateway'
export const TOKEN_TTL_SECONDS = 900

const SOCKET_MAX_PAYLOAD = 65_536

/**
 * The options of src/plugins/io.ts that shape the websocket path: the path,
 * connection-state recovery (every broadcast is kept for replay) and the
 * payload ceiling. Its CORS middleware and shutdown notice are the gateway's
 * own and stay out of the servers it is compared with.
 */
export const GATEWAY_IO_OPTIONS = {
  path: '/socket.io',
  serveClient: false,
  maxHttpBufferSize: Math.max(4 * SOCKET_MAX_PAYLOAD, 1_000_000),
  connectionStateRecovery: { maxDisconnectionDuration: 2 * 60_000, skipMiddlewares: false }
}
