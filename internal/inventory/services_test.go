package inventory

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serviceChurn applies three hours of service churn from t0 in two
// clusters: services created with and without node ports, their endpoints
// changing (pod addresses, a node's address, ports listed or only target
// ports), deleted, recreated under the same name, replaced by a new UID
// without a deletion, their cluster IPs reused by other services; pods and
// nodes coming and going on the same addresses. It returns the minutes it
// covered.
func serviceChurn(inv *Inventory, seed uint64) time.Duration {
	rng := rand.New(rand.NewPCG(seed, 7))
	podIP := func() string { return fmt.Sprintf("10.244.0.%d", 1+rng.IntN(12)) }
	nodeIPs := []string{"10.10.0.1", "10.10.0.2", "10.10.0.3"}
	clusterIPs := []string{"10.96.0.1", "10.96.0.2", "10.96.0.3", "10.96.0.4", "10.96.0.5"}
	clusters := []string{"c1", "c2"}
	live := map[string]Workload{}
	uid := 0
	const minutes = 180
	for m := range minutes {
		at := t0.Add(time.Duration(m) * time.Minute)
		// Nodes: node i of a cluster holds nodeIPs[i]; c2's nodes take
		// the same addresses while c1's are away.
		if m%30 == 0 {
			for i, ip := range nodeIPs {
				c := clusters[(m/30+i)%2]
				other := clusters[1-(m/30+i)%2]
				inv.Delete(fmt.Sprintf("%s/node//n%d", other, i), at)
				inv.Apply(Workload{ID: fmt.Sprintf("%s/node//n%d", c, i), Cluster: c, Kind: KindNode, Name: fmt.Sprint("n", i),
					UID: fmt.Sprint("node-", m, "-", i), IPs: []string{ip}, Updated: at})
			}
		}
		// Pods on the pod addresses (overlapping between clusters).
		for range 2 {
			c := clusters[rng.IntN(2)]
			name := fmt.Sprint("p", rng.IntN(8))
			id := c + "/pod/shop/" + name
			if rng.IntN(4) == 0 {
				inv.Delete(id, at)
				continue
			}
			uid++
			inv.Apply(Workload{ID: id, Cluster: c, Kind: KindPod, Namespace: "shop", Name: name, UID: fmt.Sprint("pod-", uid),
				IPs: []string{podIP()}, Updated: at, Created: at})
		}
		for range 3 {
			c := clusters[rng.IntN(2)]
			name := fmt.Sprint("s", rng.IntN(6))
			id := c + "/service/shop/" + name
			w, ok := live[id]
			switch r := rng.IntN(12); {
			case !ok || r == 0:
				// Created (again), or replaced by a new UID without a
				// deletion (a missed watch event); Created is sometimes
				// before Palisade saw it.
				uid++
				w = Workload{ID: id, Cluster: c, Kind: KindService, Namespace: "shop", Name: name, UID: fmt.Sprint("svc-", uid),
					Created: at.Add(-time.Duration(rng.IntN(3)) * 20 * time.Second)}
				w.ClusterIP = clusterIPs[rng.IntN(len(clusterIPs))]
				w.IPs = []string{w.ClusterIP}
				fallthrough
			case r < 4:
				// New ports.
				w.Ports = nil
				for range 1 + rng.IntN(2) {
					p := ServicePort{Port: int32([]int{80, 8080, 9090}[rng.IntN(3)]), Protocol: []string{"TCP", "UDP", ""}[rng.IntN(3)],
						TargetPort: []string{"8080", "9090", "http", ""}[rng.IntN(4)]}
					if rng.IntN(2) == 0 {
						p.NodePort = int32(30000 + rng.IntN(3))
					}
					w.Ports = append(w.Ports, p)
				}
				fallthrough
			case r < 9:
				// New endpoints: pod addresses, now and then a node's;
				// a fifth of the time more than manyEndpoints (an
				// address listed several times, with other ports).
				w.Endpoints = nil
				n := rng.IntN(4)
				if rng.IntN(5) == 0 {
					n = manyEndpoints + 1 + rng.IntN(24)
				}
				for range n {
					e := Endpoint{IP: podIP(), Ready: true}
					if rng.IntN(5) == 0 {
						e.IP = nodeIPs[rng.IntN(len(nodeIPs))]
					}
					switch rng.IntN(3) {
					case 0:
						e.Ports = []int32{8080}
					case 1:
						e.Ports = []int32{9090, 8080}
					}
					w.Endpoints = append(w.Endpoints, e)
				}
				w.Updated = at
				inv.Apply(w)
				live[id] = w
			default:
				inv.Delete(id, at)
				delete(live, id)
			}
		}
	}
	return minutes * time.Minute
}

