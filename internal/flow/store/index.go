package store

import (
	"hash/maphash"
	"unsafe"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
)

// index maps hashes of dictionary entries to their IDs: open addressing,
// linear probing, pointer-free (the GC does not scan it). A slot holds the
// upper 32 bits of the entry's hash (which also place it) and its ID + 1;
// 0 is an empty slot. Equality is the caller's: lookups yield the
// candidates whose hash bits match.
type index struct {
	slots []uint64
	n     int
}

func slotTag(h uint64) uint32 { return uint32(h >> 32) }

// probe returns the first slot position for h.
func (x *index) probe(h uint64) int { return int(slotTag(h)) & (len(x.slots) - 1) }

// add records id under h (not checking for duplicates).
func (x *index) add(h uint64, id uint32) {
	if (x.n+1)*2 > len(x.slots) {
		x.grow()
	}
	x.put(slotTag(h), id)
	x.n++
}

func (x *index) put(tag, id uint32) {
	mask := len(x.slots) - 1
	for i := int(tag) & mask; ; i = (i + 1) & mask {
		if x.slots[i] == 0 {
			x.slots[i] = uint64(tag)<<32 | uint64(id+1)
			return
		}
	}
}

func (x *index) grow() {
	old := x.slots
	x.slots = make([]uint64, max(1024, 2*len(old)))
	for _, s := range old {
		if s != 0 {
			x.put(uint32(s>>32), uint32(s)-1)
		}
	}
}

func (x *index) reset() { clear(x.slots); x.n = 0 }

// find returns the ID of the entry with hash h for which eq holds.
func (x *index) find(h uint64, eq func(id uint32) bool) (uint32, bool) {
	if len(x.slots) == 0 {
		return 0, false
	}
	tag := slotTag(h)
	mask := len(x.slots) - 1
	for i := int(tag) & mask; ; i = (i + 1) & mask {
		s := x.slots[i]
		if s == 0 {
			return 0, false
		}
		if uint32(s>>32) == tag && eq(uint32(s)-1) {
			return uint32(s) - 1, true
		}
	}
}

// pairIndex is the index of endpoint pairs, with the pair in the slot (one
// memory access per look-up).
type pairIndex struct {
	slots []pairSlot
	n     int
}

type pairSlot struct {
	p  pair
	id uint32 // ID + 1; 0 is empty
}

func pairHash(p pair) uint64 {
	h := (uint64(p.src)<<32 | uint64(p.dst)) * 0x9E3779B97F4A7C15
	h ^= (uint64(p.proto)<<16 | uint64(p.dport)) * 0xC2B2AE3D27D4EB4F
	h ^= h >> 29
	h *= 0xBF58476D1CE4E5B9
	return h ^ h>>32
}

func (x *pairIndex) find(p pair) (uint32, bool) {
	if len(x.slots) == 0 {
		return 0, false
	}
	mask := len(x.slots) - 1
	for i := int(pairHash(p)) & mask; ; i = (i + 1) & mask {
		s := &x.slots[i]
		if s.id == 0 {
			return 0, false
		}
		if s.p == p {
			return s.id - 1, true
		}
	}
}

func (x *pairIndex) add(p pair, id uint32) {
	if (x.n+1)*2 > len(x.slots) {
		old := x.slots
		x.slots = make([]pairSlot, max(1024, 2*len(old)))
		for _, s := range old {
			if s.id != 0 {
				x.put(s)
			}
		}
	}
	x.put(pairSlot{p, id + 1})
	x.n++
}

func (x *pairIndex) put(s pairSlot) {
	mask := len(x.slots) - 1
	for i := int(pairHash(s.p)) & mask; ; i = (i + 1) & mask {
		if x.slots[i].id == 0 {
			x.slots[i] = s
			return
		}
	}
}

func (x *pairIndex) reset() { clear(x.slots); x.n = 0 }

// hashSeed is fixed per process: the indexes are rebuilt at every open.
var hashSeed = maphash.MakeSeed()

