package inventory

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// TestLookupSpanAgreesWithLookup checks LookupSpan against Lookup on a
// history of IP reuse, overlapping leases (a new pod reported before the
// old one's deletion), label changes and an external range: at every
// probed time it answers as Lookup does, the interval contains the time,
// and Lookup gives the same answer everywhere in the interval.
func TestLookupSpanAgreesWithLookup(t *testing.T) {
	inv, _ := Open(nil)
	defer inv.Close()
	ip := "10.244.1.5"
	inv.Apply(pod("a", ip, t0, map[string]string{"app": "a"}))
	inv.Apply(pod("a", ip, t0.Add(20*time.Second), map[string]string{"app": "a", "v": "2"}))
	inv.Apply(pod("b", ip, t0.Add(50*time.Second), map[string]string{"app": "b"})) // before a's deletion
	inv.Delete("c1/pod/shop/a", t0.Add(60*time.Second))
	inv.Apply(pod("b", ip, t0.Add(70*time.Second), map[string]string{"app": "b", "v": "2"}))
	inv.Delete("c1/pod/shop/b", t0.Add(90*time.Second))
	inv.Apply(pod("c", ip, t0.Add(120*time.Second), nil))
	inv.Apply(Workload{ID: "ext/range", Kind: KindExternal, Name: "range", CIDRs: []string{"10.244.1.0/24"}, Updated: t0})
	addr := netip.MustParseAddr(ip)
	checkSpans(t, inv, addr, rand.New(rand.NewPCG(1, 2)), 2000, t0.Add(-10*time.Second), 160*time.Second)
	// The interval is tight where the answer changes.
	if _, _, from, to := inv.LookupSpan(addr, t0.Add(30*time.Second)); !from.Equal(t0.Add(20*time.Second)) || !to.Equal(t0.Add(50*time.Second)) {
		t.Errorf("a's second version: interval [%s, %s), want [20s, 50s)", from.Sub(t0), to.Sub(t0))
	}
	if w, ok, from, to := inv.LookupSpan(addr, t0.Add(100*time.Second)); !ok || w.Kind != KindExternal || !from.Equal(t0.Add(90*time.Second)) || !to.Equal(t0.Add(120*time.Second)) {
		t.Errorf("the gap: %v %v [%s, %s), want the external range over [90s, 120s)", w, ok, from.Sub(t0), to.Sub(t0))
	}
	if _, _, from, to := inv.LookupSpan(addr, t0.Add(130*time.Second)); !from.Equal(t0.Add(120*time.Second)) || !to.IsZero() {
		t.Errorf("c's open lease: [%s, %v), want [120s, unbounded)", from.Sub(t0), to)
	}
}

// checkSpans probes LookupSpan of addr at n random times in [start,
// start+span): it answers as Lookup does, its interval contains the time,
// and Lookup gives the same answer everywhere in the interval (probed
// every 250ms over the interval; an unbounded side 10s before or 50s after the probed
// range).
func checkSpans(t *testing.T, inv *Inventory, addr netip.Addr, rnd *rand.Rand, n int, start time.Time, span time.Duration) {
	t.Helper()
	name := func(w *Workload, ok bool) string {
		if !ok {
			return "-"
		}
		return fmt.Sprintf("%p", w)
	}
	for range n {
		at := start.Add(time.Duration(rnd.Int64N(int64(span/time.Millisecond))) * time.Millisecond)
		w, ok, from, to := inv.LookupSpan(addr, at)
		lw, lok := inv.Lookup(addr, at)
		if name(w, ok) != name(lw, lok) {
			t.Fatalf("%s at %s: LookupSpan %s, Lookup %s", addr, at.Sub(t0), name(w, ok), name(lw, lok))
		}
		if (!from.IsZero() && at.Before(from)) || (!to.IsZero() && !at.Before(to)) {
			t.Fatalf("%s at %s: interval [%s, %s) does not contain it", addr, at.Sub(t0), from.Sub(t0), to.Sub(t0))
		}
		lo, hi := from, to
		if lo.IsZero() {
			lo = start.Add(-10 * time.Second)
		}
		if hi.IsZero() {
			hi = start.Add(span + 50*time.Second)
		}
		for x := lo; x.Before(hi); x = x.Add(250 * time.Millisecond) {
			if xw, xok := inv.Lookup(addr, x); name(xw, xok) != name(w, ok) {
				t.Fatalf("%s at %s: interval [%s, %s), but Lookup at %s answers differently", addr, at.Sub(t0), from.Sub(t0), to.Sub(t0), x.Sub(t0))
			}
		}
		if x := hi.Add(-time.Nanosecond); !x.Before(lo) {
			if xw, xok := inv.Lookup(addr, x); name(xw, xok) != name(w, ok) {
				t.Fatalf("%s at %s: interval ends at %s, but Lookup just before answers differently", addr, at.Sub(t0), to.Sub(t0))
			}
		}
	}
}