// serviceForWalk is ServiceFor as it was before the service index: a
// walk over the given service lives (then: the latest life of each ID, in
// map order) with the holder found by Lookup. It returns every service
// that matches, in the order of lives, where the old code returned the
// first one its map order met.
func serviceForWalk(inv *Inventory, lives []*incarnation, ended bool, ip string, port uint16, proto string, t time.Time) []*Workload {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil
	}
	holder, held := inv.Lookup(a, t)
	if held && holder.Kind == KindService {
		for _, p := range holder.Ports {
			if uint16(p.Port) == port && protoMatch(p.Protocol, proto) {
				return []*Workload{holder}
			}
		}
		return nil
	}
	isNode := held && holder.Kind == KindNode
	var out []*Workload
	for _, inc := range lives {
		w := inc.at(t)
		if w.Kind != KindService || !w.Alive(t) {
			continue
		}
		if ended && inc.superseded && !t.Before(inc.ended) {
			continue
		}
		if isNode && w.Cluster == holder.Cluster {
			for _, p := range w.Ports {
				if p.NodePort != 0 && uint16(p.NodePort) == port && protoMatch(p.Protocol, proto) {
					out = append(out, w)
					break
				}
			}
			continue
		}
	endpoints:
		for _, e := range w.Endpoints {
			if e.IP != ip {
				continue
			}
			for _, p := range e.Ports {
				if uint16(p) == port {
					out = append(out, w)
					break endpoints
				}
			}
			for _, p := range w.Ports {
				if p.TargetPort == strconv.Itoa(int(port)) {
					out = append(out, w)
					break endpoints
				}
			}
		}
	}
	return out
}

// serviceLives are the inventory's service lives in ServiceFor's order:
// every one, or (latestOnly) the latest life of each ID, which is what
// the walk before the index saw.
func serviceLives(inv *Inventory, latestOnly bool) []*incarnation {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	var out []*incarnation
	for _, inc := range inv.all {
		if inc.latest().Kind == KindService && (!latestOnly || inv.current[inc.id] == inc) {
			out = append(out, inc)
		}
	}
	slices.SortFunc(out, serviceCompare)
	return out
}

// serviceProbe is one question to ServiceFor.
type serviceProbe struct {
	ip    string
	port  uint16
	proto string
	t     time.Time
}

func serviceProbes(span time.Duration, seed uint64) []serviceProbe {
	rng := rand.New(rand.NewPCG(seed, 9))
	var ips []string
	for i := 1; i <= 13; i++ {
		ips = append(ips, fmt.Sprintf("10.244.0.%d", i))
	}
	ips = append(ips, "10.10.0.1", "10.10.0.2", "10.10.0.3", "10.10.0.9",
		"10.96.0.1", "10.96.0.2", "10.96.0.3", "10.96.0.4", "10.96.0.5",
		"::ffff:10.244.0.1", "not-an-ip", "")
	var out []serviceProbe
	for t := t0.Add(-2 * time.Minute); t.Before(t0.Add(span + 2*time.Minute)); t = t.Add(50 * time.Second) {
		// Exactly on a minute (when versions change) and in between.
		for _, at := range []time.Time{t.Truncate(time.Minute), t.Add(time.Duration(rng.IntN(60_000)) * time.Millisecond)} {
			for _, ip := range ips {
				for _, port := range []uint16{80, 8080, 9090, 30000, 30001, 30002, 22} {
					out = append(out, serviceProbe{ip, port, []string{"tcp", "udp", ""}[rng.IntN(3)], at})
				}
			}
		}
	}
	return out
}

func describe(w *Workload) string {
	if w == nil {
		return "-"
	}
	return fmt.Sprintf("%s(uid %s, %s)", w.ID, w.UID, w.Updated.Sub(t0))
}

