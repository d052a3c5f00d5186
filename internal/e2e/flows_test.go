package e2e

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/lab"
)

// connsPerPair is how many connections each case makes.
const connsPerPair = 3

// plan picks the pods of cases 1-5 so that no two cases share a
// conversation (client, server, server port), before or after NAT: all
// cases then run in one conversation window and each is checked apart.
type plan struct {
	n1, n2 lab.NodeInfo
	// 1: a→b on node1. 2: a→e, node1→node2.
	a, b, e lab.PodInfo
	// 3: c→svc1 (backend b1 on node1); c2→svc2 (backend b2 on node2).
	c, b1, c2, b2 lab.PodInfo
	svc1, svc2    lab.ServiceInfo
	// 4: external→nodeIP:nodePort of front-end on its own node (local
	// endpoint) and on the other node (remote endpoint).
	fe             lab.PodInfo
	feSvc          lab.ServiceInfo
	feNode, remote lab.NodeInfo
	nodePort       int32
	// 5: out2 (node2) → external:666, out1 (node1) → external:80.
	out1, out2 lab.PodInfo
}

func (e *env) plan(t *testing.T) plan {
	t.Helper()
	var p plan
	p.n1, p.n2 = e.st.Nodes[0], e.st.Nodes[1]
	on1, on2 := e.podsOn(p.n1.Name), e.podsOn(p.n2.Name)
	if len(on1) < 4 || len(on2) < 1 {
		t.Fatalf("pods per node: %d on %s, %d on %s; want ≥ 4 and ≥ 1", len(on1), p.n1.Name, len(on2), p.n2.Name)
	}
	p.a, p.b, p.e = on1[0], on1[1], on2[0]
	// 3 intra: client c and a backend b1 with a ClusterIP on node1, c ∉
	// {a, b} (else c→b1 could be case 1's pair, or its reverse).
	found := false
	for _, c := range on1[2:] {
		for _, b1 := range on1 {
			if s, ok := e.serviceOf(b1); ok && b1.Name != c.Name && len(e.st.PodsOf(b1.Namespace, b1.App)) == 1 {
				p.c, p.b1, p.svc1, found = c, b1, s, true
				break
			}
		}
		if found {
			break
		}
	}
	if !found {
		t.Fatalf("no node1 pod pair for ClusterIP intra-node among %v", on1)
	}
	// 3 inter: client c2 on node1 (≠ a, c), backend b2 on node2.
	found = false
	for _, c2 := range on1[2:] {
		if c2.Name == p.c.Name {
			continue
		}
		for _, b2 := range on2 {
			if s, ok := e.serviceOf(b2); ok && len(e.st.PodsOf(b2.Namespace, b2.App)) == 1 {
				p.c2, p.b2, p.svc2, found = c2, b2, s, true
				break
			}
		}
		if found {
			break
		}
	}
	if !found {
		t.Fatalf("no pod pair for ClusterIP inter-node: node1 %v node2 %v", on1, on2)
	}
	fes := e.st.PodsOf("sock-shop", "front-end")
	if len(fes) != 1 {
		t.Fatalf("front-end pods: %v", fes)
	}
	p.fe = fes[0]
	var ok bool
	if p.feSvc, ok = e.st.Service("sock-shop", "front-end"); !ok || p.feSvc.Ports[0].NodePort == 0 {
		t.Fatalf("front-end NodePort service: %+v", p.feSvc)
	}
	p.nodePort = p.feSvc.Ports[0].NodePort
	p.feNode, p.remote = e.node(p.fe.Node), e.other(p.fe.Node)
	p.out1, p.out2 = on1[len(on1)-1], on2[len(on2)-1]
	return p
}

