package netpol

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/netpol/netpoltest"
)

// upstreamPorts are the container ports of the upstream netpol test model
// (serve-80-tcp …), plus "web", which is 80/TCP except where a pod says
// otherwise, so named ports resolve differently per destination pod.
func upstreamPorts(web int32) []corev1.ContainerPort {
	var out []corev1.ContainerPort
	for _, port := range []int32{80, 81} {
		for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP} {
			out = append(out, corev1.ContainerPort{
				Name: fmt.Sprintf("serve-%d-%s", port, strings.ToLower(string(proto))), ContainerPort: port, Protocol: proto})
		}
	}
	if web != 0 {
		out = append(out, corev1.ContainerPort{Name: "web", ContainerPort: web, Protocol: corev1.ProtocolTCP})
	}
	return out
}

// tableWorld is the pure tests' cluster: namespaces x, y, z (labelled ns=…)
// and w (no ns label), pods a, b, c in x, y, z and a in w, spread over
// nodes n1 and n2. z/a carries a quarantine label; y/c's "web" port is 81.
func tableWorld() *refWorld {
	w := &refWorld{NSLabels: map[string]map[string]string{}}
	for i, ns := range []string{"x", "y", "z", "w"} {
		l := map[string]string{"kubernetes.io/metadata.name": ns}
		if ns != "w" {
			l["ns"] = ns
		}
		w.NSLabels[ns] = l
		names := []string{"a", "b", "c"}
		if ns == "w" {
			names = names[:1]
		}
		for j, name := range names {
			p := &refPod{NS: ns, Name: name, Labels: map[string]string{"pod": name},
				IP: netip.AddrFrom4([4]byte{10, 244, byte(i + 1), byte(j + 1)}), Ports: upstreamPorts(80)}
			if ns == "z" && name == "a" {
				p.Labels["quarantine"] = "true"
			}
			if ns == "y" && name == "c" {
				p.Ports = upstreamPorts(81)
			}
			p.Node = []string{"n1", "n2"}[(i+j)%2]
			w.Pods = append(w.Pods, p)
		}
	}
	for i, n := range []string{"n1", "n2"} {
		w.Nodes = append(w.Nodes, &netpoltest.Node{Name: n, IP: netip.AddrFrom4([4]byte{10, 10, 0, byte(11 + i)})})
	}
	return w
}

// externals are addresses no pod holds: in and out of the ipBlocks' ranges
// and exceptions.
var externals = []netip.Addr{
	netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("203.0.113.200"),
	netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("192.0.2.1"),
}

// probe is one (source, destination, protocol, port) of the table.
type probe struct {
	src, dst refEnd
	proto    corev1.Protocol
	port     int32
}

func (p probe) String() string {
	end := func(e refEnd) string {
		if e.Pod != nil {
			return e.Pod.NS + "/" + e.Pod.Name
		}
		if e.Node != nil {
			return "node " + e.Node.Name
		}
		return e.IP.String()
	}
	return fmt.Sprintf("%s → %s %s/%d", end(p.src), end(p.dst), strings.ToLower(string(p.proto)), p.port)
}

// probes lists every pod → pod, pod → node or external and node or
// external → pod pair over TCP and UDP ports 79-82 (inside, at the edges of
// and outside the policies' ports and ranges).
func probes(w *refWorld, ext []netip.Addr) []probe {
	var ends []refEnd
	for _, p := range w.Pods {
		ends = append(ends, refEnd{Pod: p, IP: p.IP})
	}
	for _, n := range w.Nodes {
		ends = append(ends, refEnd{Node: n, IP: n.IP})
	}
	for _, a := range ext {
		ends = append(ends, refEnd{IP: a})
	}
	var out []probe
	for _, s := range ends {
		for _, d := range ends {
			if s.Pod == nil && d.Pod == nil {
				continue
			}
			for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP} {
				for port := int32(79); port <= 82; port++ {
					out = append(out, probe{s, d, proto, port})
				}
			}
		}
	}
	return out
}

// peerOf is the evaluator's view of one end: the inventory workload that
// held the address at the time (resolve), or none.
type resolver func(netip.Addr) *inventory.Workload