// TestServiceForAgreesWithWalk checks ServiceFor, over the service index,
// against the walk over every service it replaced, question by question on
// a history of service churn, at past times as well as now: it answers
// the first service the walk over every life finds (the same version of
// it); and where the walk as it was (the latest life of each ID only, in
// map order) answered, the index answers the same service, unless the
// walk could pick among several (the index then takes the first by ID) or
// the index found a replaced life the old walk could not see.
func TestServiceForAgreesWithWalk(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			inv, _ := Open(nil)
			defer inv.Close()
			span := serviceChurn(inv, seed)
			all, latest := serviceLives(inv, false), serviceLives(inv, true)
			var stats struct{ clusterIP, nodePort, endpoint, none, ambiguous, replaced int }
			for _, q := range serviceProbes(span, seed) {
				got, ok := inv.ServiceFor(q.ip, q.port, q.proto, q.t)
				if ok != (got != nil) {
					t.Fatalf("ServiceFor(%s, %d, %s, %s) = %v, %v", q.ip, q.port, q.proto, q.t.Sub(t0), got, ok)
				}
				want := serviceForWalk(inv, all, true, q.ip, q.port, q.proto, q.t)
				var first *Workload
				if len(want) > 0 {
					first = want[0]
				}
				if got != first {
					t.Fatalf("ServiceFor(%s, %d, %s, t0%+v) = %s; the walk over every life: %s (of %d)",
						q.ip, q.port, q.proto, q.t.Sub(t0), describe(got), describe(first), len(want))
				}
				old := serviceForWalk(inv, latest, false, q.ip, q.port, q.proto, q.t)
				switch {
				case got == nil && len(old) == 0:
					stats.none++
				case len(old) > 0 && slices.Contains(old, got):
					if len(old) > 1 {
						stats.ambiguous++
					}
				case got != nil && inv.current[got.ID].latest().UID != got.UID:
					// A replaced life: the old walk saw only the latest.
					stats.replaced++
					continue
				default:
					t.Fatalf("ServiceFor(%s, %d, %s, t0%+v) = %s; the old walk answered one of %d: %s",
						q.ip, q.port, q.proto, q.t.Sub(t0), describe(got), len(old), describe(old[0]))
				}
				if got == nil {
					continue
				}
				a, _ := netip.ParseAddr(q.ip)
				h, _ := inv.Lookup(a, q.t)
				switch {
				case h == got:
					stats.clusterIP++
				case h != nil && h.Kind == KindNode && h.Cluster == got.Cluster:
					stats.nodePort++
				default:
					stats.endpoint++
				}
			}
			t.Logf("%+v", stats)
			// The history must have asked every kind of question.
			for name, n := range map[string]int{"cluster IP": stats.clusterIP, "node port": stats.nodePort, "endpoint": stats.endpoint,
				"no service": stats.none, "several services": stats.ambiguous, "replaced life": stats.replaced} {
				if n == 0 {
					t.Errorf("no question answered by %s", name)
				}
			}
		})
	}
}

// indexFromScratch is the service index as its invariant defines it,
// rebuilt from the versions the inventory keeps.
func indexFromScratch(inv *Inventory) serviceIndex {
	x := newServiceIndex()
	for _, inc := range inv.all {
		for _, w := range inc.versions {
			if w.Kind == KindService {
				x.add(inc, w)
			}
		}
	}
	return x
}

func indexText(x serviceIndex) string {
	var lines []string
	life := func(ls []*incarnation) string {
		var s []string
		for _, inc := range ls {
			s = append(s, fmt.Sprintf("%s#%d", inc.id, inc.seq))
		}
		return strings.Join(s, " ")
	}
	for ip, ls := range x.byEndpoint {
		lines = append(lines, "ep "+ip+": "+life(ls))
	}
	for k, ls := range x.byNodePort {
		lines = append(lines, fmt.Sprintf("np %s/%d: %s", k.cluster, k.port, life(ls)))
	}
	for w, pos := range x.sorted {
		lines = append(lines, fmt.Sprintf("sorted %s %s %s: %v", w.ID, w.UID, w.Updated.Sub(t0), pos))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// TestServiceIndexAfterCompact: after compactions at several cutoffs the
// index lists exactly what the kept versions name (nothing of a dropped
// life or version stays reachable, nothing kept is lost), and ServiceFor
// still agrees with the walk over every life at every time from the
// cutoff on.
func TestServiceIndexAfterCompact(t *testing.T) {
	for _, seed := range []uint64{5, 6} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			inv, _ := Open(nil)
			defer inv.Close()
			span := serviceChurn(inv, seed)
			probes := serviceProbes(span, seed)
			for _, cut := range []time.Duration{20 * time.Minute, 75 * time.Minute, 150 * time.Minute, span + time.Hour} {
				cutoff := t0.Add(cut)
				before := map[serviceProbe]*Workload{}
				for _, q := range probes {
					if !q.t.Before(cutoff) {
						before[q], _ = inv.ServiceFor(q.ip, q.port, q.proto, q.t)
					}
				}
				if _, err := inv.Compact(cutoff); err != nil {
					t.Fatal(err)
				}
				if got, want := indexText(inv.services), indexText(indexFromScratch(inv)); got != want {
					t.Fatalf("after compaction at t0+%s the index is\n%s\nwant\n%s", cut, got, want)
				}
				all := serviceLives(inv, false)
				for q, was := range before {
					got, _ := inv.ServiceFor(q.ip, q.port, q.proto, q.t)
					var first *Workload
					if want := serviceForWalk(inv, all, true, q.ip, q.port, q.proto, q.t); len(want) > 0 {
						first = want[0]
					}
					if got != was || got != first {
						t.Fatalf("after compaction at t0+%s: ServiceFor(%s, %d, %s, t0+%s) = %s; before: %s; walk: %s",
							cut, q.ip, q.port, q.proto, q.t.Sub(t0), describe(got), describe(was), describe(first))
					}
				}
			}
			if n := len(inv.services.byEndpoint) + len(inv.services.byNodePort); n == 0 {
				t.Log("index empty after the last compaction (every service deleted)")
			}
		})
	}
}