// run makes connsPerPair connections of every case, all within one
// conversation window of every agent.
func (e *env) run(t *testing.T, p plan) (from, to time.Time) {
	t.Helper()
	sleepUntil(e.slot(t, 2*time.Second))
	from = time.Now()
	for range connsPerPair {
		e.get(t, p.a, hostPort(p.b.IP, p.b.Ports[0]))                    // 1
		e.get(t, p.a, hostPort(p.e.IP, p.e.Ports[0]))                    // 2
		e.get(t, p.c, hostPort(p.svc1.ClusterIP, p.svc1.Ports[0].Port))  // 3 intra
		e.get(t, p.c2, hostPort(p.svc2.ClusterIP, p.svc2.Ports[0].Port)) // 3 inter
		e.extGet(t, hostPort(p.feNode.IP, p.nodePort))                   // 4 local
		e.extGet(t, hostPort(p.remote.IP, p.nodePort))                   // 4 remote
		e.get(t, p.out2, hostPort(lab.ExternalIP, 666))                  // 5
		e.get(t, p.out1, hostPort(lab.ExternalIP, 80))                   // 5
	}
	to = time.Now()
	if d := to.Sub(from); d > 2*time.Second {
		t.Fatalf("the traffic took %s, longer than the 2 s slot in the agents' window: counts would be split", d)
	}
	t.Logf("%d connections in %s; waiting for the pipeline", 8*connsPerPair, to.Sub(from).Round(time.Millisecond))
	sleepUntil(e.settled(to))
	return from, to
}

// overlay is the inter-node path of pod traffic: the node interfaces a
// flow between the two nodes' pods is seen at.
func (e *env) overlay(n lab.NodeInfo) string {
	if e.mode == lab.ModeVXLAN {
		return point(n.Name, n.VXLAN)
	}
	return point(n.Name, n.Uplink)
}

// tunnelFor checks, in VXLAN mode, that inner is carried by exactly one
// UDP src→dst:4789 tunnel flow, related both ways; in direct mode that
// there is no tunnel flow at all.
func (e *env) tunnelFor(t *testing.T, fs []flow.Flow, what string, inner flow.Flow, src, dst lab.NodeInfo) {
	t.Helper()
	if e.mode != lab.ModeVXLAN {
		if tun := selectFlows(fs, "udp", src.IP, dst.IP, lab.VXLANPort); len(tun) != 0 {
			t.Errorf("%s: direct routing, yet tunnel flows:%s", what, describe(tun))
		}
		return
	}
	tun := one(t, fs, what+": tunnel", "udp", src.IP, dst.IP, lab.VXLANPort)
	if tun.Tunnel != "vxlan" {
		t.Errorf("%s: tunnel flow type %q, want vxlan", what, tun.Tunnel)
	}
	wantPoints(t, what+": tunnel", tun, point(src.Name, src.Uplink), point(dst.Name, dst.Uplink))
	wantRelated(t, what+": pod flow ↔ tunnel", inner, tun, flow.ReasonVXLAN)
}

