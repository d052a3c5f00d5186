package netpol

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/palisade-dev/palisade/internal/devkube"
	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/k8s"
	"github.com/palisade-dev/palisade/internal/lab"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/analyze"
	"github.com/palisade-dev/palisade/internal/policy/netpol/netpoltest"
	"github.com/palisade-dev/palisade/internal/testutil"
)

// The API server starts on first use, so the pure tests of this package
// do not wait for it.
var (
	kubeOnce sync.Once
	kube     *devkube.Cluster
	kubeStop func()
	kubeErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if kubeStop != nil {
		kubeStop()
	}
	os.Exit(code)
}

// apiServer returns the package's real kube-apiserver (failing, never
// skipping, when it cannot run).
func apiServer(t *testing.T) *rest.Config {
	t.Helper()
	kubeOnce.Do(func() { kube, kubeStop, kubeErr = devkube.StartForTests() })
	if kubeErr != nil {
		t.Fatal(kubeErr)
	}
	cfg := rest.CopyConfig(kube.Config)
	cfg.QPS, cfg.Burst = 500, 1000
	return cfg
}

func worldFromAPI(t *testing.T, c kubernetes.Interface, namespaces []string) *refWorld {
	t.Helper()
	w, err := netpoltest.FromAPI(context.Background(), c, namespaces)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestLabImportFromClusterAgreesWithUpstream is the acceptance test of the
// import: the upstream NetworkPolicy test model runs in a lab (namespaces
// x, y, z; pods a, b, c; TCP and UDP 80 and 81 with named ports) on a real
// API server; every policy set of testdata, plus an ipBlock whose exception
// is a real pod's address, is created in the API server; the policies are
// read back from the cluster (as `import networkpolicy --cluster` does),
// translated, and every (source pod, node or external address, destination
// pod, node or external address, protocol, port) verdict of the policy
// evaluator (a pod's own node always allowed, as upstream),
// over the inventory the Kubernetes connector built, equals the reference
// computed from the API's own objects. Relabelling a namespace then changes
// the verdicts of flows after the change and not of flows before it.
func TestLabImportFromClusterAgreesWithUpstream(t *testing.T) {
	cfg := apiServer(t)
	ctx := context.Background()
	const cluster = "npimport"
	l, err := lab.Up(ctx, lab.Config{Name: "npimp", Nodes: 2, App: "netpol", RestConfig: cfg, ProbePeriod: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Down() })
	client := kubernetes.NewForConfigOrDie(cfg)
	namespaces := []string{"x", "y", "z"}

	// The policies: every set of testdata, and one ipBlock excepting a real
	// pod's address.
	files, _ := filepath.Glob("testdata/*.yaml")
	var created []*networkingv1.NetworkPolicy
	for _, f := range files {
		created = append(created, loadFile(t, f)...)
	}
	yb, err := client.CoreV1().Pods("y").List(ctx, metav1.ListOptions{LabelSelector: "pod=b"})
	if err != nil || len(yb.Items) != 1 || yb.Items[0].Status.PodIP == "" {
		t.Fatalf("y/b: %v %+v", err, yb)
	}
	tcp := corev1.ProtocolTCP
	created = append(created, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "pods-but-yb", Namespace: "x"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "c"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{
					CIDR: lab.ClusterCIDR, Except: []string{yb.Items[0].Status.PodIP + "/32"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp}},
			}},
		},
	})
	for _, p := range created {
		p = p.DeepCopy()
		p.ResourceVersion = ""
		if _, err := client.NetworkingV1().NetworkPolicies(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s/%s: %v", p.Namespace, p.Name, err)
		}
	}

	inv, err := inventory.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	conn := k8s.New(cluster, cfg, inv)
	done := make(chan struct{})
	go func() { conn.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; inv.Close() })
	podsWithIPs, err := filter.Parse(`cluster = npimport and kind = pod and ip exists and namespace in (x, y, z) and namespace_label.ns exists`, inventory.Schema)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 60*time.Second, "the lab's 9 pods in the inventory with IPs and namespace labels", func() bool {
		return conn.Status().State == k8s.StateSynced && len(inv.Search(podsWithIPs, inventory.SearchOptions{})) == 9
	})

	pols, err := FromCluster(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	if len(pols) != len(created) {
		t.Fatalf("read %d NetworkPolicies back from the cluster, created %d", len(pols), len(created))
	}
	at := func(ts time.Time) resolver {
		return func(a netip.Addr) *inventory.Workload {
			w, _ := inv.Lookup(a, ts)
			return w
		}
	}
	opts := Options{Cluster: cluster}
	scope := `cluster = "` + cluster + `"`

	before := worldFromAPI(t, client, namespaces)
	if len(before.Pods) != 9 || len(before.Nodes) != 2 {
		t.Fatalf("%d pods in x, y, z and %d nodes; want 9 and 2 (probes from a pod's own node and from the other)", len(before.Pods), len(before.Nodes))
	}
	ps := probes(before, externals)
	t.Run("every pair", func(t *testing.T) {
		diffs, allowed := compare(t, before, pols, ps, at(time.Now()), scope, opts)
		for _, d := range diffs {
			t.Error(d)
		}
		if allowed == 0 || allowed == len(ps) {
			t.Errorf("%d of %d allowed: the policies should allow some and deny some", allowed, len(ps))
		}
		t.Logf("%d probes over the lab, %d allowed, %d denied, %d disagreements", len(ps), allowed, len(ps)-allowed, len(diffs))
	})

	// Real traffic: every pod of the model to every pod and to the lab's
	// external host (and back), TCP and UDP 80 and 81, with no
	// enforcement. Each connection, as a flow with the network's outcome,
	// is analyzed with the imported version: Permitted where the policies
	// allow it, Escaped where they would have blocked it (the answer to
	// "what would my NetworkPolicies have blocked"), and for connections
	// nothing answered, Misdropped or Rejected.
	t.Run("real traffic", func(t *testing.T) {
		st := l.Status()
		peers := lab.DefaultPeers(st)
		if len(peers) != 9 {
			t.Fatalf("model peers = %v", peers)
		}
		var reached []lab.Probe
		for _, o := range []lab.ReachOptions{
			{From: peers, To: append(append([]string(nil), peers...), lab.External)},
			{From: []string{lab.External}, To: peers},
		} {
			o.Timeout = 2 * time.Second
			ps, err := l.Reach(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			reached = append(reached, ps...)
		}
		end := func(name string) refEnd {
			if name == lab.External {
				return refEnd{IP: netip.MustParseAddr(st.External[0].IP)}
			}
			p, err := st.FindPod(name)
			if err != nil {
				t.Fatal(err)
			}
			for _, rp := range before.Pods {
				if rp.IP.String() == p.IP {
					return refEnd{Pod: rp, IP: rp.IP}
				}
			}
			t.Fatalf("lab pod %s (%s) is not in the API's table", name, p.IP)
			return refEnd{}
		}
		an := analyze.New(compileTranslation(t, pols, scope, opts), inv, "")
		counts := map[policy.Verdict]int{}
		now := time.Now()
		for _, p := range reached {
			src, dst := end(p.From), end(p.To)
			proto := corev1.ProtocolTCP
			if p.Protocol == "udp" {
				proto = corev1.ProtocolUDP
			}
			f := &flow.Flow{Proto: p.Protocol, Start: now, End: now, Replied: p.Reachable,
				Src: flow.Endpoint{IP: src.IP.String(), Port: 40000}, Dst: flow.Endpoint{IP: dst.IP.String(), Port: uint16(p.Port)}}
			fv, ok := an.Analyze(f)
			if !ok {
				t.Fatalf("%s: not analyzed", p.Case())
			}
			action := policy.Deny
			if before.Allowed(pols, src, dst, proto, p.Port) {
				action = policy.Allow
			}
			want := policy.VerdictOf(action, p.Reachable)
			if fv.Verdict != want {
				t.Errorf("%s (reachable %v): verdict %s by %s, upstream semantics %s", p.Case(), p.Reachable, fv.Verdict, fv.Rule, want)
			}
			if p.From != lab.External && p.To != lab.External && !p.Reachable {
				t.Errorf("%s: blocked with no enforcement: %s", p.Case(), p.Error)
			}
			counts[fv.Verdict]++
		}
		t.Logf("%d real connections: %v", len(reached), counts)
		if counts[policy.Permitted] == 0 || counts[policy.Escaped] == 0 {
			t.Errorf("want both permitted and escaped connections, got %v", counts)
		}
	})

	// Namespace y loses its ns=y label (policies that select ns in (y, z)
	// or ns=y stop matching its pods): later flows follow, earlier ones not.
	tBefore := time.Now()
	time.Sleep(20 * time.Millisecond)
	patch := []byte(`{"metadata":{"labels":{"ns":"q"}}}`)
	if _, err := client.CoreV1().Namespaces().Patch(ctx, "y", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	relabelled, err := filter.Parse(`cluster = npimport and kind = pod and namespace = y and namespace_label.ns = q`, inventory.Schema)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "y's pods carry the new namespace label", func() bool {
		return len(inv.Search(relabelled, inventory.SearchOptions{})) == 3
	})
	after := worldFromAPI(t, client, namespaces)
	t.Run("after relabel", func(t *testing.T) {
		diffs, allowedAfter := compare(t, after, pols, ps, at(time.Now()), scope, opts)
		for _, d := range diffs {
			t.Error(d)
		}
		_, allowedBefore := compare(t, before, pols, ps, at(time.Now()), scope, opts)
		if allowedAfter == allowedBefore {
			t.Errorf("relabelling y changed no verdict (%d allowed): the test does not exercise namespace labels", allowedAfter)
		}
	})
	t.Run("history before relabel", func(t *testing.T) {
		for _, d := range func() []string { d, _ := compare(t, before, pols, ps, at(tBefore), scope, opts); return d }() {
			t.Error(d)
		}
	})
}
