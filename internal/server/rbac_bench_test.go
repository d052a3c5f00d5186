package server

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
	"github.com/palisade-dev/palisade/pkg/api"
)

// BenchmarkScopedSearch: what per-scope RBAC costs a search, over HTTP
// against a running server: the same flow and inventory searches by an
// unbound admin (no visibility check: the "before") and by a viewer bound
// to a scope (every flow's ends resolved at its time and matched against
// the scope's filters; paged until the limit is filled). 1,000 pods, half
// in the scope; 20,000 flows, half of them from the scope's pods. Reports
// p50/p99 wall time and CPU per search (getrusage: the machine is shared).
func BenchmarkScopedSearch(b *testing.B) {
	ctx := context.Background()
	s, err := Start(ctx, Config{DataDir: b.TempDir(), Listen: "127.0.0.1:0", FlowWindow: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Stop()
	at := time.Now().Add(-time.Hour)
	for i := range 1000 {
		ns := []string{"ns-a", "ns-b"}[i%2]
		s.Inventory.Apply(inventory.Workload{ID: fmt.Sprintf("c/pod/%s/p%d", ns, i), Cluster: "c", Kind: inventory.KindPod,
			Namespace: ns, Name: fmt.Sprintf("p%d", i), UID: fmt.Sprint(i), IPs: []string{fmt.Sprintf("10.244.%d.%d", i>>8&255, i&255)},
			Labels: map[string]string{"app": fmt.Sprintf("app%d", i%10)}, Updated: at, Created: at})
	}
	s.Inventory.Apply(inventory.Workload{ID: "c/pod/ns-c/server", Cluster: "c", Kind: inventory.KindPod, Namespace: "ns-c", Name: "server",
		UID: "srv", IPs: []string{"10.244.9.9"}, Updated: at, Created: at})
	if code, body := rbacCall(b, s, "", "POST", "/api/v1/policy/apply", applyBody("kind: Scope\nname: a\nfilter: namespace = \"ns-a\"\n")); code != 200 {
		b.Fatalf("apply: %d %s", code, body)
	}
	for i := range 20 {
		if err := s.Flows.Ingest(ctx, mustBatch(b, fmt.Sprintf("s%d", i), 1000)); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Flows.Flush(true); err != nil {
		b.Fatal(err)
	}
	tok, err := s.Client("").CreateTokenFor(ctx, api.TokenRequest{Name: "viewer-a", Role: "viewer", Scope: "a"})
	if err != nil {
		b.Fatal(err)
	}
	flows := "/api/v1/flows?" + url.Values{"filter": {"dst.port = 8080 and src.ip in 10.244.0.0/16"}, "from": {"2h"}, "limit": {"100"}}.Encode()
	inv := "/api/v1/inventory?" + url.Values{"filter": {`kind = pod and label.app in (app1, app2, app3)`}}.Encode()
	for _, q := range []struct{ name, path string }{{"flows", flows}, {"inventory", inv}} {
		for _, who := range []struct{ name, token string }{{"admin", ""}, {"scoped-viewer", tok.Secret}} {
			b.Run(q.name+"/"+who.name, func(b *testing.B) {
				lat := make([]time.Duration, 0, b.N)
				cpu := vulntest.CPUPerOp(b)
				for b.Loop() {
					t0 := time.Now()
					if code, body := rbacCall(b, s, who.token, "GET", q.path, ""); code != 200 {
						b.Fatalf("%d %s", code, body)
					}
					lat = append(lat, time.Since(t0))
				}
				cpu()
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			})
		}
	}
}