// compare translates pols, evaluates every probe with the policy evaluator
// and returns the probes where it disagrees with the reference, and the
// number of probes each side allowed.
func compare(t *testing.T, w *refWorld, pols []*networkingv1.NetworkPolicy, ps []probe, resolve resolver, scopeFilter string, opts Options) (diffs []string, allowed int) {
	t.Helper()
	ev := compileTranslation(t, pols, scopeFilter, opts)
	for _, p := range ps {
		f := &policy.Flow{
			Src:   policy.Peer{IP: p.src.IP, Workload: resolve(p.src.IP)},
			Dst:   policy.Peer{IP: p.dst.IP, Workload: resolve(p.dst.IP)},
			Proto: policy.ProtoTCP, Port: uint16(p.port),
		}
		if p.proto == corev1.ProtocolUDP {
			f.Proto = policy.ProtoUDP
		}
		d := ev.Evaluate(f)
		got := d.Action() == policy.Allow
		want := w.Allowed(pols, p.src, p.dst, p.proto, p.port)
		if want {
			allowed++
		}
		if got != want {
			diffs = append(diffs, fmt.Sprintf("%s: evaluator %s (egress %s by %s, ingress %s by %s), upstream semantics %v",
				p, d.Action(), d.Egress.Action, d.Egress.Rule, d.Ingress.Action, d.Ingress.Rule, map[bool]string{true: "ALLOW", false: "DENY"}[want]))
		}
	}
	return diffs, allowed
}

// compileTranslation translates pols into a version of a scope "netpol"
// (whose own catch-all is DENY: the version's ALLOW must be what decides)
// and compiles it.
func compileTranslation(t *testing.T, pols []*networkingv1.NetworkPolicy, scopeFilter string, opts Options) *policy.Evaluator {
	t.Helper()
	v, err := Translate("netpol", pols, opts)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := policy.Compile(policy.Set{
		Scopes:   []policy.Scope{{Name: "netpol", Filter: scopeFilter, CatchAll: policy.Deny}},
		Versions: map[string]*policy.Version{"netpol": v},
	})
	if err != nil {
		t.Fatalf("compile the translation: %v", err)
	}
	return ev
}

// inventoryOf puts the table's pods in an inventory as the connector would
// (labels, namespace labels, container ports, IPs) and returns a resolver.
func inventoryOf(t *testing.T, w *refWorld) resolver {
	inv, err := inventory.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inv.Close() })
	created := time.Now().Add(-time.Hour)
	for _, p := range w.Pods {
		c := inventory.Container{Name: "main", Image: "registry.local/agnhost:1"}
		for _, cp := range p.Ports {
			c.Ports = append(c.Ports, inventory.ContainerPort{Name: cp.Name, Protocol: string(cp.Protocol), Port: cp.ContainerPort})
		}
		inv.Apply(inventory.Workload{
			ID: "table/pod/" + p.NS + "/" + p.Name, Cluster: "table", Kind: inventory.KindPod,
			Namespace: p.NS, Name: p.Name, Labels: p.Labels, NamespaceLabels: w.NSLabels[p.NS],
			IPs: []string{p.IP.String()}, Containers: []inventory.Container{c}, Phase: "Running",
			Created: created, Updated: created, Node: p.Node,
		})
	}
	for _, n := range w.Nodes {
		inv.Apply(inventory.Workload{ID: "table/node//" + n.Name, Cluster: "table", Kind: inventory.KindNode, Name: n.Name,
			IPs: []string{n.IP.String()}, Created: created, Updated: created})
	}
	now := time.Now()
	return func(a netip.Addr) *inventory.Workload {
		wl, _ := inv.Lookup(a, now)
		return wl
	}
}

func loadFile(t *testing.T, path string) []*networkingv1.NetworkPolicy {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	srcs, skipped, err := Decode(path, data, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) > 0 {
		t.Fatalf("%s: skipped %+v", path, skipped)
	}
	var out []*networkingv1.NetworkPolicy
	for _, s := range srcs {
		if err := Validate(s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s.Policy)
	}
	return out
}

// TestTranslationAgreesWithUpstreamSemantics: for each policy set of
// testdata alone, and all of them together, every (source, destination,
// port) verdict of the translated version equals the reference's.
func TestTranslationAgreesWithUpstreamSemantics(t *testing.T) {
	w := tableWorld()
	resolve := inventoryOf(t, w)
	ps := probes(w, externals)
	files, _ := filepath.Glob("testdata/*.yaml")
	sort.Strings(files)
	if len(files) < 10 {
		t.Fatalf("testdata has %d policy sets, want the 11 of the acceptance", len(files))
	}
	var all []*networkingv1.NetworkPolicy
	run := func(name string, pols []*networkingv1.NetworkPolicy) {
		t.Run(name, func(t *testing.T) {
			diffs, allowed := compare(t, w, pols, ps, resolve, "kind = pod", Options{})
			for _, d := range diffs {
				t.Error(d)
			}
			// A policy set that changes nothing, or blocks everything,
			// would make the comparison weak.
			if allowed == len(ps) || allowed == 0 {
				t.Errorf("%d of %d probes allowed: the set should allow some and deny some", allowed, len(ps))
			}
			t.Logf("%d probes, %d allowed, %d denied", len(ps), allowed, len(ps)-allowed)
		})
	}
	for _, f := range files {
		pols := loadFile(t, f)
		all = append(all, pols...)
		run(strings.TrimSuffix(filepath.Base(f), ".yaml"), pols)
	}
	run("all-together", all)
}

