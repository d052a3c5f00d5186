package server

import (
	"context"
	"github.com/palisade-dev/palisade/pkg/api"
	"net/url"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
)

// TestPodsGetVulnAttributes runs pods on images from a loopback registry
// (one Go binary linking x/text v0.3.7 and x/net v0.7.0, one without
// packages), imports the real Go vulnerability database, and checks that the
// inventory filter language can segment by the resulting vuln.* attributes.
func TestPodsGetVulnAttributes(t *testing.T) {
	ctx := context.Background()
	reg := vulntest.Registry(t, "", "")
	goImg := vulntest.Image(t, vulntest.Layer(t, vulntest.File{Path: "app/server", Data: string(vulntest.GoBinary(t)), Mode: 0o755}))
	vulntest.Push(t, goImg, reg+"/shop/payment:1.0", nil)
	clean := vulntest.Image(t, vulntest.Layer(t, vulntest.File{Path: "etc/motd", Data: "hello\n"}))
	vulntest.Push(t, clean, reg+"/shop/static:1.0", nil)

	s := startServer(t, t.TempDir(), kube.Config)
	defer s.Stop()
	if _, err := s.Vuln.ImportDB(ctx, vulntest.GoVulnDB(t), nil); err != nil {
		t.Fatal(err)
	}
	ns := "vuln"
	cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	for name, image := range map[string]string{"payment": reg + "/shop/payment:1.0", "static": reg + "/shop/static:1.0"} {
		_, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	var res searchResult
	// GO-2022-1059 (x/text) is CVE-2022-32149.
	q := "/api/v1/inventory?filter=" + url.QueryEscape(`namespace = vuln and vuln.cve contains "CVE-2022-32149"`)
	waitFor(t, 2*time.Minute, "the vulnerable pod gets vuln.cve", func() bool {
		get(t, s, q, &res)
		return res.Count == 1
	})
	if res.Items[0].Name != "payment" {
		t.Fatalf("vulnerable workload = %s", res.Items[0].Name)
	}
	attrs := res.Items[0].Attrs
	for _, k := range []string{"vuln.max_cvss", "vuln.critical", "vuln.high", "vuln.cve"} {
		if _, ok := attrs[k]; !ok {
			t.Errorf("attribute %s missing: %v", k, attrs)
		}
	}
	// The clean image is scanned too: it gets vuln.max_cvss = 0 and no CVEs.
	waitFor(t, time.Minute, "the clean pod is scanned", func() bool {
		get(t, s, "/api/v1/inventory?filter="+url.QueryEscape(`namespace = vuln and vuln.max_cvss exists and not vuln.cve exists`), &res)
		return res.Count == 1 && res.Items[0].Name == "static"
	})
	var vulns struct {
		Count int `json:"count"`
	}
	get(t, s, "/api/v1/vulnerabilities?filter="+url.QueryEscape(`id = "GO-2022-1059"`), &vulns)
	if vulns.Count == 0 {
		t.Error("GET /api/v1/vulnerabilities does not list GO-2022-1059")
	}
	var e api.Error
	if code := get(t, s, "/api/v1/vulnerabilities?filter="+url.QueryEscape(`sevrity = high`), &e); code != 400 || e.Position != 1 {
		t.Errorf("bad vulnerability filter: HTTP %d %+v", code, e)
	}
	var regs []map[string]any
	get(t, s, "/api/v1/registries", &regs)
	// Every registry the pods name is listed; only the allowed one
	// (--scan-registries) is scanned.
	scanned := 0
	for _, r := range regs {
		switch {
		case r["name"] == reg && r["allowed"] == true && r["lastScan"] != nil:
			scanned++
		case r["name"] != reg && r["allowed"] == true:
			t.Errorf("registry %v is allowed although --scan-registries names only %s", r["name"], reg)
		}
	}
	if scanned != 1 {
		t.Errorf("registries = %v, want %s allowed and scanned", regs, reg)
	}
}
