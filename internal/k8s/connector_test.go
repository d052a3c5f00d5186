package k8s

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/palisade-dev/palisade/internal/devkube"
	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/testutil"
)

var (
	kubeCfg *rest.Config
	cs      *kubernetes.Clientset
)

func TestMain(m *testing.M) {
	devkube.Main(m, func(c *devkube.Cluster) {
		kubeCfg = c.Config
		fast := rest.CopyConfig(c.Config)
		fast.QPS, fast.Burst = 1000, 2000 // the default 5 QPS would make fixtures crawl
		cs = kubernetes.NewForConfigOrDie(fast)
	})
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, within, what, cond)
}

func search(t *testing.T, inv *inventory.Inventory, src string) []*inventory.Workload {
	t.Helper()
	f, err := filter.Parse(src, inventory.Schema)
	if err != nil {
		t.Fatal(err)
	}
	return inv.Search(f, inventory.SearchOptions{})
}

func startConnector(t *testing.T, cluster string) *inventory.Inventory {
	t.Helper()
	inv, _ := inventory.Open(nil)
	ctx, cancel := context.WithCancel(context.Background())
	conn := New(cluster, kubeCfg, inv)
	done := make(chan struct{})
	go func() { conn.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; inv.Close() })
	eventually(t, 30*time.Second, "connector synced", func() bool { return conn.Status().State == StateSynced })
	return inv
}

func ptr[T any](v T) *T { return &v }

func TestConnectorMirrorsPodsWithinASecond(t *testing.T) {
	ctx := context.Background()
	inv := startConnector(t, "c1")
	ns := "shop-pods"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "carts", "tier": "backend"}
	_, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "carts"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"team": "shopping"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "carts", Image: "registry.local/carts:1.0"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The real controller-manager makes the ReplicaSet and pods.
	var pods []corev1.Pod
	eventually(t, 30*time.Second, "deployment pods created", func() bool {
		l, _ := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		pods = l.Items
		return len(pods) == 2
	})
	// Play kubelet: patch status IPs in, then measure how soon the
	// inventory reflects it.
	for i := range pods {
		p := &pods[i]
		ip := fmt.Sprintf("10.244.1.%d", 10+i)
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, HostIP: "192.168.50.2", PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
		if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, time.Second, "pods searchable by IP, label, annotation and owner", func() bool {
		return len(search(t, inv, `ip in 10.244.1.0/24 and label.app = carts and annotation.team = shopping and owner.kind = Deployment and owner.name = carts`)) == 2
	})
	got := search(t, inv, `ip = 10.244.1.10`)
	if len(got) != 1 || got[0].Phase != "Running" || got[0].Containers[0].Image != "registry.local/carts:1.0" {
		t.Fatalf("pod by IP = %+v", got)
	}

	// A label added to a running pod.
	name := got[0].Name
	patch := []byte(`{"metadata":{"labels":{"quarantine":"true"}}}`)
	if _, err := cs.CoreV1().Pods(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "new label searchable", func() bool {
		r := search(t, inv, `label.quarantine = "true"`)
		return len(r) == 1 && r[0].Name == name
	})

	// Deletion: gone from current results, still attributed in the past.
	before := time.Now()
	time.Sleep(10 * time.Millisecond)
	if err := cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "deleted pod leaves results", func() bool {
		for _, w := range search(t, inv, `namespace = shop-pods and kind = pod`) {
			if w.Name == name {
				return false
			}
		}
		return true
	})
	w, ok := inv.Lookup(netip.MustParseAddr("10.244.1.10"), before)
	if !ok || w.Name != name {
		t.Fatalf("lookup before deletion = %v, %v; want %s", w, ok, name)
	}
	if w, ok := inv.Lookup(netip.MustParseAddr("10.244.1.10"), time.Now()); ok && w.Name == name {
		t.Fatalf("deleted pod still holds its IP now")
	}
}

func TestConnectorServicesAndNodes(t *testing.T) {
	ctx := context.Background()
	inv := startConnector(t, "c2")
	ns := "shop-svcs"
	cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"env": "test"}}}, metav1.CreateOptions{})
	for _, s := range []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "carts"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "carts"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "front-end"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "front-end"},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}},
	} {
		if _, err := cs.CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-a", Labels: map[string]string{"zone": "a"}},
		Spec:       corev1.NodeSpec{PodCIDR: "10.244.7.0/24", PodCIDRs: []string{"10.244.7.0/24"}},
	}
	n, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.50.7"}}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "services and node searchable", func() bool {
		return len(search(t, inv, `namespace = shop-svcs and kind = service`)) == 2 &&
			len(search(t, inv, `kind = node and ip = 192.168.50.7 and cidr = 10.244.7.0/24 and label.zone = a`)) == 1
	})
	api, _ := cs.CoreV1().Services(ns).Get(ctx, "front-end", metav1.GetOptions{})
	fe := search(t, inv, `name = front-end and service.type = NodePort`)
	if len(fe) != 1 || fe[0].ClusterIP != api.Spec.ClusterIP || fe[0].Ports[0].NodePort != api.Spec.Ports[0].NodePort || fe[0].Ports[0].Port != 80 {
		t.Fatalf("front-end = %+v, API has clusterIP %s nodePort %d", fe, api.Spec.ClusterIP, api.Spec.Ports[0].NodePort)
	}
	carts := search(t, inv, `name = carts and service.type = ClusterIP and service.port = 80`)
	if len(carts) != 1 || carts[0].ClusterIP == "" {
		t.Fatalf("carts = %+v", carts)
	}
	if w, ok := inv.Lookup(netip.MustParseAddr(carts[0].ClusterIP), time.Now()); !ok || w.Name != "carts" {
		t.Fatalf("clusterIP lookup = %v %v", w, ok)
	}
	if len(search(t, inv, `kind = namespace and name = shop-svcs and label.env = test`)) != 1 {
		t.Fatal("namespace not in inventory")
	}
	if fe[0].Phase != "" {
		t.Logf("service phase %q", fe[0].Phase)
	}
	nodes := search(t, inv, `kind = node and name = node-a`)
	if nodes[0].Phase != "Ready" {
		t.Errorf("node phase = %q, want Ready", nodes[0].Phase)
	}
}
