package vuln

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
)

// secretMap serves Secrets and ServiceAccounts the way the Kubernetes API
// would for the SecretGetter contract.
type secretMap struct {
	secrets map[string]map[string][]byte // namespace/name → data
	sas     map[string][]string          // namespace/name → imagePullSecrets
}

func (m secretMap) SecretData(_ context.Context, ns, name string) (map[string][]byte, error) {
	if d, ok := m.secrets[ns+"/"+name]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("secrets %q not found", name)
}

func (m secretMap) ServiceAccountPullSecrets(_ context.Context, ns, name string) ([]string, error) {
	return m.sas[ns+"/"+name], nil
}

func dockerConfigJSON(host, user, pass string) map[string][]byte {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	return map[string][]byte{".dockerconfigjson": fmt.Appendf(nil, `{"auths":{"http://%s":{"auth":%q}}}`, host, auth)}
}

// attrLog records OnAttrs calls.
type attrLog struct {
	mu   sync.Mutex
	last map[string]map[string][]string
	n    map[string]int
}

func (l *attrLog) record(id string, attrs map[string][]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last, l.n = map[string]map[string][]string{}, map[string]int{}
	}
	l.last[id] = attrs
	l.n[id]++
}

func (l *attrLog) get(id string) map[string][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last[id]
}

func pod(name, image, digest string, secrets []string, sa string) inventory.Workload {
	return inventory.Workload{
		ID: "lab/pod/lab/" + name, Cluster: "lab", Kind: inventory.KindPod, Namespace: "lab", Name: name,
		Containers:       []inventory.Container{{Name: "main", Image: image, ImageDigest: digest}},
		ImagePullSecrets: secrets, ServiceAccount: sa,
	}
}

func findingKeys(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID+" "+f.Package)
	}
	slices.Sort(out)
	return out
}

func wantAttr(t *testing.T, attrs map[string][]string, key string, want ...string) {
	t.Helper()
	got := attrs[key]
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", key, got, want)
	}
}

func wait(t *testing.T, svc *Service) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := svc.Wait(ctx); err != nil {
		t.Fatalf("waiting for scans: %v", err)
	}
}

