// The namespaces of SPEC §5. No imports (shared with the browser SDK).
export const NAMESPACES = ['/chat', '/notification', '/system', '/error'] as const
