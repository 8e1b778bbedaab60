import { Decoder, Encoder, PacketType, type Packet } from 'socket.io-parser'

/** What the decoder learnt of a packet's frames, attached to its arguments array (which the packet gate receives). */
export interface PacketInfo {
  /** Size of the packet's frames in bytes (exact when it matters for the limit, see frameBytes). */
  bytes: number
  /** The packet came with binary attachments: refused by the gate (packets carry JSON only). */
  binary: boolean
}

export const PACKET_INFO = Symbol('packetInfo')

/** The info the decoder attached to a packet's arguments, if any. */
export function packetInfo (args: unknown[]): PacketInfo | undefined {
  return (args as unknown[] & { [PACKET_INFO]?: PacketInfo })[PACKET_INFO]
}

interface Pending { packet: Packet, bytes: number, remaining: number }

/** UTF-8 size of a frame, computed only when its length alone cannot settle the comparison with `limit`. */
function frameBytes (text: string, limit: number): number {
  if (text.length > limit || text.length * 3 <= limit) return text.length
  return Buffer.byteLength(text, 'utf8')
}

/**
 * socket.io-parser's decoder, with each packet measured where it is decoded
 * (a size read from engine frames would belong to the last frame of a batch:
 * packets are handled a tick after decoding) and binary attachments never
 * reconstructed. Reconstruction would recurse over the data and could make a
 * few kilobytes into megabytes (every placeholder a copy of an attachment);
 * here the attachments are counted and dropped, and the packet is passed on
 * marked binary, for the gate to refuse with an answer to the client.
 */
function gatewayDecoder (maxPacketBytes: number): typeof Decoder {
  return class GatewayDecoder extends Decoder {
    private pending: Pending | undefined

    override add (obj: unknown): void {
      if (typeof obj === 'string') {
        if (this.pending !== undefined) throw new Error('got plaintext data when reconstructing a packet')
        const packet = (this as unknown as { decodeString: (s: string) => Packet }).decodeString(obj)
        const bytes = frameBytes(obj, maxPacketBytes)
        if (packet.type === PacketType.BINARY_EVENT || packet.type === PacketType.BINARY_ACK) {
          packet.type = packet.type === PacketType.BINARY_EVENT ? PacketType.EVENT : PacketType.ACK
          this.pending = { packet, bytes, remaining: packet.attachments ?? 0 }
          delete packet.attachments
          if (this.pending.remaining === 0) this.finishBinary()
          return
        }
        this.deliver(packet, { bytes, binary: false })
        return
      }
      if (obj instanceof ArrayBuffer || ArrayBuffer.isView(obj)) {
        if (this.pending === undefined) throw new Error('got binary data when not reconstructing a packet')
        this.pending.bytes += obj.byteLength
        if (--this.pending.remaining === 0) this.finishBinary()
        return
      }
      throw new Error('Unknown type')
    }

    override destroy (): void {
      this.pending = undefined
    }

    private finishBinary (): void {
      const { packet, bytes } = this.pending as Pending
      this.pending = undefined
      this.deliver(packet, { bytes, binary: true })
    }

    private deliver (packet: Packet, info: PacketInfo): void {
      if (Array.isArray(packet.data)) Object.defineProperty(packet.data, PACKET_INFO, { value: info })
      this.emitReserved('decoded', packet)
    }
  }
}

/** The Socket.IO `parser` option: socket.io-parser's encoder, the gateway's decoder. */
export function gatewayParser (maxPacketBytes: number): { Encoder: typeof Encoder, Decoder: typeof Decoder } {
  return { Encoder, Decoder: gatewayDecoder(maxPacketBytes) }
}
