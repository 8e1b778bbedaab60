import { isIPv4 } from 'node:net'
import ipaddr from 'ipaddr.js'

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number]

/** Parses an address, folding IPv4-mapped IPv6 (`::ffff:1.2.3.4`) to IPv4; undefined when not an address. */
export function parseIp (ip: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  try {
    return ipaddr.process(ip)
  } catch {
    return undefined
  }
}

/**
 * The bucket a client counts in for per-IP limits and blocks: its IPv4
 * address, or its IPv6 /64 (one subscriber's usual allocation, so rotating
 * addresses inside it does not escape a limit).
 */
export function clientBucket (ip: string): string {
  // Most clients arrive as plain dotted IPv4, which is its own bucket: no parse (it was a tenth of a handshake's own work).
  if (isIPv4(ip)) return ip
  const addr = parseIp(ip)
  if (addr === undefined) return ip
  if (addr.kind() === 'ipv4') return addr.toString()
  const parts = (addr as ipaddr.IPv6).parts.slice(0, 4).map((p) => p.toString(16))
  return `${parts.join(':')}::/64`
}

/** A compiled CIDR list: checks are a loop of prefix matches, no parsing per call. */
export interface IpMatcher { (ip: string): boolean }

export function compileCidrs (cidrs: readonly string[]): IpMatcher {
  const ranges: Range[] = cidrs.map((cidr) => {
    if (cidr.includes('/')) {
      const [addr, bits] = ipaddr.parseCIDR(cidr)
      return [addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress() ? (addr as ipaddr.IPv6).toIPv4Address() : addr, addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress() ? bits - 96 : bits]
    }
    const addr = ipaddr.process(cidr)
    return [addr, addr.kind() === 'ipv4' ? 32 : 128]
  })
  return (ip) => {
    const addr = parseIp(ip)
    if (addr === undefined) return false
    for (const [range, bits] of ranges) {
      if (range.kind() === addr.kind() && addr.match(range, bits)) return true
    }
    return false
  }
}

/**
 * True when `value` is an IPv4/IPv6 address or CIDR range. ipaddr.js alone
 * also reads `10`, `127.1` or `0x7f.1` as IPv4, so an allowlist entry `10`
 * would mean 0.0.0.10: IPv4 must be four decimal parts.
 */
export function isCidr (value: string): boolean {
  const [address, bits, ...rest] = value.split('/')
  if (rest.length > 0 || !(ipaddr.IPv4.isValidFourPartDecimal(address) || ipaddr.IPv6.isValid(address))) return false
  if (bits === undefined) return true
  if (!/^[0-9]{1,3}$/.test(bits)) return false
  try {
    ipaddr.parseCIDR(value)
    return true
  } catch {
    return false
  }
}
