import type { PresenceSnapshot, PresenceStore } from './types.js'

interface Subject { connections: number, goneAt: number }

/** Presence on one instance: per room, each subject's connections (an instance that dies takes all of it along). */
export function createMemoryPresence (now: () => number = Date.now): PresenceStore {
  const rooms = new Map<string, Map<string, Subject>>()
  const keyOf = (namespace: string, room: string): string => `${namespace}\u0000${room}`

  return {
    join (namespace, room, sub) {
      const key = keyOf(namespace, room)
      let subjects = rooms.get(key)
      if (subjects === undefined) rooms.set(key, subjects = new Map())
      const subject = subjects.get(sub)
      if (subject !== undefined) {
        subject.connections++
        return false
      }
      subjects.set(sub, { connections: 1, goneAt: 0 })
      return true
    },
    leave (namespace, room, sub) {
      const subject = rooms.get(keyOf(namespace, room))?.get(sub)
      if (subject === undefined || subject.connections === 0) return false
      if (--subject.connections > 0) return false
      subject.goneAt = now()
      return true
    },
    expire (namespace, room, sub, graceMs) {
      const key = keyOf(namespace, room)
      const subjects = rooms.get(key)
      const subject = subjects?.get(sub)
      if (subjects === undefined || subject === undefined || subject.connections > 0) return -1
      const wait = subject.goneAt + graceMs - now()
      if (wait > 0) return wait
      subjects.delete(sub)
      if (subjects.size === 0) rooms.delete(key)
      return 0
    },
    members (namespace, room, max): PresenceSnapshot {
      const subjects = rooms.get(keyOf(namespace, room))
      if (subjects === undefined) return { count: 0, members: [], truncated: false }
      const members = []
      for (const [sub, { connections }] of subjects) {
        if (members.length === max) break
        members.push({ sub, connections })
      }
      return { count: subjects.size, members, truncated: subjects.size > members.length }
    },
    reap: () => {},
    close () { rooms.clear() }
  }
}