// TestServiceForRecreatedService: a service deleted and recreated under
// the same name, with other endpoints, and then replaced by a new UID
// without a deletion: a flow at each past time resolves to the life and
// version in force then, and to nothing between the deletion and the
// recreation.
func TestServiceForRecreatedService(t *testing.T) {
	inv, _ := Open(nil)
	defer inv.Close()
	svc := func(uid, ep string, at time.Time) Workload {
		return Workload{ID: "c1/service/shop/web", Cluster: "c1", Kind: KindService, Namespace: "shop", Name: "web", UID: uid,
			IPs: []string{"10.96.0.10"}, Ports: []ServicePort{{Protocol: "TCP", Port: 80, TargetPort: "8080"}},
			Endpoints: []Endpoint{{IP: ep}}, Created: at, Updated: at}
	}
	inv.Apply(svc("u1", "10.244.1.1", t0))
	inv.Apply(svc("u1", "10.244.1.2", t0.Add(time.Minute)))
	inv.Delete("c1/service/shop/web", t0.Add(2*time.Minute))
	inv.Apply(svc("u2", "10.244.1.1", t0.Add(3*time.Minute)))
	inv.Apply(svc("u3", "10.244.1.3", t0.Add(4*time.Minute)))
	for _, tc := range []struct {
		ip   string
		at   time.Duration
		want string // UID and endpoint of the version answering
	}{
		{"10.244.1.1", 30 * time.Second, "u1 10.244.1.1"},
		{"10.244.1.2", 30 * time.Second, "-"}, // not yet its endpoint
		{"10.244.1.2", 90 * time.Second, "u1 10.244.1.2"},
		{"10.244.1.1", 90 * time.Second, "-"},
		{"10.244.1.2", 150 * time.Second, "-"}, // deleted
		{"10.244.1.1", 200 * time.Second, "u2 10.244.1.1"},
		{"10.244.1.1", 250 * time.Second, "-"}, // replaced by u3
		{"10.244.1.3", 250 * time.Second, "u3 10.244.1.3"},
		{"10.244.1.3", 200 * time.Second, "-"},
		{"10.96.0.10", 150 * time.Second, "-"},
		{"10.96.0.10", 30 * time.Second, "u1 10.244.1.1"},
	} {
		w, ok := inv.ServiceFor(tc.ip, 8080, "tcp", t0.Add(tc.at))
		if tc.ip == "10.96.0.10" {
			w, ok = inv.ServiceFor(tc.ip, 80, "tcp", t0.Add(tc.at))
		}
		got := "-"
		if ok {
			got = w.UID + " " + w.Endpoints[0].IP
		}
		if got != tc.want {
			t.Errorf("ServiceFor(%s) at t0+%s = %s, want %s", tc.ip, tc.at, got, tc.want)
		}
	}
}

