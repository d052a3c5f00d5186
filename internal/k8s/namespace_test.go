package k8s

import (
	"context"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/palisade-dev/palisade/internal/inventory"
)

// Pods carry their namespace's labels (namespace_label.<key>) and their
// containers' ports, so NetworkPolicy namespaceSelectors and named ports can
// be evaluated on the inventory; a namespace relabelled makes new versions of
// its pods, and the old labels stay true of the past.
func TestConnectorPodsCarryNamespaceLabelsAndPorts(t *testing.T) {
	ctx := context.Background()
	inv := startConnector(t, "c-nslabels")
	ns := "nslabels"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: ns, Labels: map[string]string{"team": "blue"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.local/web:1",
			Ports: []corev1.ContainerPort{
				{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
				{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
			}}}},
	}
	created, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.9.9", PodIPs: []corev1.PodIP{{IP: "10.244.9.9"}}}
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "pod selectable by its namespace's label", func() bool {
		return len(search(t, inv, `kind = pod and ip = 10.244.9.9 and namespace_label.team = blue and namespace_label.kubernetes.io/metadata.name = nslabels`)) == 1
	})
	w := search(t, inv, `kind = pod and name = web and namespace = nslabels`)[0]
	want := []inventory.ContainerPort{{Name: "http", Protocol: "TCP", Port: 8080}, {Name: "dns", Protocol: "UDP", Port: 53}}
	if got := w.Containers[0].Ports; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("container ports = %+v, want %+v", got, want)
	}
	if n := search(t, inv, `kind = namespace and namespace_label.team = blue`); len(n) != 1 || n[0].Name != ns {
		t.Fatalf("namespace by namespace_label = %+v", n)
	}

	before := time.Now()
	time.Sleep(10 * time.Millisecond)
	patch := []byte(`{"metadata":{"labels":{"team":"red"}}}`)
	if _, err := cs.CoreV1().Namespaces().Patch(ctx, ns, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "pod follows its namespace's new label", func() bool {
		return len(search(t, inv, `kind = pod and namespace = nslabels and namespace_label.team = red`)) == 1 &&
			len(search(t, inv, `kind = pod and namespace = nslabels and namespace_label.team = blue`)) == 0
	})
	id := ID("c-nslabels", inventory.KindPod, ns, "web")
	_, events, _ := inv.Get(id)
	var relabelled bool
	for _, e := range events {
		for _, c := range e.Changes {
			relabelled = relabelled || c == "namespaceLabels"
		}
	}
	if !relabelled {
		t.Fatalf("pod history has no namespaceLabels change: %+v", events)
	}
	if old, ok := inv.Lookup(netip.MustParseAddr("10.244.9.9"), before); !ok || old.NamespaceLabels["team"] != "blue" {
		t.Fatalf("pod before the relabel = %+v, %v; want namespace label team=blue", old, ok)
	}
}

// A pod converted before its namespace reached the cache gets the
// namespace's labels when the namespace arrives; a namespace event that
// changes nothing re-converts no pod.
func TestPodBeforeItsNamespace(t *testing.T) {
	inv, _ := inventory.Open(nil)
	defer inv.Close()
	c := New("c-order", kubeCfg, inv)
	c.nss = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	c.rs = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	c.jobs = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "early", Namespace: "late", UID: "u1"},
		Status: corev1.PodStatus{PodIP: "10.244.8.8"}}
	pods.Add(pod)
	c.applyPod(pod)
	id := ID("c-order", inventory.KindPod, "late", "early")
	if w, _, _ := inv.Get(id); w == nil || w.NamespaceLabels != nil {
		t.Fatalf("pod before its namespace = %+v", w)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "late", Labels: map[string]string{"team": "blue"}}}
	c.nss.Add(ns)
	c.namespaceChanged(pods, ns)
	w, events, _ := inv.Get(id)
	if w.NamespaceLabels["team"] != "blue" || len(events) != 2 {
		t.Fatalf("after the namespace: labels %v, %d events", w.NamespaceLabels, len(events))
	}
	c.namespaceChanged(pods, ns) // a resync: nothing to do
	if _, events, _ := inv.Get(id); len(events) != 2 {
		t.Fatalf("a namespace event without change made a new pod version: %+v", events)
	}
}
