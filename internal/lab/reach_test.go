package lab

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/palisade-dev/palisade/internal/lab/app"
)

// TestLabNetPol runs sock-shop and the upstream NetworkPolicy test model
// side by side, in both modes: the model's namespaces, labels, pods and
// named ports are in the API, its pods are spread over both nodes, with no
// policy the whole 9 × 9 × 2 ports × 2 protocols matrix is reachable (also
// from the external host and a node), closed ports are blocked, sock-shop
// still works, and down leaves nothing — neither in the kernel nor in the
// API.
func TestLabNetPol(t *testing.T) {
	requireRoot(t)
	for _, mode := range []Mode{ModeDirect, ModeVXLAN} {
		t.Run(string(mode), func(t *testing.T) {
			kube := startAPI(t)
			name := testName(t, "p"+string(mode[0]))
			ctx := context.Background()
			l := upLab(t, Config{Name: name, Nodes: 2, Mode: mode, App: "sockshop,netpol", RestConfig: kube.Config, ProbePeriod: -1})
			st := l.Status()
			model := app.NetPol()
			if want := len(app.SockShop().Components) + len(model.Components); len(st.Pods) != want {
				t.Fatalf("pods: got %d, want %d", len(st.Pods), want)
			}

			t.Run("model", func(t *testing.T) { checkNetPolModel(t, l.Client(), st) })

			t.Run("full matrix", func(t *testing.T) {
				start := time.Now()
				probes, err := l.Reach(ctx, ReachOptions{})
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%d probes in %s", len(probes), time.Since(start).Round(time.Millisecond))
				if len(probes) != 9*9*2*2 {
					t.Fatalf("%d probes, want 324", len(probes))
				}
				seen := map[string]bool{}
				for _, p := range probes {
					seen[p.Case()] = true
					if !p.Reachable {
						t.Errorf("%s blocked with no policy: %s", p.Case(), p.Error)
					}
				}
				if len(seen) != 324 {
					t.Errorf("%d distinct cases, want 324", len(seen))
				}
			})

			t.Run("closed ports blocked", func(t *testing.T) {
				probes, err := l.Reach(ctx, ReachOptions{From: []string{"x/a"}, To: []string{"y/b", "z/c", "x/a"},
					Ports: []int32{82, 8080}, Timeout: 2 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				if len(probes) != 12 {
					t.Fatalf("%d probes, want 12", len(probes))
				}
				for _, p := range probes {
					// Nothing serves the port: TCP is reset, UDP gets ICMP
					// port unreachable; neither may count as reachable.
					if p.Reachable || !strings.Contains(p.Error, "refused") {
						t.Errorf("%s: reachable=%v error %q, want blocked (connection refused)", p.Case(), p.Reachable, p.Error)
					}
				}
			})

			t.Run("from external and nodes", func(t *testing.T) {
				probes, err := l.Reach(ctx, ReachOptions{From: []string{External, "node1", "node2"}})
				if err != nil {
					t.Fatal(err)
				}
				if len(probes) != 3*9*2*2 {
					t.Fatalf("%d probes, want %d", len(probes), 3*9*2*2)
				}
				for _, p := range probes {
					if !p.Reachable {
						t.Errorf("%s blocked with no policy: %s", p.Case(), p.Error)
					}
				}
				// Pod → the external host: TCP 80 is served, UDP 80 is not.
				probes, err = l.Reach(ctx, ReachOptions{From: []string{"y/c"}, To: []string{External}, Ports: []int32{80}})
				if err != nil {
					t.Fatal(err)
				}
				if len(probes) != 2 || !probes[0].Reachable || probes[1].Reachable {
					t.Errorf("y/c → external tcp/80 and udp/80: %+v, want reachable then blocked", probes)
				}
			})

			t.Run("bad options", func(t *testing.T) {
				for _, opt := range []ReachOptions{
					{From: []string{"x/nope"}}, {To: []string{"node1"}}, {Protocols: []string{"sctp"}},
					{Ports: []int32{70000}}, {From: []string{"a"}},
				} {
					if _, err := l.Reach(ctx, opt); err == nil {
						t.Errorf("%+v accepted", opt)
					}
				}
			})

			t.Run("sock-shop alongside", func(t *testing.T) {
				rep, err := Traffic(ctx, st, app.SockShop(), TrafficOptions{Duration: 2 * time.Second, Rate: 40})
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range rep.Edges {
					if e.OK == 0 || e.Failed != 0 {
						t.Errorf("edge %s->%s: %d ok, %d failed, last error %s", e.From, e.To, e.OK, e.Failed, e.LastError)
					}
				}
			})

			if err := l.Down(); err != nil {
				t.Errorf("down: %v", err)
			}
			assertGone(t, name)
			c := kubernetes.NewForConfigOrDie(kube.Config)
			// Down leaves the namespaces to the namespace controller
			// (WaitNamespacesGone unset): they go within seconds.
			appNS := append(slices.Clone(app.NetPolNamespaces), "sock-shop")
			if err := waitNamespacesGone(ctx, c, appNS); err != nil {
				t.Error(err)
			}
			for _, ns := range appNS {
				if _, err := c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					t.Errorf("namespace %s after down: %v", ns, err)
				}
			}
			if pods, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err != nil || len(pods.Items) != 0 {
				t.Errorf("pods after down: %v %v", pods, err)
			}
			if ns, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil || len(ns.Items) != 0 {
				t.Errorf("nodes after down: %v %v", ns, err)
			}
		})
	}
}

// checkNetPolModel compares the API's view of the model with upstream's:
// namespace and pod labels, container port names, and the lab's status.
func checkNetPolModel(t *testing.T, c kubernetes.Interface, st Status) {
	ctx := context.Background()
	nodesUsed := map[string]bool{}
	for _, ns := range app.NetPolNamespaces {
		n, err := c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n.Labels["ns"] != ns || n.Labels["kubernetes.io/metadata.name"] != ns {
			t.Errorf("namespace %s labels %v", ns, n.Labels)
		}
		pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) != len(app.NetPolPods) {
			t.Errorf("namespace %s has %d pods", ns, len(pods.Items))
		}
		for _, p := range pods.Items {
			name := p.Labels["pod"]
			if !slices.Contains(app.NetPolPods, name) || !strings.HasPrefix(p.Name, name+"-") {
				t.Errorf("pod %s/%s labels %v", ns, p.Name, p.Labels)
			}
			var portNames []string
			for _, ctr := range p.Spec.Containers {
				for _, cp := range ctr.Ports {
					portNames = append(portNames, cp.Name)
				}
			}
			slices.Sort(portNames)
			if want := []string{"serve-80-tcp", "serve-80-udp", "serve-81-tcp", "serve-81-udp"}; !slices.Equal(portNames, want) {
				t.Errorf("pod %s/%s ports %v, want %v", ns, p.Name, portNames, want)
			}
			info, err := st.FindPod(ns + "/" + name)
			if err != nil {
				t.Error(err)
				continue
			}
			if info.Name != p.Name || info.App != name || info.IP != p.Status.PodIP || info.Node != p.Spec.NodeName ||
				!slices.Equal(info.Ports, []int32{80, 81}) || !slices.Equal(info.UDPPorts, []int32{80, 81}) {
				t.Errorf("status of %s/%s: %+v; API ip %s node %s", ns, p.Name, info, p.Status.PodIP, p.Spec.NodeName)
			}
			nodesUsed[p.Spec.NodeName] = true
		}
	}
	if len(nodesUsed) != len(st.Nodes) {
		t.Errorf("model pods on nodes %v, want all %d nodes (every node pair crossed)", nodesUsed, len(st.Nodes))
	}
	if got := DefaultPeers(st); len(got) != 9 || got[0] != "x/a" || got[8] != "z/c" {
		t.Errorf("default peers %v", got)
	}
}

