package server

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/palisade-dev/palisade/internal/devkube"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/testutil"
	"github.com/palisade-dev/palisade/pkg/api"
)

var (
	kube *devkube.Cluster
	cs   *kubernetes.Clientset
)

func TestMain(m *testing.M) {
	devkube.Main(m, func(c *devkube.Cluster) { kube, cs = c, kubernetes.NewForConfigOrDie(c.Config) })
}

func startServer(t *testing.T, dir string, cfg *rest.Config) *Server {
	t.Helper()
	// Pods name public images (busybox); only the tests' loopback registries
	// may be pulled from.
	s, err := Start(context.Background(), Config{DataDir: dir, Listen: "127.0.0.1:0", Clusters: []Cluster{{Name: "lab", Config: cfg}},
		ScanRegistries: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func get(t *testing.T, s *Server, path string, out any) int {
	t.Helper()
	resp := do(t, s, "", "GET", path, "")
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, b)
		}
	}
	return resp.StatusCode
}

type searchResult struct {
	Count int                   `json:"count"`
	Items []*inventory.Workload `json:"items"`
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, within, what, cond)
}

func connectorState(t *testing.T, s *Server) string {
	var st struct {
		Connectors []struct{ State string } `json:"connectors"`
	}
	get(t, s, "/api/v1/status", &st)
	if len(st.Connectors) != 1 {
		t.Fatalf("status lists %d connectors", len(st.Connectors))
	}
	return st.Connectors[0].State
}

func createPod(t *testing.T, ns, name, ip string) {
	t.Helper()
	ctx := context.Background()
	p, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func deletePod(t *testing.T, ns, name string) {
	t.Helper()
	zero := int64(0)
	if err := cs.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
}

func TestAPIErrorsAndFilters(t *testing.T) {
	s := startServer(t, t.TempDir(), kube.Config)
	defer s.Stop()
	var e api.Error
	if code := get(t, s, "/api/v1/inventory?filter="+url.QueryEscape(`namespace = x and lable.app = y`), &e); code != 400 {
		t.Fatalf("invalid filter: HTTP %d", code)
	}
	if e.Position != 19 || e.Message == "" {
		t.Errorf("invalid filter error = %+v, want position 19", e)
	}
	if code := get(t, s, "/api/v1/inventory/lab/pod/nope/nope", &e); code != 404 {
		t.Errorf("unknown id: HTTP %d", code)
	}
	if code := get(t, s, "/api/v1/inventory/lookup?ip=bogus", &e); code != 400 {
		t.Errorf("bad ip: HTTP %d", code)
	}
	// Named filters: save, list, use, delete; invalid ones are refused.
	post := func(body string) int {
		return status(t, s, "", "POST", "/api/v1/filters", body)
	}
	if c := post(`{"name":"web","filter":"label.app in (front-end, carts)"}`); c != 201 {
		t.Fatalf("save filter: HTTP %d", c)
	}
	if c := post(`{"name":"bad","filter":"label.app in ("}`); c != 400 {
		t.Errorf("save invalid filter: HTTP %d", c)
	}
	if c := post(`{"name":"a/b","filter":"kind = pod"}`); c != 400 {
		t.Errorf("save filter with bad name: HTTP %d", c)
	}
	var saved []SavedFilter
	get(t, s, "/api/v1/filters", &saved)
	if len(saved) != 1 || saved[0].Filter != `label.app in ("front-end", "carts")` && saved[0].Filter == "" {
		t.Errorf("saved filters = %+v", saved)
	}
	var res searchResult
	if code := get(t, s, "/api/v1/inventory?saved=web", &res); code != 200 {
		t.Errorf("search by saved filter: HTTP %d", code)
	}
	if c := status(t, s, "", "DELETE", "/api/v1/filters/web", ""); c != 204 {
		t.Errorf("delete filter: HTTP %d", c)
	}
}

// TestRestartKeepsInventoryAndCatchesUp stops the server, changes the
// cluster, and starts it again on the same data directory.
func TestRestartKeepsInventoryAndCatchesUp(t *testing.T) {
	ctx := context.Background()
	ns := "restart"
	cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	dir := t.TempDir()
	s := startServer(t, dir, kube.Config)
	createPod(t, ns, "old", "10.244.3.1")
	createPod(t, ns, "doomed", "10.244.3.2")
	var res searchResult
	waitFor(t, 2*time.Second, "pods and their IPs in inventory", func() bool {
		get(t, s, "/api/v1/inventory?filter="+url.QueryEscape("namespace = restart and kind = pod and ip in 10.244.3.0/24"), &res)
		return res.Count == 2
	})
	aliveAt := time.Now().UTC().Format(time.RFC3339Nano)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}

	// While the server is down.
	deletePod(t, ns, "doomed")
	createPod(t, ns, "new", "10.244.3.3")

	s = startServer(t, dir, kube.Config)
	defer s.Stop()
	waitFor(t, 10*time.Second, "changes made while down appear", func() bool {
		get(t, s, "/api/v1/inventory?filter="+url.QueryEscape("namespace = restart and kind = pod"), &res)
		names := map[string]bool{}
		for _, w := range res.Items {
			names[w.Name] = true
		}
		return res.Count == 2 && names["old"] && names["new"]
	})
	var w inventory.Workload
	if code := get(t, s, "/api/v1/inventory/lookup?ip=10.244.3.2&at="+url.QueryEscape(aliveAt), &w); code != 200 || w.Name != "doomed" {
		t.Fatalf("history lost across restart: HTTP %d %+v", code, w)
	}
	var prof struct {
		Workload inventory.Workload `json:"workload"`
		History  []inventory.Event  `json:"history"`
	}
	if code := get(t, s, "/api/v1/inventory/lab/pod/restart/doomed", &prof); code != 200 || prof.Workload.Deleted == nil {
		t.Fatalf("profile of deleted pod: HTTP %d %+v", code, prof)
	}
}

