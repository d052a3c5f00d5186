package inventory

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/store"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func pod(name, ip string, at time.Time, labels map[string]string) Workload {
	return Workload{
		ID: "c1/pod/shop/" + name, Cluster: "c1", Kind: KindPod, Namespace: "shop", Name: name,
		UID: "uid-" + name + "-" + at.Format("150405"), IPs: []string{ip}, Labels: labels,
		Updated: at, Created: at,
	}
}

func TestLookupFollowsIPReuseAcrossTime(t *testing.T) {
	inv, _ := Open(nil)
	defer inv.Close()
	inv.Apply(pod("carts-1", "10.244.1.5", t0, map[string]string{"app": "carts"}))
	inv.Delete("c1/pod/shop/carts-1", t0.Add(time.Minute))
	inv.Apply(pod("orders-1", "10.244.1.5", t0.Add(2*time.Minute), map[string]string{"app": "orders"}))

	ip := netip.MustParseAddr("10.244.1.5")
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{t0.Add(30 * time.Second), "carts-1"},
		{t0.Add(90 * time.Second), ""}, // nobody held it
		{t0.Add(3 * time.Minute), "orders-1"},
		{t0.Add(-time.Second), ""},
	} {
		w, ok := inv.Lookup(ip, tc.at)
		got := ""
		if ok {
			got = w.Name
		}
		if got != tc.want {
			t.Errorf("Lookup at %s = %q, want %q", tc.at.Sub(t0), got, tc.want)
		}
	}
}

func TestLookupReturnsVersionAtTime(t *testing.T) {
	inv, _ := Open(nil)
	defer inv.Close()
	inv.Apply(pod("carts-1", "10.244.1.5", t0, map[string]string{"app": "carts"}))
	v2 := pod("carts-1", "10.244.1.5", t0.Add(time.Minute), map[string]string{"app": "carts", "tier": "gold"})
	v2.UID = "uid-carts-1-120000"
	if !inv.Apply(v2) {
		t.Fatal("label change not recorded")
	}
	if inv.Apply(v2) {
		t.Fatal("identical version recorded twice")
	}
	ip := netip.MustParseAddr("10.244.1.5")
	w, _ := inv.Lookup(ip, t0.Add(10*time.Second))
	if _, ok := w.Labels["tier"]; ok {
		t.Errorf("version at t0+10s has tier label: %v", w.Labels)
	}
	w, _ = inv.Lookup(ip, t0.Add(2*time.Minute))
	if w.Labels["tier"] != "gold" {
		t.Errorf("version at t0+2m labels = %v", w.Labels)
	}
	_, events, _ := inv.Get("c1/pod/shop/carts-1")
	if len(events) != 2 || events[1].Changes[0] != "labels" {
		t.Errorf("history = %+v", events)
	}
}

func TestExternalCIDRFallbackMostSpecific(t *testing.T) {
	inv, _ := Open(nil)
	defer inv.Close()
	inv.Apply(Workload{ID: "external/doc", Kind: KindExternal, Name: "doc", CIDRs: []string{"203.0.113.0/24"}, Updated: t0})
	inv.Apply(Workload{ID: "external/bank", Kind: KindExternal, Name: "bank", CIDRs: []string{"203.0.113.64/26"}, Updated: t0})
	w, ok := inv.Lookup(netip.MustParseAddr("203.0.113.70"), t0.Add(time.Second))
	if !ok || w.Name != "bank" {
		t.Fatalf("Lookup = %v %v, want bank", w, ok)
	}
	w, ok = inv.Lookup(netip.MustParseAddr("203.0.113.7"), t0.Add(time.Second))
	if !ok || w.Name != "doc" {
		t.Fatalf("Lookup = %v %v, want doc", w, ok)
	}
}

func TestPersistAndReload(t *testing.T) {
	dir := t.TempDir()
	kv, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	inv, _ := Open(kv)
	inv.Apply(pod("carts-1", "10.244.1.5", t0, map[string]string{"app": "carts"}))
	inv.Delete("c1/pod/shop/carts-1", t0.Add(time.Minute))
	inv.Apply(pod("user-1", "10.244.1.6", t0, map[string]string{"app": "user"}))
	inv.SetAttrs("c1/pod/shop/user-1", "vuln.", map[string][]string{"vuln.max_cvss": {"9.8"}})
	if err := inv.Close(); err != nil {
		t.Fatal(err)
	}
	kv.Close()

	kv, _ = store.Open(dir)
	defer kv.Close()
	inv, err = Open(kv)
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	if w, ok := inv.Lookup(netip.MustParseAddr("10.244.1.5"), t0.Add(time.Second)); !ok || w.Name != "carts-1" {
		t.Errorf("history lost across reload: %v %v", w, ok)
	}
	f, err := filter.Parse("vuln.max_cvss >= 9", Schema)
	if err != nil {
		t.Fatal(err)
	}
	got := inv.Search(f, SearchOptions{})
	if len(got) != 1 || got[0].Name != "user-1" {
		t.Errorf("search after reload = %v", got)
	}
	if inv.Len() != 1 {
		t.Errorf("Len = %d, want 1", inv.Len())
	}
}

