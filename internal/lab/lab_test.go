package lab

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/palisade-dev/palisade/internal/devkube"
	"github.com/palisade-dev/palisade/internal/lab/app"
)

// startAPI starts a private control plane for one test.
func startAPI(t testing.TB) *devkube.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	c, err := devkube.Start(ctx, devkube.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("devkube: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

// upLab brings a lab up for one test; Down is called at cleanup (again:
// it is idempotent) in case the test did not get there.
func upLab(t *testing.T, cfg Config) *Lab {
	t.Helper()
	l, err := Up(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Down() })
	return l
}

// assertContained checks the root namespace has no route, address or NAT
// rule toward the lab's ranges.
func assertContained(t *testing.T) {
	t.Helper()
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 0}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var nets []*net.IPNet
	for _, r := range routes {
		if r.Dst != nil {
			nets = append(nets, r.Dst)
		}
	}
	for _, a := range addrs {
		nets = append(nets, a.IPNet)
	}
	for _, lab := range []string{UnderlayCIDR, ClusterCIDR, ServiceCIDR, ExternalCIDR} {
		_, ln, _ := net.ParseCIDR(lab)
		for _, n := range nets {
			ones, _ := n.Mask.Size()
			if ones > 0 && (ln.Contains(n.IP) || n.Contains(ln.IP)) {
				t.Errorf("root namespace has %s overlapping lab range %s", n, lab)
			}
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		n := l.Attrs().Name
		if n == IfBridge || n == IfVXLAN || n == IfUnder || strings.HasPrefix(n, "veth-node") || n == "veth-ext" {
			t.Errorf("root namespace has lab interface %s", n)
		}
	}
	out, err := exec.Command("iptables-save").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v %s", err, out)
	}
	if strings.Contains(string(out), "PAL-") || strings.Contains(string(out), "palisade lab") {
		t.Errorf("root namespace has lab iptables rules:\n%s", out)
	}
}

func assertGone(t *testing.T, name string) {
	t.Helper()
	left, err := Leftovers(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("namespaces left after down: %v", left)
	}
	if _, err := os.Stat(StateDir(name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir left: %v", err)
	}
	assertContained(t)
}

func TestLabSockShop(t *testing.T) {
	requireRoot(t)
	for _, mode := range []Mode{ModeDirect, ModeVXLAN} {
		t.Run(string(mode), func(t *testing.T) {
			kube := startAPI(t)
			name := testName(t, "s"+string(mode[0]))
			ctx := context.Background()
			l := upLab(t, Config{Name: name, Nodes: 2, Mode: mode, App: "sockshop", RestConfig: kube.Config, ProbePeriod: 500 * time.Millisecond})
			assertContained(t)
			st := l.Status()
			a := app.SockShop()
			if len(st.Pods) != len(a.Components) {
				t.Fatalf("pods: got %d, want %d", len(st.Pods), len(a.Components))
			}

			t.Run("call graph", func(t *testing.T) {
				rep, err := Traffic(ctx, st, a, TrafficOptions{Duration: 3 * time.Second, Rate: 60})
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range rep.Edges {
					if e.OK == 0 || e.Failed != 0 {
						t.Errorf("edge %s->%s via %s (%v): %d ok, %d failed, last error %s", e.From, e.To, e.Via, e.Targets, e.OK, e.Failed, e.LastError)
					}
				}
			})
			t.Run("closed port refused", func(t *testing.T) {
				carts, _ := st.FindPod("sock-shop/carts")
				_, err := l.Dial("sock-shop/front-end", net.JoinHostPort(carts.IP, "81"))
				if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Errorf("dial a closed port: %v, want connection refused", err)
				}
			})
			t.Run("hairpin", func(t *testing.T) {
				svc, _ := st.Service("sock-shop", "carts")
				carts, _ := st.FindPod("sock-shop/carts")
				body, err := l.Get("sock-shop/carts", svc.ClusterIP+":80")
				if err != nil || !strings.Contains(body, carts.Name) {
					t.Errorf("carts -> own ClusterIP: %q, %v", body, err)
				}
			})
			t.Run("API agrees", func(t *testing.T) {
				checkAPI(t, l.Client(), l.Status(), name)
				// What `lab status -o json` prints comes from the state file.
				saved, err := ReadState(StateDir(name))
				if err != nil {
					t.Fatal(err)
				}
				checkAPI(t, l.Client(), saved.Status, name)
			})
			t.Run("probes", func(t *testing.T) {
				time.Sleep(1200 * time.Millisecond)
				ok, bad := l.Probes()
				if ok == 0 || bad != 0 {
					t.Errorf("probes: %d ok, %d failed", ok, bad)
				}
			})
			if mode == ModeDirect {
				t.Run("scale", func(t *testing.T) { checkScale(t, l) })
			}
			if err := l.Down(); err != nil {
				t.Errorf("down: %v", err)
			}
			assertGone(t, name)
			c := kubernetes.NewForConfigOrDie(kube.Config)
			if ns, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil || len(ns.Items) != 0 {
				t.Errorf("nodes after down: %v %v", ns, err)
			}
		})
	}
}

