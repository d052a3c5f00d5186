package discovery

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/analyze"
	"github.com/palisade-dev/palisade/internal/policy/netpol"
)

// The exported NetworkPolicies, imported back through the NetworkPolicy
// import, decide every connection between the world's pods, its node and
// outside addresses, on every port the traffic used, as the discovered
// version does.
func TestNetworkPoliciesRoundTrip(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	inv := world(t, t0)
	// The front-end service's endpoint follows its pod's replacement.
	w, _, _ := inv.Get("lab/service/shop/front-end")
	fe := *w
	fe.Endpoints = []inventory.Endpoint{{IP: "10.244.1.20", Ports: []int32{8079}, Ready: true}}
	fe.Updated = t0.Add(21 * time.Minute)
	inv.Apply(fe)
	r := run(t, inv, traffic(t0), Options{})
	var buf bytes.Buffer
	if err := r.WriteNetworkPolicies(&buf); err != nil {
		t.Fatal(err)
	}
	pols, _, err := netpol.ReadFiles([]netpol.File{{Name: "discovered.yaml", Content: buf.String()}}, "default")
	if err != nil {
		t.Fatalf("exported NetworkPolicies do not import: %v\n%s", err, buf.String())
	}
	if len(pols) == 0 {
		t.Fatalf("no NetworkPolicies:\n%s", buf.String())
	}
	imported, err := netpol.Translate("shop", pols, netpol.Options{})
	if err != nil {
		t.Fatal(err)
	}
	discovered := r.Version()
	evalOf := func(v *policy.Version) *analyze.Analyzer {
		set := scopes()
		v.Name = "v1"
		set.Versions["shop"] = v
		ev, err := policy.Compile(set)
		if err != nil {
			t.Fatal(err)
		}
		return analyze.New(ev, inv, "shop")
	}
	a, b := evalOf(discovered), evalOf(imported)

	at := t0.Add(30 * time.Minute) // front-end-b's time
	pods := map[string]string{"front-end": "10.244.1.20", "carts": "10.244.1.11", "user-db": "10.244.1.12", "other/x": "10.244.2.5"}
	srcs := map[string]string{"node": "10.10.0.11", "ext": "203.0.113.7"}
	for k, v := range pods {
		srcs[k] = v
	}
	dsts := map[string]string{"ext-seen": "203.0.113.10", "ext-new": "203.0.113.99"}
	for k, v := range pods {
		dsts[k] = v
	}
	// Through the services: the DNAT-related flow to the backend decides.
	backends := map[string]string{"10.244.1.11:8080": "shop/carts", "10.244.1.20:8079": "shop/front-end"}
	viaService := func(src, backend string) flow.Flow {
		ip, port, _ := strings.Cut(backend, ":")
		p, _ := strconv.Atoi(port)
		return flow.Flow{ID: "y", Proto: "tcp", Start: at, Src: flow.Endpoint{IP: src}, Dst: flow.Endpoint{IP: ip, Port: uint16(p), Service: backends[backend]},
			Related: []flow.Related{{ID: "z", Reason: flow.ReasonClusterIP}}, Replied: true}
	}
	n := 0
	for sn, src := range srcs {
		for backend, svc := range backends {
			f := viaService(src, backend)
			compare(t, a, b, &f, sn+" → service "+svc)
			n++
		}
	}
	dnatOnly := 0
	for sn, src := range srcs {
		for dn, dst := range dsts {
			if src == dst {
				continue
			}
			for _, port := range []uint16{80, 666, 8079, 8080, 27017} {
				f := flow.Flow{ID: "x", Proto: "tcp", Start: at, Src: flow.Endpoint{IP: src}, Dst: flow.Endpoint{IP: dst, Port: port}, Replied: true}
				what := fmt.Sprintf("%s → %s:%d", sn, dn, port)
				va, _ := a.Analyze(&f)
				vb, _ := b.Analyze(&f)
				if backend := fmt.Sprintf("%s:%d", dst, port); backends[backend] != "" && va.Verdict == policy.Escaped && vb.Verdict == policy.Permitted {
					// The one documented difference: NetworkPolicy decides
					// after DNAT, so a consumer allowed through a service
					// reaches its backends' target port directly too.
					vs := viaService(src, backend)
					if v, _ := a.Analyze(&vs); v.Verdict != policy.Permitted {
						t.Errorf("%s: discovered escaped, exported permitted, and not through the service either", what)
					}
					dnatOnly++
					continue
				}
				compare(t, a, b, &f, what)
				n++
			}
		}
	}
	if dnatOnly == 0 {
		t.Errorf("no connection differs by NetworkPolicy's DNAT semantics")
	}
	if n < 100 {
		t.Fatalf("only %d cases", n)
	}
}

func compare(t *testing.T, a, b *analyze.Analyzer, f *flow.Flow, what string) {
	t.Helper()
	va, oka := a.Analyze(f)
	vb, okb := b.Analyze(f)
	if oka != okb || va.Verdict != vb.Verdict {
		t.Errorf("%s: discovered %v (%s), exported NetworkPolicies %v (%s)", what, va.Verdict, va.Rule, vb.Verdict, vb.Rule)
	}
}