func TestFlowAcceptance(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, mode)
			p := e.plan(t)
			from, _ := e.run(t, p)
			fs := e.search(t, "", from.Add(-time.Second))
			t.Logf("%d flows", len(fs))

			t.Run("1-intra-node-pod-to-pod", func(t *testing.T) {
				f := one(t, fs, "pod→pod", "tcp", p.a.IP, p.b.IP, uint16(p.b.Ports[0]))
				wantConns(t, "pod→pod", f, connsPerPair)
				wantPoints(t, "pod→pod", f, podPoint(p.a), podPoint(p.b))
				for _, pt := range f.Points {
					if pt.Kind != "pod" {
						t.Errorf("point %+v: kind %q, want pod", pt, pt.Kind)
					}
				}
				if pods := []string{f.Points[0].Pod, f.Points[1].Pod}; !(slices.Contains(pods, podKey(p.a)) && slices.Contains(pods, podKey(p.b))) {
					t.Errorf("points name pods %v, want %s and %s", pods, podKey(p.a), podKey(p.b))
				}
				if n := len(selectFlows(fs, "tcp", p.b.IP, p.a.IP, uint16(p.a.Ports[0]))); n != 0 {
					t.Errorf("%d flows in the reverse direction", n)
				}
			})

			t.Run("2-inter-node-pod-to-pod", func(t *testing.T) {
				f := one(t, fs, "pod→pod", "tcp", p.a.IP, p.e.IP, uint16(p.e.Ports[0]))
				wantConns(t, "pod→pod", f, connsPerPair)
				wantPoints(t, "pod→pod", f, podPoint(p.a), e.overlay(p.n1), e.overlay(p.n2), podPoint(p.e))
				e.tunnelFor(t, fs, "pod→pod", f, p.n1, p.n2)
			})

			clusterIP := func(t *testing.T, c, b lab.PodInfo, svc lab.ServiceInfo, path ...string) {
				sp := svc.Ports[0]
				pre := one(t, fs, "pod→service", "tcp", c.IP, svc.ClusterIP, uint16(sp.Port))
				post := one(t, fs, "pod→pod after DNAT", "tcp", c.IP, b.IP, uint16(sp.TargetPort))
				wantConns(t, "pod→service", pre, connsPerPair)
				wantConns(t, "pod→pod after DNAT", post, connsPerPair)
				wantPoints(t, "pod→service (source pod interface only)", pre, podPoint(c))
				wantPoints(t, "pod→pod after DNAT", post, append(path, podPoint(b))...)
				wantRelated(t, "ClusterIP", pre, post, flow.ReasonClusterIP)
				if pre.Dst.Service != svc.Namespace+"/"+svc.Name {
					t.Errorf("pod→service: dst service %q, want %s/%s", pre.Dst.Service, svc.Namespace, svc.Name)
				}
			}
			t.Run("3-clusterip-intra-node", func(t *testing.T) {
				clusterIP(t, p.c, p.b1, p.svc1)
			})
			t.Run("3-clusterip-inter-node", func(t *testing.T) {
				clusterIP(t, p.c2, p.b2, p.svc2, e.overlay(p.n1), e.overlay(p.n2))
				post := one(t, fs, "pod→pod after DNAT", "tcp", p.c2.IP, p.b2.IP, uint16(p.svc2.Ports[0].TargetPort))
				e.tunnelFor(t, fs, "ClusterIP inter-node", post, p.n1, p.n2)
			})

			nodePort := func(t *testing.T, ingress lab.NodeInfo, snat string, path ...string) {
				pre := one(t, fs, "external→NodePort", "tcp", lab.ExternalIP, ingress.IP, uint16(p.nodePort))
				post := one(t, fs, "node(SNAT)→pod", "tcp", snat, p.fe.IP, uint16(p.fe.Ports[0]))
				wantConns(t, "external→NodePort", pre, connsPerPair)
				wantConns(t, "node(SNAT)→pod", post, connsPerPair)
				wantPoints(t, "external→NodePort (node interface)", pre, point(ingress.Name, ingress.Uplink))
				wantPoints(t, "node(SNAT)→pod", post, append(path, podPoint(p.fe))...)
				wantRelated(t, "NodePort", pre, post, flow.ReasonNodePort)
			}
			t.Run("4-nodeport-local", func(t *testing.T) {
				nodePort(t, p.feNode, p.feNode.BridgeIP)
			})
			t.Run("4-nodeport-remote", func(t *testing.T) {
				snat := p.remote.IP
				if mode == lab.ModeVXLAN {
					snat = p.remote.VXLANIP
				}
				nodePort(t, p.remote, snat, e.overlay(p.remote), e.overlay(p.feNode))
				post := one(t, fs, "node(SNAT)→pod", "tcp", snat, p.fe.IP, uint16(p.fe.Ports[0]))
				e.tunnelFor(t, fs, "NodePort remote endpoint", post, p.remote, p.feNode)
			})

			t.Run("5-pod-to-external", func(t *testing.T) {
				for _, c := range []struct {
					pod  lab.PodInfo
					port uint16
				}{{p.out2, 666}, {p.out1, 80}} {
					n := e.node(c.pod.Node)
					pre := one(t, fs, "pod→external", "tcp", c.pod.IP, lab.ExternalIP, c.port)
					post := one(t, fs, "node(SNAT)→external", "tcp", n.IP, lab.ExternalIP, c.port)
					wantConns(t, "pod→external", pre, connsPerPair)
					wantConns(t, "node→external", post, connsPerPair)
					wantPoints(t, "pod→external (pod interface)", pre, podPoint(c.pod))
					wantPoints(t, "node→external (node interface)", post, point(n.Name, n.Uplink))
					wantRelated(t, "egress SNAT", pre, post, flow.ReasonEgress)
				}
			})

			t.Run("6-every-flow-complete", func(t *testing.T) {
				if len(fs) == 0 {
					t.Fatal("no flows")
				}
				checked := 0
				for _, f := range fs {
					// IPv6 chatter of freshly plugged interfaces (router
					// solicitations, MLD reports) is reported too, but
					// is not the generator's traffic.
					if a, err := netip.ParseAddr(f.Src.IP); err == nil && a.Is6() {
						continue
					}
					e.checkComplete(t, f)
					checked++
				}
				t.Logf("%d of %d flows checked (the others are IPv6 neighbour discovery and MLD)", checked, len(fs))
			})

			t.Run("9-bad-input", func(t *testing.T) { e.testBadInput(t, p, from.Add(-time.Second)) })
			t.Run("7-conversation-15s-cadence", func(t *testing.T) { e.testConversationCadence(t, p) })
			t.Run("7-detailed-per-second", func(t *testing.T) { e.testDetailedCadence(t, p) })
			t.Run("8-agent-and-server-restart", func(t *testing.T) { e.testRestarts(t, p) })
		})
	}
}