// checkAPI compares what the API server lists with the lab's Status.
func checkAPI(t *testing.T, c kubernetes.Interface, st Status, name string) {
	ctx := context.Background()
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: LabelLab + "=" + name})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != len(st.Nodes) {
		t.Errorf("API lists %d nodes, status %d", len(nodes.Items), len(st.Nodes))
	}
	for _, n := range nodes.Items {
		want, ok := st.Node(n.Name)
		if !ok {
			t.Errorf("API node %s not in status", n.Name)
			continue
		}
		ready := false
		for _, c := range n.Status.Conditions {
			ready = ready || c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
		}
		if n.Spec.PodCIDR != want.PodCIDR || len(n.Status.Addresses) == 0 || n.Status.Addresses[0].Address != want.IP || !ready {
			t.Errorf("node %s: API %v %v ready=%v, status %+v", n.Name, n.Spec.PodCIDR, n.Status.Addresses, ready, want)
		}
	}
	pods, err := c.CoreV1().Pods("sock-shop").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != len(st.Pods) {
		t.Errorf("API lists %d pods, status %d", len(pods.Items), len(st.Pods))
	}
	podIPs := map[string][]string{}
	for _, p := range pods.Items {
		want, err := st.FindPod(p.Namespace + "/" + p.Name)
		if err != nil {
			t.Error(err)
			continue
		}
		node, _ := st.Node(want.Node)
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP != want.IP || p.Spec.NodeName != want.Node ||
			p.Status.HostIP != node.IP || len(p.OwnerReferences) == 0 || p.OwnerReferences[0].Kind != "ReplicaSet" ||
			len(p.Status.ContainerStatuses) == 0 || !strings.Contains(p.Status.ContainerStatuses[0].ImageID, "@sha256:") {
			t.Errorf("pod %s: API phase %s ip %s node %s host %s owners %v; status %+v", p.Name, p.Status.Phase,
				p.Status.PodIP, p.Spec.NodeName, p.Status.HostIP, p.OwnerReferences, want)
		}
		podIPs[p.Labels["app"]] = append(podIPs[p.Labels["app"]], p.Status.PodIP)
	}
	svcs, err := c.CoreV1().Services("sock-shop").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs.Items {
		want, ok := st.Service(s.Namespace, s.Name)
		if !ok || want.ClusterIP != s.Spec.ClusterIP || want.Ports[0].NodePort != s.Spec.Ports[0].NodePort {
			t.Errorf("service %s: API %s %v, status %+v", s.Name, s.Spec.ClusterIP, s.Spec.Ports, want)
		}
		if s.Spec.Type == corev1.ServiceTypeNodePort && s.Spec.Ports[0].NodePort == 0 {
			t.Errorf("service %s has no nodePort", s.Name)
		}
		sls, err := c.DiscoveryV1().EndpointSlices("sock-shop").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + s.Name})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, sl := range sls.Items {
			for _, ep := range sl.Endpoints {
				got = append(got, ep.Addresses...)
			}
		}
		wantIPs := podIPs[s.Name]
		slices.Sort(got)
		slices.Sort(wantIPs)
		if !slices.Equal(got, wantIPs) {
			t.Errorf("endpoint slices of %s: %v, pods %v", s.Name, got, wantIPs)
		}
	}
}

