package e2e

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/lab"
	"github.com/palisade-dev/palisade/internal/server"
	"github.com/palisade-dev/palisade/internal/testutil"
	"github.com/palisade-dev/palisade/pkg/api"
	"github.com/palisade-dev/palisade/pkg/client"
)

// TestLabPodsGetVulnAttributes rolls the lab's payment Deployment onto a Go
// image with vulnerable x/net and x/text served from a loopback registry,
// and checks that the new lab pod, and only it, gets vuln.* attributes the
// inventory filter language can select (issue 5, risk-based segmentation).
func TestLabPodsGetVulnAttributes(t *testing.T) {
	ctx := context.Background()
	kube := kubes[lab.ModeDirect]
	l, err := lab.Up(ctx, lab.Config{Name: "e2evuln", Nodes: 1, App: "sockshop", RestConfig: kube.Config, ProbePeriod: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	}()
	s, err := server.Start(ctx, server.Config{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		Clusters:       []server.Cluster{{Name: "lab", Config: kube.Config}},
		ScanRegistries: []string{"127.0.0.1"}, // loopback only
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	rollVulnerablePayment(t, l, s)

	vulnerable, err := filter.Parse(`namespace = sock-shop and kind = pod and vuln.cve contains "CVE-2022-32149"`, inventory.Schema)
	if err != nil {
		t.Fatal(err)
	}
	anyCVE, _ := filter.Parse(`namespace = sock-shop and kind = pod and vuln.cve exists`, inventory.Schema)
	testutil.Eventually(t, 2*time.Minute, "the rolled-out payment pod gets vuln.cve", func() bool {
		return len(s.Inventory.Search(vulnerable, inventory.SearchOptions{})) == 1
	})
	got := s.Inventory.Search(vulnerable, inventory.SearchOptions{})[0]
	if got.Owner == nil || got.Owner.Name != "payment" || got.Phase != "Running" {
		t.Fatalf("vulnerable workload = %s owner %+v phase %s", got.Name, got.Owner, got.Phase)
	}
	// The pod runs in the lab: its IP is the one the lab gave its namespace.
	if p, err := l.Status().FindPod(l.Namespace() + "/" + got.Name); err != nil || len(got.IPs) != 1 || p.IP != got.IPs[0] {
		t.Fatalf("lab pod %+v (%v), inventory IPs %v", p, err, got.IPs)
	}
	if n := len(s.Inventory.Search(anyCVE, inventory.SearchOptions{})); n != 1 {
		t.Errorf("%d sock-shop pods have CVEs, want only payment", n)
	}
	for _, k := range []string{"vuln.max_cvss", "vuln.critical", "vuln.high"} {
		if _, ok := got.Attrs[k]; !ok {
			t.Errorf("attribute %s missing: %v", k, got.Attrs)
		}
	}
	// The image is scanned for the platform of the pod's node (the lab
	// labels its nodes kubernetes.io/arch), and /api/v1/status shows the
	// scanner's database and its layer cache within its cap.
	for _, im := range s.Vuln.Images() {
		if im.Status == "scanned" && im.Platform != "linux/"+runtime.GOARCH {
			t.Errorf("image %s scanned for %q, want the node's linux/%s", im.Image, im.Platform, runtime.GOARCH)
		}
	}
	var st api.Status
	if err := s.Client("").Do(ctx, client.Request{Method: "GET", Path: "/api/v1/status"}, &st); err != nil {
		t.Fatal(err)
	}
	if sc := st.Scanner; sc == nil || sc.Database.Advisories == 0 || sc.Database.Imported.IsZero() || sc.LayerCache.Layers == 0 ||
		sc.LayerCache.Bytes > sc.LayerCache.MaxBytes || sc.LayerCache.MaxBytes == 0 {
		t.Errorf("GET /api/v1/status: scanner %+v", st.Scanner)
	}
}
