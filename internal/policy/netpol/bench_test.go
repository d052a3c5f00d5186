package netpol

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
)

// benchWorld is a cluster of 50 namespaces × 40 pods (2,000 pods, 20 apps
// per namespace, tiers) with 1,000 NetworkPolicies: per namespace a
// default deny of both directions, and per app an ingress from its callers
// (same namespace by label, other namespaces by namespace label and pod
// label) on a port, a named port or a range, plus egress to them and to an
// ipBlock with exceptions.
func benchWorld() (*refWorld, []*networkingv1.NetworkPolicy) {
	w := &refWorld{NSLabels: map[string]map[string]string{}}
	var pols []*networkingv1.NetworkPolicy
	tcp := corev1.ProtocolTCP
	for n := range 50 {
		ns := fmt.Sprintf("ns%02d", n)
		w.NSLabels[ns] = map[string]string{"kubernetes.io/metadata.name": ns, "team": fmt.Sprintf("t%d", n%5)}
		for p := range 40 {
			app := fmt.Sprintf("app%02d", p%20)
			w.Pods = append(w.Pods, &refPod{NS: ns, Name: fmt.Sprintf("%s-%d", app, p/20),
				Labels: map[string]string{"app": app, "tier": fmt.Sprint(p % 3)},
				IP:     netip.AddrFrom4([4]byte{10, 244, byte(n), byte(p + 2)}),
				Ports:  []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: tcp}}})
		}
		pols = append(pols, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny", Namespace: ns},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{"Ingress", "Egress"}}})
		for a := range 19 {
			app, caller := fmt.Sprintf("app%02d", a), fmt.Sprintf("app%02d", a+1)
			port := intstr.FromInt32(int32(8000 + a))
			named := intstr.FromString("http")
			end := int32(9000 + a)
			pols = append(pols, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
				Spec: networkingv1.NetworkPolicySpec{
					PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
					Ingress: []networkingv1.NetworkPolicyIngressRule{{
						From: []networkingv1.NetworkPolicyPeer{
							{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": caller}}},
							{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("t%d", a%5)}},
								PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "In", Values: []string{"0", "1"}}}}},
						},
						Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}, {Protocol: &tcp, Port: &named}, {Protocol: &tcp, Port: &port, EndPort: &end}},
					}},
					Egress: []networkingv1.NetworkPolicyEgressRule{{
						To: []networkingv1.NetworkPolicyPeer{
							{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": caller}}},
							{IPBlock: &networkingv1.IPBlock{CIDR: "203.0.113.0/24", Except: []string{"203.0.113.128/25"}}},
						},
					}},
				}})
		}
	}
	return w, pols
}

// BenchmarkTranslate: 1,000 NetworkPolicies into a version, and the
// version compiled by the policy evaluator.
func BenchmarkTranslate(b *testing.B) {
	_, pols := benchWorld()
	var intents int
	runtime.GC()
	cpu := processCPU()
	for b.Loop() {
		v, err := Translate("bench", pols, Options{})
		if err != nil {
			b.Fatal(err)
		}
		intents = len(v.Policies)
		if _, err := policy.Compile(policy.Set{Scopes: []policy.Scope{{Name: "bench", Filter: "kind = pod"}},
			Versions: map[string]*policy.Version{"bench": v}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((processCPU()-cpu).Milliseconds())/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(len(pols)), "networkpolicies")
	b.ReportMetric(float64(intents), "intents")
}

// BenchmarkVerdicts decides the same random flows with the imported version
// (the policy evaluator, one warmed session; the one-time classification of
// each peer reported apart) and with the reference, a direct
// implementation of the API's semantics that parses selectors as it goes,
// as kube-network-policies' evaluator does per packet.
func BenchmarkVerdicts(b *testing.B) {
	w, pols := benchWorld()
	v, err := Translate("bench", pols, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ev, err := policy.Compile(policy.Set{Scopes: []policy.Scope{{Name: "bench", Filter: "kind = pod"}},
		Versions: map[string]*policy.Version{"bench": v}})
	if err != nil {
		b.Fatal(err)
	}
	created := time.Now().Add(-time.Hour)
	byIP := map[netip.Addr]*inventory.Workload{}
	for _, p := range w.Pods {
		c := inventory.Container{Name: "main"}
		for _, cp := range p.Ports {
			c.Ports = append(c.Ports, inventory.ContainerPort{Name: cp.Name, Protocol: string(cp.Protocol), Port: cp.ContainerPort})
		}
		byIP[p.IP] = &inventory.Workload{ID: "b/pod/" + p.NS + "/" + p.Name, Kind: inventory.KindPod, Namespace: p.NS, Name: p.Name,
			Labels: p.Labels, NamespaceLabels: w.NSLabels[p.NS], IPs: []string{p.IP.String()}, Containers: []inventory.Container{c},
			Created: created, Updated: created}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	type probe struct {
		src, dst refEnd
		port     int32
	}
	probes := make([]probe, 4096)
	flows := make([]policy.Flow, len(probes))
	for i := range probes {
		s, d := w.Pods[rng.IntN(len(w.Pods))], w.Pods[rng.IntN(len(w.Pods))]
		probes[i] = probe{refEnd{Pod: s, IP: s.IP}, refEnd{Pod: d, IP: d.IP}, int32(8000 + rng.IntN(20))}
		if i%8 == 0 {
			probes[i].port = 8080
		}
		flows[i] = policy.Flow{Src: policy.Peer{IP: s.IP, Workload: byIP[s.IP]}, Dst: policy.Peer{IP: d.IP, Workload: byIP[d.IP]},
			Proto: policy.ProtoTCP, Port: uint16(probes[i].port)}
	}
	b.Run("imported-version", func(b *testing.B) {
		// Warm the session: each peer is classified once (every filter of
		// the version against it), then a flow costs look-ups.
		s := ev.NewSession()
		warm := processCPU()
		for i := range flows {
			s.Evaluate(&flows[i])
		}
		warm = processCPU() - warm
		runtime.GC()
		i, cpu := 0, processCPU()
		for b.Loop() {
			s.Evaluate(&flows[i%len(flows)])
			i++
		}
		perVerdict(b, cpu)
		b.ReportMetric(float64(warm.Microseconds())/float64(len(w.Pods)), "cpu-µs/peer-classified")
	})
	b.Run("reference", func(b *testing.B) {
		runtime.GC()
		i, cpu := 0, processCPU()
		for b.Loop() {
			p := &probes[i%len(probes)]
			w.Allowed(pols, p.src, p.dst, corev1.ProtocolTCP, p.port)
			i++
		}
		perVerdict(b, cpu)
	})
}

// processCPU is the process's user+system CPU time: on a machine shared
// with other builds, it measures the work where wall time measures the
// neighbours too.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// perVerdict reports CPU time per verdict and verdicts per CPU-second.
func perVerdict(b *testing.B, since time.Duration) {
	cpu := processCPU() - since
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/verdict")
	b.ReportMetric(float64(b.N)/cpu.Seconds(), "verdicts/cpu-s")
}