func TestRecordFields(t *testing.T) {
	w := &Workload{
		Kind: KindService, Name: "front-end", Namespace: "shop", ServiceType: "NodePort",
		ClusterIP: "10.96.0.10", IPs: []string{"10.96.0.10"},
		Ports:  []ServicePort{{Port: 80, TargetPort: "8079", NodePort: 30001, Protocol: "TCP"}},
		Labels: map[string]string{"app": "front-end"},
		Attrs:  map[string][]string{"vuln.cve": {"CVE-2023-45288"}},
	}
	for _, tc := range []struct {
		f    string
		want bool
	}{
		{`service.type = NodePort and service.node_port = 30001`, true},
		{`ip in 10.96.0.0/12`, true},
		{`label.app = "front-end" and namespace = shop`, true},
		{`vuln.cve contains "CVE-2023-45288"`, true},
		{`vuln.cve contains "CVE-2023-4528"`, false},
		{`owner.kind exists`, false},
		{`kind = service and not label.tier exists`, true},
	} {
		f, err := filter.Parse(tc.f, Schema)
		if err != nil {
			t.Fatalf("%s: %v", tc.f, err)
		}
		if got := f.Match(Record{w}); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.f, got, tc.want)
		}
	}
}

func populate(b *testing.B, n int) *Inventory {
	inv, _ := Open(nil)
	apps := []string{"carts", "orders", "payment", "user", "catalogue", "shipping", "front-end"}
	for i := 0; i < n; i++ {
		app := apps[i%len(apps)]
		inv.Apply(Workload{
			ID: fmt.Sprintf("c1/pod/ns%d/%s-%d", i%50, app, i), Cluster: "c1", Kind: KindPod,
			Namespace: fmt.Sprintf("ns%d", i%50), Name: fmt.Sprintf("%s-%d", app, i),
			IPs:         []string{netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)}).String()},
			Labels:      map[string]string{"app": app, "pod-template-hash": "abc123", "tier": "backend"},
			Annotations: map[string]string{"prometheus.io/scrape": "true"},
			Owner:       &Owner{Kind: "Deployment", Name: app},
			Updated:     t0,
		})
	}
	return inv
}

// BenchmarkSearch50k evaluates a typical filter over 50,000 pods.
func BenchmarkSearch50k(b *testing.B) {
	inv := populate(b, 50000)
	defer inv.Close()
	f, err := filter.Parse(`namespace in (ns1, ns2, ns3) and label.app = carts and ip in 10.244.0.0/16 and not annotation.skip exists`, Schema)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if len(inv.Search(f, SearchOptions{})) == 0 {
			b.Fatal("no match")
		}
	}
}

// BenchmarkLookup measures IP→workload at time t over 50,000 pods.
func BenchmarkLookup(b *testing.B) {
	inv := populate(b, 50000)
	defer inv.Close()
	ips := make([]netip.Addr, 1024)
	for i := range ips {
		ips[i] = netip.AddrFrom4([4]byte{10, 244, byte(i * 37 >> 8), byte(i * 37)})
	}
	at := t0.Add(time.Minute)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := inv.Lookup(ips[i&1023], at); !ok {
			b.Fatal("miss")
		}
	}
}

func TestServiceFor(t *testing.T) {
	inv, _ := Open(nil)
	defer inv.Close()
	inv.Apply(Workload{ID: "c1/node//n1", Cluster: "c1", Kind: KindNode, Name: "n1", IPs: []string{"10.10.0.11"}, Updated: t0})
	inv.Apply(Workload{
		ID: "c1/service/shop/front-end", Cluster: "c1", Kind: KindService, Namespace: "shop", Name: "front-end",
		ClusterIP: "10.96.0.10", IPs: []string{"10.96.0.10"},
		Ports:     []ServicePort{{Protocol: "TCP", Port: 80, TargetPort: "8079", NodePort: 30080}},
		Endpoints: []Endpoint{{IP: "10.244.1.2", Ports: []int32{8079}, Ready: true}},
		Updated:   t0,
	})
	at := t0.Add(time.Second)
	for _, tc := range []struct {
		ip   string
		port uint16
		want bool
	}{
		{"10.96.0.10", 80, true},    // cluster IP and service port
		{"10.96.0.10", 81, false},   // not a service port
		{"10.10.0.11", 30080, true}, // node IP and node port
		{"10.244.1.2", 8079, true},  // endpoint and target port
		{"10.244.1.2", 22, false},
	} {
		w, ok := inv.ServiceFor(tc.ip, tc.port, "tcp", at)
		if ok != tc.want || ok && w.Name != "front-end" {
			t.Errorf("ServiceFor(%s, %d) = %v, %v; want %v", tc.ip, tc.port, w, ok, tc.want)
		}
	}
}