// proxy is a TCP relay to the API server that a test can cut and restore.
type proxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        []net.Conn
}

func (p *proxy) start(t *testing.T) {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func TestUnreachableAPIServerDegradesAndRecovers(t *testing.T) {
	u, _ := url.Parse(kube.URL)
	p := &proxy{addr: "127.0.0.1:0", target: u.Host}
	p.start(t)
	cfg := rest.CopyConfig(kube.Config)
	cfg.Host = "https://" + p.addr
	s := startServer(t, t.TempDir(), cfg)
	defer s.Stop()
	waitFor(t, 10*time.Second, "connector synced", func() bool { return connectorState(t, s) == "synced" })

	p.cut()
	waitFor(t, 10*time.Second, "connector degraded", func() bool { return connectorState(t, s) == "degraded" })
	var st map[string]any
	if code := get(t, s, "/api/v1/status", &st); code != 200 {
		t.Fatalf("server not serving while degraded: HTTP %d", code)
	}
	ns := "outage"
	cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	createPod(t, ns, "during-outage", "10.244.4.1")

	p.start(t) // same address
	waitFor(t, 20*time.Second, "connector synced again", func() bool { return connectorState(t, s) == "synced" })
	var res searchResult
	waitFor(t, 20*time.Second, "pod created during the outage appears", func() bool {
		get(t, s, "/api/v1/inventory?filter="+url.QueryEscape("name = during-outage"), &res)
		return res.Count == 1
	})
}

// TestSeveralClusters watches two clusters (here the same API server under
// two names) and keeps their workloads apart.
func TestSeveralClusters(t *testing.T) {
	s, err := Start(context.Background(), Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		Clusters: []Cluster{{Name: "east", Config: kube.Config}, {Name: "west", Config: kube.Config}}, ScanRegistries: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	var res searchResult
	for _, c := range []string{"east", "west"} {
		waitFor(t, 10*time.Second, "namespace default in cluster "+c, func() bool {
			get(t, s, "/api/v1/inventory?filter="+url.QueryEscape("cluster = "+c+" and kind = namespace and name = default"), &res)
			return res.Count == 1 && res.Items[0].ID == c+"/namespace//default"
		})
	}
	var st struct {
		Connectors []struct{ Cluster, State string } `json:"connectors"`
	}
	get(t, s, "/api/v1/status", &st)
	if len(st.Connectors) != 2 {
		t.Fatalf("status connectors = %+v", st.Connectors)
	}
}

// TestAgentModeSurvivesRestart: a node switched to detailed mode stays so
// after the server restarts.
func TestAgentModeSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, kube.Config)
	if c := status(t, s, "", "PUT", "/api/v1/agents/node1/config", `{"mode":"detailed"}`); c != 200 {
		t.Fatalf("PUT config: HTTP %d", c)
	}
	s.Stop()
	s = startServer(t, dir, kube.Config)
	defer s.Stop()
	var c struct{ Mode string }
	get(t, s, "/api/v1/agents/node1/config", &c)
	if c.Mode != "detailed" {
		t.Fatalf("mode after restart = %q, want detailed", c.Mode)
	}
}
