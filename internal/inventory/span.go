package inventory

import (
	"net/netip"
	"sort"
	"time"
)

// LookupSpan is Lookup with the interval [from, to) around t over which
// its answer stays the same (the same workload version, or the same
// absence): the intersection of the lease, the version's validity and the
// gaps between the address's other leases. A zero from or to is unbounded;
// an open lease or a latest version is unbounded above as the inventory
// stands now (a version applied later may end it). A caller resolving many
// flows can answer every time in the interval without another lookup.
func (inv *Inventory) LookupSpan(ip netip.Addr, t time.Time) (w *Workload, ok bool, from, to time.Time) {
	ip = ip.Unmap()
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	lower := func(at time.Time) {
		if from.IsZero() || at.After(from) {
			from = at
		}
	}
	upper := func(at time.Time) {
		if to.IsZero() || at.Before(to) {
			to = at
		}
	}
	// The workloads' leases first, then (in the gap between them around
	// t) the nodes' bridge addresses, as Lookup asks them.
	for _, idx := range [...]map[netip.Addr][]*lease{inv.byIP, inv.bridges} {
		if l := spanLease(idx[ip], t, lower, upper); l != nil {
			lower(l.From)
			if !l.To.IsZero() {
				upper(l.To)
			}
			vs := l.inc.versions
			k := max(sort.Search(len(vs), func(i int) bool { return vs[i].Updated.After(t) })-1, 0)
			if k > 0 {
				lower(vs[k].Updated)
			}
			if k+1 < len(vs) {
				upper(vs[k+1].Updated)
			}
			return vs[k], true, from, to
		}
	}
	// No lease: the user-defined external ranges, which do not depend on
	// t, answer the whole gap.
	w, ok = inv.external(ip)
	return w, ok, from, to
}

// spanLease returns the lease of ls Lookup finds at t (nil: none), and
// bounds the interval by the leases it would find first (the later ones)
// that do not cover t: those starting after t from above, those ended by
// t from below.
func spanLease(ls []*lease, t time.Time, lower, upper func(time.Time)) *lease {
	for i := len(ls) - 1; i >= 0; i-- {
		l := ls[i]
		if l.covers(t) {
			return l
		}
		if l.From.After(t) {
			upper(l.From)
		} else {
			lower(l.To)
		}
	}
	return nil
}

// external is the most specific user-defined external range containing
// ip; the caller holds mu.
func (inv *Inventory) external(ip netip.Addr) (*Workload, bool) {
	var best *Workload
	bestBits := -1
	for _, inc := range inv.externals {
		w := inc.latest()
		for _, c := range w.CIDRs {
			p, err := netip.ParsePrefix(c)
			if err == nil && p.Contains(ip) && p.Bits() > bestBits {
				best, bestBits = w, p.Bits()
			}
		}
	}
	return best, best != nil
}