// TestTable: FormatTable prints upstream's layout and ParseTable reads it
// back, also from a hand-written expectation.
func TestTable(t *testing.T) {
	var probes []Probe
	for _, proto := range []string{"tcp", "udp"} {
		for _, from := range []string{"x/a", "x/b"} {
			for _, to := range []string{"x/a", "x/b", "y/a"} {
				probes = append(probes, Probe{From: from, To: to, Port: 80, Protocol: proto, Reachable: from != "x/b" || to == "x/b"})
			}
		}
	}
	text := FormatTable(probes)
	want := "tcp/80\n-\tx/a\tx/b\ty/a\nx/a\t.\t.\t.\nx/b\tX\t.\tX\n\nudp/80\n-\tx/a\tx/b\ty/a\nx/a\t.\t.\t.\nx/b\tX\t.\tX\n"
	if text != want {
		t.Errorf("table:\n%s\nwant:\n%s", text, want)
	}
	back, err := ParseTable(text)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back, probes) {
		t.Errorf("parsed back %+v", back)
	}
	expected, err := ParseTable(`
tcp/80
-    x/a  x/b  y/a
x/a  .    .    .
x/b  X    .    .
`)
	if err != nil {
		t.Fatal(err)
	}
	diff := Diff(expected, probes)
	if len(diff) != 1 || diff[0] != "x/b → y/a tcp/80: want reachable, got blocked" {
		t.Errorf("diff %q", diff)
	}
	if d := Diff(probes[:1], nil); len(d) != 1 || !strings.Contains(d[0], "not probed") {
		t.Errorf("diff with nothing probed: %q", d)
	}
	for _, bad := range []string{"tcp80\n-\tx/a\n", "tcp/80\nx/a\t.\n", "tcp/80\n-\tx/a\nx/a\t.\t.\n", "tcp/80\n-\tx/a\nx/a\tY\n"} {
		if _, err := ParseTable(bad); err == nil || !strings.Contains(err.Error(), "line ") {
			t.Errorf("ParseTable(%q) = %v, want an error naming the line", bad, err)
		}
	}
}