func TestSubtract(t *testing.T) {
	for _, c := range []struct {
		cidr   string
		except []string
		want   string
	}{
		{"10.0.0.0/8", nil, "10.0.0.0/8"},
		{"10.0.0.0/8", []string{"10.0.0.0/8"}, ""},
		{"10.0.0.0/30", []string{"10.0.0.1/32"}, "10.0.0.0/32 10.0.0.2/31"},
		{"203.0.113.0/24", []string{"203.0.113.128/25"}, "203.0.113.0/25"},
		{"0.0.0.0/0", []string{"10.0.0.0/8", "192.168.0.0/16"}, "0.0.0.0/5 8.0.0.0/7 11.0.0.0/8 12.0.0.0/6 16.0.0.0/4 32.0.0.0/3 64.0.0.0/2 128.0.0.0/2 " +
			"192.0.0.0/9 192.128.0.0/11 192.160.0.0/13 192.169.0.0/16 192.170.0.0/15 192.172.0.0/14 192.176.0.0/12 192.192.0.0/10 193.0.0.0/8 194.0.0.0/7 196.0.0.0/6 200.0.0.0/5 208.0.0.0/4 224.0.0.0/3"},
		{"2001:db8::/32", []string{"2001:db8::/33"}, "2001:db8:8000::/33"},
	} {
		var ex []netip.Prefix
		for _, e := range c.except {
			ex = append(ex, netip.MustParsePrefix(e))
		}
		var got []string
		for _, p := range Subtract(netip.MustParsePrefix(c.cidr), ex) {
			got = append(got, p.String())
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%s except %v = %v, want %s", c.cidr, c.except, got, c.want)
		}
	}
}

// A connection to a service is decided as upstream decides it, after DNAT:
// the flow to the cluster IP is allowed on the egress side (the service's
// own address is no pod), and its DNAT-related flow to the backend pod gets
// the NetworkPolicies' verdict.
func TestServiceAddressLeftToDNATFlow(t *testing.T) {
	w := tableWorld()
	resolve := inventoryOf(t, w)
	pols := loadFile(t, "testdata/default-deny-egress.yaml") // y's pods may send nothing
	ev := compileTranslation(t, pols, "kind = pod or kind = service", Options{})
	svc := &inventory.Workload{ID: "table/service/x/web", Cluster: "table", Kind: inventory.KindService, Namespace: "x", Name: "web",
		IPs: []string{"10.96.0.10"}, ClusterIP: "10.96.0.10", Ports: []inventory.ServicePort{{Protocol: "TCP", Port: 80, TargetPort: "80"}}}
	ya := netip.MustParseAddr("10.244.2.1")
	xa := netip.MustParseAddr("10.244.1.1")
	toService := ev.Evaluate(&policy.Flow{Src: policy.Peer{IP: ya, Workload: resolve(ya)},
		Dst: policy.Peer{IP: netip.MustParseAddr("10.96.0.10"), Workload: svc}, Proto: policy.ProtoTCP, Port: 80,
		Service: svc, ServicePort: 80})
	if toService.Egress.Action != policy.Allow || !strings.HasSuffix(toService.Egress.Rule.Key, ".egress-via-service") {
		t.Fatalf("y/a → service x/web: egress %s by %s; want ALLOW by egress-via-service", toService.Egress.Action, toService.Egress.Rule.Key)
	}
	toBackend := ev.Evaluate(&policy.Flow{Src: policy.Peer{IP: ya, Workload: resolve(ya)},
		Dst: policy.Peer{IP: xa, Workload: resolve(xa)}, Proto: policy.ProtoTCP, Port: 80, Service: svc, ServicePort: 80})
	if toBackend.Action() != policy.Deny || !strings.HasSuffix(toBackend.Egress.Rule.Key, ".isolate-egress") {
		t.Fatalf("y/a → backend x/a: %s by %s; want DENY by isolate-egress", toBackend.Action(), toBackend.Egress.Rule.Key)
	}
}

// The reference's types, as the tests name them.
type (
	refWorld = netpoltest.World
	refPod   = netpoltest.Pod
	refEnd   = netpoltest.End
)