// TestServiceEndToEnd drives the whole flow the control plane uses: pods
// observed → registries listed → images pulled from in-process registries
// (one behind basic auth, reached through an imagePullSecret, a service
// account's pull secret, then admin credentials) → inventories → OSV matching
// → vuln.* attributes, and their update after a database re-import.
func TestServiceEndToEnd(t *testing.T) {
	ti := buildImages(t)
	open := vulntest.Registry(t, "", "")
	private := vulntest.Registry(t, "robot", "s3cret-pass")
	robot := authn.FromConfig(authn.AuthConfig{Username: "robot", Password: "s3cret-pass"})

	debDigest := vulntest.Push(t, ti.debian, open+"/lab/debian:12", nil)
	alpDigest := vulntest.Push(t, ti.alpine, open+"/lab/alpine:3.19", nil)
	goDigest := vulntest.Push(t, ti.gobin, open+"/lab/goapp:1", nil)
	whDigest := vulntest.Push(t, ti.whiteout, open+"/lab/whiteout:1", nil)
	vulntest.Push(t, ti.gobin, private+"/private/goapp:1", robot)
	vulntest.Push(t, ti.alpine, private+"/private/alpine:1", robot)
	vulntest.Push(t, ti.debian, private+"/private/denied:1", robot)

	log := &attrLog{}
	dataDir := t.TempDir()
	opts := Options{
		Concurrency: 2,
		Registries:  []string{"127.0.0.1"}, // the test registries, on loopback
		OnAttrs:     log.record,
		Secrets: secretMap{
			secrets: map[string]map[string][]byte{
				"lab/regcred": dockerConfigJSON(private, "robot", "s3cret-pass"),
				"lab/sa-cred": dockerConfigJSON(private, "robot", "s3cret-pass"),
				"lab/wrong":   dockerConfigJSON(private, "robot", "nope"),
			},
			sas: map[string][]string{"lab/builder": {"sa-cred"}},
		},
	}
	svc, err := Open(dataDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { svc.Close() }()
	importFixtures(t, svc, true)

	pods := []inventory.Workload{
		pod("debian", open+"/lab/debian:12", debDigest, nil, ""),
		pod("alpine", open+"/lab/alpine@"+alpDigest, "", nil, ""),
		pod("goapp", open+"/lab/goapp:1", "", nil, ""), // tag only: resolved at pull time
		pod("whiteout", open+"/lab/whiteout:1", "docker-pullable://"+open+"/lab/whiteout@"+whDigest, nil, ""),
		pod("private", private+"/private/goapp:1", "", []string{"wrong", "regcred"}, ""),
		pod("private-sa", private+"/private/alpine:1", "", nil, "builder"),
		pod("denied", private+"/private/denied:1", "", nil, ""),
		{ID: "lab/service/lab/web", Kind: inventory.KindService, Name: "web"}, // ignored
	}
	svc.Observe(pods)

	regs := svc.Registries()
	if len(regs) != 2 || regs[0].Images+regs[1].Images != 7 {
		t.Fatalf("registries = %+v, want the open and the private registry with 7 images", regs)
	}
	wait(t, svc)

	// (a) Debian: source-package matching, epoch, tilde, unfixed, out of range.
	deb, ok := svc.Image(debDigest)
	if !ok || deb.Error != "" {
		t.Fatalf("debian image report: %+v", deb)
	}
	if deb.Distro == nil || deb.Distro.ID != "debian" || deb.Distro.VersionID != "12" {
		t.Errorf("debian distro = %+v", deb.Distro)
	}
	if n := countType(deb, "deb"); n != 88 {
		t.Errorf("debian packages = %d, want the 88 of the bookworm status", n)
	}
	wantFindings(t, deb.Findings, []string{
		"DEBIAN-CVE-2010-4756 libc-bin",
		"DEBIAN-CVE-2010-4756 libc6",
		"DEBIAN-CVE-2023-45853 zlib1g",
		"DEBIAN-CVE-2023-7008 libsystemd0",
		"DEBIAN-CVE-2023-7008 libudev1",
	})
	for _, f := range deb.Findings {
		switch f.ID {
		case "DEBIAN-CVE-2023-45853":
			if f.Fixed != "1:1.3.dfsg-3.1" || f.SourcePackage != "zlib" || f.Score != 9.8 || f.Severity != "CRITICAL" || f.Installed != "1:1.2.13.dfsg-1" {
				t.Errorf("zlib finding = %+v", f)
			}
		case "DEBIAN-CVE-2023-7008":
			if f.Fixed != "252.39-1" || f.SourcePackage != "systemd" || f.Severity != "MEDIUM" {
				t.Errorf("systemd finding = %+v", f)
			}
		case "DEBIAN-CVE-2010-4756":
			if f.Fixed != "" || f.SourcePackage != "glibc" || f.Severity != "UNKNOWN" {
				t.Errorf("glibc unfixed finding = %+v", f)
			}
		}
	}
	a := log.get("lab/pod/lab/debian")
	wantAttr(t, a, AttrMaxCVSS, "9.8")
	wantAttr(t, a, AttrCritical, "1")
	wantAttr(t, a, AttrHigh, "0")
	wantAttr(t, a, AttrCVE, "CVE-2010-4756", "CVE-2023-45853", "CVE-2023-7008")

	// (b) Alpine: origin (source) names, -rN revisions, _git suffixes, boundary fix.
	alp, _ := svc.Image(alpDigest)
	wantFindings(t, alp.Findings, []string{
		"ALPINE-CVE-2023-42363 busybox",
		"ALPINE-CVE-2023-42363 ssl_client",
		"ALPINE-CVE-2024-2511 libcrypto3",
		"ALPINE-CVE-2024-2511 libssl3",
		"ALPINE-CVE-2025-26519 musl",
	})
	a = log.get("lab/pod/lab/alpine")
	wantAttr(t, a, AttrMaxCVSS, "8.1")
	wantAttr(t, a, AttrHigh, "1")
	wantAttr(t, a, AttrCVE, "CVE-2023-42363", "CVE-2024-2511", "CVE-2025-26519")

	// (c) the Go binary, pulled by tag.
	gor, ok := svc.Image(goDigest)
	if !ok || gor.Error != "" {
		t.Fatalf("go image report missing under its digest: %+v", gor)
	}
	if !hasFinding(gor.Findings, "GO-2022-1059", "golang.org/x/text") {
		t.Errorf("go image findings lack GO-2022-1059: %v", findingKeys(gor.Findings))
	}
	a = log.get("lab/pod/lab/goapp")
	wantAttr(t, a, AttrMaxCVSS, "7.5") // CVE-2022-32149, GO-2022-1059's alias
	if !slices.Contains(a[AttrCVE], "CVE-2022-32149") {
		t.Errorf("goapp vuln.cve = %v, want CVE-2022-32149 among them", a[AttrCVE])
	}

	// (d) whiteouts: the deleted Go binary, apk package and node_modules tree are gone.
	wh, _ := svc.Image(whDigest)
	for _, p := range wh.Packages {
		if p.Type == "golang" || p.Name == "curl" || p.Name == "lodash" {
			t.Errorf("whiteout image still reports deleted package %s %s at %s", p.Name, p.Version, p.Location)
		}
	}
	if !hasPackage(wh, "left-pad", "1.3.0") || countType(wh, "apk") != 8 {
		t.Errorf("whiteout image packages = %v", wh.Packages)
	}
	if hasFinding(wh.Findings, "ALPINE-CVE-2024-2398", "curl") {
		t.Error("whiteout image reports curl's advisory though curl was deleted")
	}

	// Credentials: imagePullSecrets (after a wrong one), a service account's secret.
	for _, name := range []string{"private", "private-sa"} {
		if a := log.get("lab/pod/lab/" + name); a == nil {
			t.Errorf("pod %s got no attributes: %+v", name, svc.Images())
		}
	}
	if log.get("lab/pod/lab/denied") != nil {
		t.Error("pod denied got attributes without credentials")
	}
	privReg := registryNamed(t, svc, private)
	if !privReg.NeedsCredentials || privReg.HasCredentials {
		t.Errorf("private registry = %+v, want needsCredentials", privReg)
	}

	// Admin credentials: stored encrypted, never echoed, retried at once.
	if err := svc.SetCredentials(private, "robot", "s3cret-pass"); err != nil {
		t.Fatal(err)
	}
	wait(t, svc)
	if a := log.get("lab/pod/lab/denied"); a == nil {
		t.Error("pod denied got no attributes after SetCredentials")
	}
	privReg = registryNamed(t, svc, private)
	if privReg.NeedsCredentials || !privReg.HasCredentials {
		t.Errorf("private registry after SetCredentials = %+v", privReg)
	}
	js, _ := json.Marshal(svc.Registries())
	if bytes.Contains(js, []byte("s3cret")) {
		t.Errorf("registries JSON echoes the password: %s", js)
	}

	// Vulnerabilities across images, with workloads.
	vs := svc.Vulnerabilities(func(f *Finding) bool { return f.ID == "GO-2022-1059" })
	var wls []string
	for _, f := range vs {
		wls = append(wls, f.Workloads...)
	}
	slices.Sort(wls)
	if !slices.Equal(wls, []string{"lab/pod/lab/goapp", "lab/pod/lab/private"}) {
		t.Errorf("GO-2022-1059 workloads = %v", wls)
	}

	// A database re-import changes attributes in place: a new critical
	// advisory for x/net, then the same advisory withdrawn.
	before := log.n["lab/pod/lab/goapp"]
	day := 0
	reimport := func(withdrawn string) {
		day++
		dir := t.TempDir()
		rec := fmt.Sprintf(`{"id":"TEST-XNET-1","modified":"2026-01-0%dT00:00:00Z",%s"aliases":["CVE-2099-0001"],
			"severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"}],
			"affected":[{"package":{"ecosystem":"Go","name":"golang.org/x/net"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"0.8.0"}]}]}]}`,
			day, withdrawn)
		if err := os.WriteFile(filepath.Join(dir, "TEST-XNET-1.json"), []byte(rec), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.ImportDB(t.Context(), dir, nil); err != nil {
			t.Fatal(err)
		}
	}
	reimport("")
	a = log.get("lab/pod/lab/goapp")
	wantAttr(t, a, AttrMaxCVSS, "10.0")
	if !slices.Contains(a[AttrCVE], "CVE-2099-0001") {
		t.Errorf("goapp vuln.cve after import = %v", a[AttrCVE])
	}
	reimport(`"withdrawn":"2026-01-03T00:00:00Z",`)
	wantAttr(t, log.get("lab/pod/lab/goapp"), AttrMaxCVSS, "7.5")
	if log.n["lab/pod/lab/goapp"] != before+2 {
		t.Errorf("goapp attribute updates = %d, want %d", log.n["lab/pod/lab/goapp"], before+2)
	}

	// Credentials are encrypted at rest.
	svc.Close()
	raw, err := os.ReadFile(filepath.Join(dataDir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("s3cret-pass")) {
		t.Error("the database holds the registry password in clear")
	}

	// A restart publishes known attributes at once, from stored inventories.
	log2 := &attrLog{}
	opts.OnAttrs = log2.record
	svc, err = Open(dataDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	svc.Observe(pods[:1])
	wantAttr(t, log2.get("lab/pod/lab/debian"), AttrMaxCVSS, "9.8")
	// Deleting a pod forgets it.
	now := time.Now()
	gone := pods[0]
	gone.Deleted = &now
	svc.Observe([]inventory.Workload{gone})
	if _, ok := svc.Attrs(gone.ID); ok {
		t.Error("a deleted pod still has attributes")
	}
}

func wantFindings(t *testing.T, got []Finding, want []string) {
	t.Helper()
	if g := findingKeys(got); !slices.Equal(g, want) {
		t.Errorf("findings:\n got %q\nwant %q", g, want)
	}
}

func hasFinding(fs []Finding, id, pkg string) bool {
	return slices.ContainsFunc(fs, func(f Finding) bool { return f.ID == id && f.Package == pkg })
}

func hasPackage(r *ImageReport, name, version string) bool {
	for _, p := range r.Packages {
		if p.Name == name && p.Version == version {
			return true
		}
	}
	return false
}

func countType(r *ImageReport, typ string) int {
	n := 0
	for _, p := range r.Packages {
		if p.Type == typ {
			n++
		}
	}
	return n
}

func registryNamed(t *testing.T, svc *Service, name string) Registry {
	t.Helper()
	for _, r := range svc.Registries() {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("registry %s not listed: %+v", name, svc.Registries())
	return Registry{}
}