// endpointHash hashes e's contents without its port (what endpointEqual
// compares). Labels are combined independently of order.
func endpointHash(e *flow.Endpoint) uint64 {
	var h maphash.Hash
	h.SetSeed(hashSeed)
	for _, v := range [...]string{e.IP, e.Workload, e.Kind, e.Name, e.Namespace, e.Service, e.Node} {
		h.WriteString(v)
		h.WriteByte(0)
	}
	if e.Owner != nil {
		h.WriteByte(1)
		h.WriteString(e.Owner.Kind)
		h.WriteByte(0)
		h.WriteString(e.Owner.Name)
		h.WriteByte(0)
	}
	var labels uint64
	for k, v := range e.Labels {
		x := maphash.String(hashSeed, k)*0x9E3779B97F4A7C15 ^ maphash.String(hashSeed, v)
		labels += x ^ x>>31
	}
	return h.Sum64() ^ labels*0xC2B2AE3D27D4EB4F
}

// endpointEqual reports whether a and b are the same dictionary endpoint
// (everything but the port).
func endpointEqual(a, b *flow.Endpoint) bool {
	if a.IP != b.IP || a.Workload != b.Workload || a.Kind != b.Kind || a.Name != b.Name ||
		a.Namespace != b.Namespace || a.Service != b.Service || a.Node != b.Node {
		return false
	}
	if (a.Owner == nil) != (b.Owner == nil) || a.Owner != nil && *a.Owner != *b.Owner {
		return false
	}
	if len(a.Labels) != len(b.Labels) {
		return false
	}
	for k, v := range a.Labels {
		if w, ok := b.Labels[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// pointsHash hashes each string on its own (one call each, no buffering:
// half the cost of a maphash.Hash fed field by field) and mixes them in
// order.
func pointsHash(ps []flow.ObservationPoint) uint64 {
	h := uint64(len(ps))
	for i := range ps {
		p := &ps[i]
		for _, v := range [...]string{p.Node, p.Interface, p.Kind, p.Pod} {
			h = (h<<7 | h>>57) ^ maphash.String(hashSeed, v)
			h *= 0x9E3779B97F4A7C15
		}
	}
	return h ^ h>>32
}

func pointsEqual(a, b []flow.ObservationPoint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// identCache finds the dictionary endpoint of a flow's endpoint by
// identity: an endpoint is the same as a known one when its IP, workload
// ID, service, labels map and owner are — the workload ID names kind,
// namespace and name, and a new version of a workload comes with a new
// labels map (flow.Resolver). The strings are compared by content (equal
// strings are usually the very same memory, which is cheap), the map and
// owner by address. Entries keep the map alive, so its address is not
// reused by another map. Sets of 4 entries are chosen by the labels map's
// address (endpoints without labels: by IP), so a hit touches neither the
// map nor, usually, the strings' bytes.
type identCache struct {
	sets [identSets]identSet
}

const identSets = 4096

type identSet struct {
	// tags hold hash bits of the entries, so a look-up reads only the
	// entry that may match.
	tags [4]uint32
	next uint8
	e    [4]identEntry
}

type identEntry struct {
	ip, workload, service string
	labels                uintptr
	keep                  map[string]string
	owner                 *inventory.Owner
	id                    uint32 // ID + 1; 0 is empty
}

// identOK reports whether e's identity names it: its workload ID names its
// kind, name, namespace and node, or it has none of them.
func identOK(e *flow.Endpoint) bool {
	return e.Workload != "" || e.Kind == "" && e.Name == "" && e.Namespace == "" && e.Node == ""
}

func mapAddr(m map[string]string) uintptr { return *(*uintptr)(unsafe.Pointer(&m)) }

// set returns the set of e and the tag of e in it.
func (c *identCache) set(e *flow.Endpoint) (*identSet, uint32) {
	h := uint64(mapAddr(e.Labels))
	if h == 0 {
		h = maphash.String(hashSeed, e.IP)
	}
	h ^= uint64(uintptr(unsafe.Pointer(e.Owner))) >> 4
	h *= 0x9E3779B97F4A7C15
	return &c.sets[h>>52], uint32(h) | 1
}

func (s *identSet) find(tag uint32, e *flow.Endpoint) (uint32, bool) {
	for i, t := range s.tags {
		if t != tag {
			continue
		}
		x := &s.e[i]
		if x.labels == mapAddr(e.Labels) && x.owner == e.Owner && x.ip == e.IP && x.workload == e.Workload && x.service == e.Service {
			return x.id - 1, true
		}
	}
	return 0, false
}

func (s *identSet) add(tag uint32, e *flow.Endpoint, id uint32) {
	i := s.next % 4
	s.tags[i] = tag
	s.e[i] = identEntry{ip: e.IP, workload: e.Workload, service: e.Service, labels: mapAddr(e.Labels), keep: e.Labels, owner: e.Owner, id: id + 1}
	s.next++
}