// checkComplete: bytes and packets both ways, TCP flags, and both ends'
// workload names and labels, wherever the address belongs to a workload.
func (e *env) checkComplete(t *testing.T, f flow.Flow) {
	t.Helper()
	d := describe([]flow.Flow{f})
	switch f.Proto {
	case "tcp":
		if f.FwdPackets == 0 || f.RevPackets == 0 || f.FwdBytes == 0 || f.RevBytes == 0 {
			t.Errorf("flow without packets or bytes both ways:%s", d)
		}
		for _, fl := range []string{flow.FlagSYN, flow.FlagSYNACK, flow.FlagFIN} {
			if !f.HasFlag(fl) {
				t.Errorf("flow without %s:%s", fl, d)
			}
		}
		if !f.Replied {
			t.Errorf("flow not replied:%s", d)
		}
	case "udp":
		// A VXLAN tunnel flow is one-way: the replies are a tunnel flow
		// of their own (the other node's UDP to 4789).
		if f.Tunnel != "vxlan" || f.FwdPackets == 0 || f.FwdBytes == 0 {
			t.Errorf("unexpected UDP flow:%s", d)
		}
	default:
		t.Errorf("unexpected %s flow:%s", f.Proto, d)
	}
	for _, end := range []struct {
		name string
		ep   flow.Endpoint
	}{{"src", f.Src}, {"dst", f.Dst}} {
		e.checkEnd(t, end.name, end.ep, d)
	}
}

func (e *env) checkEnd(t *testing.T, which string, ep flow.Endpoint, d string) {
	t.Helper()
	bad := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s %s: "+format+"%s", append([]any{which, ep.IP}, append(args, d)...)...)
	}
	for _, p := range e.st.Pods {
		if p.IP == ep.IP {
			if ep.Kind != "pod" || ep.Name != p.Name || ep.Namespace != p.Namespace || ep.Labels["app"] != p.App || ep.Node != p.Node {
				bad("want pod %s (app=%s, node %s), have kind %q name %q namespace %q labels %v node %q", podKey(p), p.App, p.Node, ep.Kind, ep.Name, ep.Namespace, ep.Labels, ep.Node)
			}
			return
		}
	}
	for _, n := range e.st.Nodes {
		if n.IP == ep.IP {
			if ep.Kind != "node" || ep.Name != n.Name || ep.Labels[lab.LabelLab] == "" {
				bad("want node %s with its labels, have kind %q name %q labels %v", n.Name, ep.Kind, ep.Name, ep.Labels)
			}
			return
		}
	}
	for _, s := range e.st.Services {
		if s.ClusterIP == ep.IP {
			if ep.Kind != "service" || ep.Name != s.Name || ep.Namespace != s.Namespace || ep.Labels["app"] != s.Name {
				bad("want service %s/%s with its labels, have kind %q name %q namespace %q labels %v", s.Namespace, s.Name, ep.Kind, ep.Name, ep.Namespace, ep.Labels)
			}
			return
		}
	}
	if ep.IP == lab.ExternalIP {
		return // outside the cluster: no workload
	}
	// The nodes' bridge and VXLAN addresses (NodePort SNAT sources) are
	// in no inventory object.
	a := netip.MustParseAddr(ep.IP)
	for _, n := range e.st.Nodes {
		if ep.IP == n.BridgeIP || ep.IP == n.VXLANIP {
			return
		}
		if pfx := netip.MustParsePrefix(n.PodCIDR); pfx.Contains(a) {
			bad("an address of %s's pod CIDR that no lab pod holds", n.Name)
			return
		}
	}
	if !strings.HasPrefix(ep.IP, "10.") {
		bad("unexpected address")
	}
}