// BenchmarkServiceFor is one ServiceFor question in a cluster of 5,000
// pods behind 500 services, each with 9 of its app's 10 pods as endpoints
// and another one left out in each of 20 versions over the hour asked
// about, and 1,000 more pods behind one large service (950 endpoints in
// each of its 20 versions):
// a backend's address and target port, a client's address and ephemeral
// port (no service), a cluster IP and service port, a backend of the
// large service; at times spread over the hour.
func BenchmarkServiceFor(b *testing.B) {
	inv, _ := Open(nil)
	defer inv.Close()
	podIP := func(j int) string { return fmt.Sprintf("10.244.%d.%d", j/250, j%250+1) }
	for j := range 5000 {
		inv.Apply(Workload{ID: fmt.Sprint("c/pod/ns/pod-", j), Cluster: "c", Kind: KindPod, Namespace: "ns", Name: fmt.Sprint("pod-", j),
			IPs: []string{podIP(j)}, Updated: t0})
	}
	for v := range 20 {
		for i := range 500 {
			w := Workload{ID: fmt.Sprint("c/service/ns/svc-", i), Cluster: "c", Kind: KindService, Namespace: "ns", Name: fmt.Sprint("svc-", i),
				IPs: []string{fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)}, Updated: t0.Add(time.Duration(v) * 3 * time.Minute),
				Ports: []ServicePort{{Protocol: "TCP", Port: 80, TargetPort: "8080"}}}
			for k := range 9 {
				j := i + 500*((k+v)%10)
				w.Endpoints = append(w.Endpoints, Endpoint{IP: podIP(j), Ports: []int32{8080}, Ready: true})
			}
			inv.Apply(w)
		}
	}
	// And a large service: 1,000 other pods behind it, one in 20 left
	// out in each version.
	bigIP := func(j int) string { return fmt.Sprintf("10.245.%d.%d", j/250, j%250+1) }
	for j := range 1000 {
		inv.Apply(Workload{ID: fmt.Sprint("c/pod/ns/big-", j), Cluster: "c", Kind: KindPod, Namespace: "ns", Name: fmt.Sprint("big-", j),
			IPs: []string{bigIP(j)}, Updated: t0})
	}
	for v := range 20 {
		w := Workload{ID: "c/service/ns/big", Cluster: "c", Kind: KindService, Namespace: "ns", Name: "big",
			IPs: []string{"10.96.9.1"}, Updated: t0.Add(time.Duration(v) * 3 * time.Minute),
			Ports: []ServicePort{{Protocol: "TCP", Port: 80, TargetPort: "8080"}}}
		for j := range 1000 {
			if j%20 != v {
				w.Endpoints = append(w.Endpoints, Endpoint{IP: bigIP(j), Ports: []int32{8080}, Ready: true})
			}
		}
		inv.Apply(w)
	}
	times := make([]time.Time, 1024)
	for i := range times {
		times[i] = t0.Add(time.Duration(i) * time.Hour / 1024)
	}
	for _, bc := range []struct {
		name string
		ip   func(i int) string
		port uint16
	}{
		{"backend", func(i int) string { return podIP(i % 5000) }, 8080},
		{"client", func(i int) string { return podIP(i % 5000) }, 40123},
		{"clusterIP", func(i int) string { return fmt.Sprintf("10.96.%d.%d", i%500/250, i%250+1) }, 80},
		{"backend of 1,000", func(i int) string { return bigIP(i % 1000) }, 8080},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ips := make([]string, 4096)
			for i := range ips {
				ips[i] = bc.ip(i * 7919)
			}
			found := 0
			b.ResetTimer()
			for i := range b.N {
				if _, ok := inv.ServiceFor(ips[i&4095], bc.port, "tcp", times[i&1023]); ok {
					found++
				}
			}
			b.ReportMetric(float64(found)/float64(b.N), "found/op")
		})
	}
}

// TestServiceForConcurrent: ServiceFor answers while the history is
// applied and compacted under it (run with -race), and the index ends as
// the kept versions define it.
func TestServiceForConcurrent(t *testing.T) {
	inv, _ := Open(nil)
	defer inv.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		serviceChurn(inv, 11)
	}()
	compacted := make(chan error, 1)
	go func() {
		for i := range 12 {
			if _, err := inv.Compact(t0.Add(time.Duration(i) * 5 * time.Minute)); err != nil {
				compacted <- err
				return
			}
		}
		compacted <- nil
	}()
	probes := serviceProbes(3*time.Hour, 11)
	applying := func() bool {
		select {
		case <-done:
			return false
		default:
			return true
		}
	}
	for i := 0; applying(); i++ {
		q := probes[i%len(probes)]
		if w, ok := inv.ServiceFor(q.ip, q.port, q.proto, q.t); ok != (w != nil) || ok && w.Kind != KindService {
			t.Fatalf("ServiceFor(%s, %d) = %v, %v", q.ip, q.port, w, ok)
		}
	}
	if err := <-compacted; err != nil {
		t.Fatal(err)
	}
	if got, want := indexText(inv.services), indexText(indexFromScratch(inv)); got != want {
		t.Fatalf("the index is\n%s\nwant\n%s", got, want)
	}
}
