package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/palisade-dev/palisade/internal/devkube"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/netpol"
	"github.com/palisade-dev/palisade/internal/server"
	"github.com/palisade-dev/palisade/pkg/client"
)

// TestImportNetworkPolicyCLI drives `palisade import networkpolicy` against
// a real server connected to a real API server: from the cluster (the
// version holds exactly the translation of the API's policies, confined to
// that cluster), again (no change), from files (a new version, the diff
// printed), a bad file (file:line:column and field, nothing saved), a
// missing scope or cluster (named), and `-o yaml` of a dry run applied with
// `palisade apply` making the same version.
func TestImportNetworkPolicyCLI(t *testing.T) {
	kube, stop, err := devkube.StartForTests()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(kube.Config)
	s, err := server.Start(ctx, server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		Clusters: []server.Cluster{{Name: "prod", Config: kube.Config}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	run := func(stdin string, args ...string) (string, error) {
		var out bytes.Buffer
		root := newRootCmd()
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetIn(strings.NewReader(stdin))
		root.SetArgs(append(args, "--server", s.URL(), "--token", s.AdminToken()))
		err := root.Execute()
		return out.String(), err
	}

	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if out, err := run("", "apply", "-f", write("scope.yaml", "kind: Scope\nname: prod\nfilter: cluster = prod\ncatchAll: DENY\n")); err != nil {
		t.Fatalf("apply scope: %v\n%s", err, out)
	}

	// Two policies in the cluster.
	for _, ns := range []string{"shop", "db"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	port := intstr.FromInt32(27017)
	inCluster := []*networkingv1.NetworkPolicy{
		{ObjectMeta: metav1.ObjectMeta{Name: "deny-all", Namespace: "db"},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "mongo-from-shop", Namespace: "db"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "mongo"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "shop"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
				}},
			}},
	}
	for _, p := range inCluster {
		if _, err := cs.NetworkingV1().NetworkPolicies(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	fromAPI, err := netpol.FromCluster(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	want, err := netpol.Translate("prod", fromAPI, netpol.Options{Cluster: "prod"})
	if err != nil {
		t.Fatal(err)
	}

	out, err := run("", "import", "networkpolicy", "--cluster", "prod", "--scope", "prod")
	if err != nil || !strings.Contains(out, "imported 2 NetworkPolicies as scope prod v1") || !strings.Contains(out, "netpol.db.mongo-from-shop.ingress0.from0") {
		t.Fatalf("import --cluster: %v\n%s", err, out)
	}
	var got policy.Version
	getJSON := func(u string, out any) error {
		c, err := client.New(client.Options{Server: s.URL(), Token: s.AdminToken()})
		if err != nil {
			return err
		}
		return c.Do(ctx, client.Request{Method: "GET", Path: strings.TrimPrefix(u, s.URL())}, out)
	}
	if err := getJSON(s.URL()+"/api/v1/scopes/prod/versions/v1", &got); err != nil {
		t.Fatal(err)
	}
	if d := policy.DiffVersions(want, &got); len(d) != 0 || got.Source != "networkpolicy import: cluster prod" {
		t.Fatalf("v1 differs from the translation of the cluster's policies (source %q):\n%s", got.Source, strings.Join(d, "\n"))
	}
	if !strings.Contains(got.Policies[0].Provider, `cluster = "prod"`) {
		t.Fatalf("imported intents are not confined to the cluster: %+v", got.Policies[0])
	}
	out, err = run("", "import", "networkpolicy", "--cluster", "prod", "--scope", "prod")
	if err != nil || !strings.Contains(out, "scope prod v1 already holds these 2 NetworkPolicies") {
		t.Fatalf("second import: %v\n%s", err, out)
	}

	// From files: a Deployment beside the policy is skipped and reported.
	file := write("np.yaml", `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: http}]
`)
	out, err = run("", "import", "networkpolicy", "-f", file, "--scope", "prod")
	if err != nil || !strings.Contains(out, "skipped "+file+":1:1: apps/v1 Deployment/web") ||
		!strings.Contains(out, "imported 1 NetworkPolicies as scope prod v2") || !strings.Contains(out, "changes from v1") ||
		!strings.Contains(out, "- [netpol.db.deny-all.isolate-egress]") || !strings.Contains(out, "+ [netpol.shop.web.ingress0]") {
		t.Fatalf("import -f: %v\n%s", err, out)
	}

	// A bad file: refused with its place, and nothing saved.
	bad := write("bad.yaml", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  egress:\n  - ports:\n    - port: 80\n      endPort: 70\n")
	if _, err := run("", "import", "networkpolicy", "-f", bad, "--scope", "prod"); err == nil ||
		!strings.Contains(err.Error(), bad+":9:16: spec.egress[0].ports[0].endPort: 70 is below port 80") {
		t.Fatalf("bad file: %v", err)
	}
	if out, err := run("", "import", "networkpolicy", "-f", file, "--scope", "nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("missing scope: %v\n%s", err, out)
	}
	if out, err := run("", "import", "networkpolicy", "--cluster", "staging", "--scope", "prod"); err == nil || !strings.Contains(err.Error(), `cluster "staging" is not connected`) {
		t.Fatalf("unknown cluster: %v\n%s", err, out)
	}
	var versions []policy.Version
	if err := getJSON(s.URL()+"/api/v1/scopes/prod/versions", &versions); err != nil {
		t.Fatal(err)
	}
	if len(versions) != 2 {
		t.Fatalf("%d versions after the refused imports, want 2", len(versions))
	}

	// The dry run's YAML is a PolicyVersion document: applied, it makes the
	// version the import would have made.
	yamlOut, err := run("", "import", "networkpolicy", "--cluster", "prod", "--scope", "prod", "--dry-run", "-o", "yaml")
	if err != nil || !strings.Contains(yamlOut, "kind: PolicyVersion") || !strings.Contains(yamlOut, "version: v3") {
		t.Fatalf("dry run -o yaml: %v\n%s", err, yamlOut)
	}
	if out, err := run(yamlOut, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply the dry run's YAML: %v\n%s", err, out)
	}
	var v3 policy.Version
	if err := getJSON(s.URL()+"/api/v1/scopes/prod/versions/v3", &v3); err != nil {
		t.Fatal(err)
	}
	if d := policy.DiffVersions(want, &v3); len(d) != 0 {
		t.Fatalf("v3 from the YAML differs from the translation:\n%s", strings.Join(d, "\n"))
	}
}