// checkScale scales carts to 3 replicas via the API and expects all three
// pods to answer on the carts ClusterIP.
func checkScale(t *testing.T, l *Lab) {
	ctx := context.Background()
	c := l.Client()
	sc, err := c.AppsV1().Deployments("sock-shop").GetScale(ctx, "carts", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sc.Spec.Replicas = 3
	if _, err := c.AppsV1().Deployments("sock-shop").UpdateScale(ctx, "carts", sc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	st := l.Status()
	carts := st.PodsOf("sock-shop", "carts")
	if len(carts) != 3 {
		t.Fatalf("carts pods after scaling: %d", len(carts))
	}
	svc, _ := st.Service("sock-shop", "carts")
	seen := map[string]bool{}
	for i := 0; i < 60 && len(seen) < 3; i++ {
		body, err := l.Get("sock-shop/front-end", svc.ClusterIP+":80")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range carts {
			if strings.Contains(body, p.Name+" ") {
				seen[p.Name] = true
			}
		}
	}
	if len(seen) != 3 {
		t.Errorf("carts ClusterIP reached %d of 3 pods: %v", len(seen), seen)
	}
	// Scale down again: the removed pods' namespaces go away.
	sc, _ = c.AppsV1().Deployments("sock-shop").GetScale(ctx, "carts", metav1.GetOptions{})
	sc.Spec.Replicas = 1
	if _, err := c.AppsV1().Deployments("sock-shop").UpdateScale(ctx, "carts", sc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(l.Status().PodsOf("sock-shop", "carts")); n != 1 {
		t.Errorf("carts pods after scaling down: %d", n)
	}
}

// TestDownAfterCrash kills a half-finished `lab up` (a child process) with
// SIGKILL and checks Remove leaves nothing behind.
func TestDownAfterCrash(t *testing.T) {
	requireRoot(t)
	kube := startAPI(t)
	name := testName(t, "c")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperLabUp$")
	cmd.Env = append(os.Environ(), "PAL_LAB_HELPER_NAME="+name, "PAL_LAB_HELPER_KUBECONFIG="+kube.Kubeconfig)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() //nolint:errcheck // already dead on the normal path
	// Wait until pods are being plumbed, then kill it mid-way.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		left, _ := Leftovers(name)
		n := 0
		for _, l := range left {
			if strings.Contains(l, "-pod-") {
				n++
			}
		}
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("helper never created pods (namespaces %v)", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if left, _ := Leftovers(name); len(left) == 0 {
		t.Fatal("nothing left after the crash: the test did not test anything")
	}
	if err := Remove(name, "", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	assertGone(t, name)
	if processAlive(cmd.Process.Pid) {
		t.Errorf("lab process %d still alive", cmd.Process.Pid)
	}
	c := kubernetes.NewForConfigOrDie(kube.Config)
	if ns, err := c.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{}); err != nil || len(ns.Items) != 0 {
		t.Errorf("nodes left in the API after down: %d %v", len(ns.Items), err)
	}
}

// TestHelperLabUp is `palisade lab up` for TestDownAfterCrash: it runs only
// as that test's child process.
func TestHelperLabUp(t *testing.T) {
	name := os.Getenv("PAL_LAB_HELPER_NAME")
	if name == "" {
		t.Skip("helper process for TestDownAfterCrash")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	l, err := Up(ctx, Config{Name: name, Nodes: 2, App: "sockshop", Replicas: 3, Kubeconfig: os.Getenv("PAL_LAB_HELPER_KUBECONFIG")})
	if err != nil {
		t.Fatal(err)
	}
	<-ctx.Done()
	l.Down()
}
