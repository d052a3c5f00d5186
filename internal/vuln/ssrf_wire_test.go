package vuln_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/server"
	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
)

const (
	wireChildEnv = "PALISADE_SSRF_WIRE_CHILD"
	wireSecret   = "INTERNAL-ANSWER-91c2"
	allowedReg   = "127.0.0.1:5000"
)

// The forbidden destinations of the acceptance: an internal Redis, the
// cloud metadata address, and a loopback port not on the allow-list.
var wireTraps = []struct{ name, addr string }{
	{"redis", "10.0.0.1:6379"},
	{"metadata", "169.254.169.254:80"},
	{"loopback", "127.0.0.1:6380"},
}

// TestSSRFOnTheWire runs a real Palisade server in its own network
// namespace, with --scan-registries 127.0.0.1:5000 and a registry there,
// and pods naming images on 10.0.0.1:6379, 169.254.169.254 and
// 127.0.0.1:6380 (all three listening, answering like internal services),
// plus an image on the allowed registry whose blobs redirect to
// 10.0.0.1:6379. iptables counters in the namespace's OUTPUT chain must see
// no packet towards any forbidden destination (and some towards the
// allowed registry), the services no connection, and no API answer any of
// their text. The same server's POST /api/v1/vulndb/import reads under its
// import directory only, answering a missing and a forbidden path alike.
func TestSSRFOnTheWire(t *testing.T) {
	if os.Getenv(wireChildEnv) != "" {
		wireChild(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the test creates a network namespace and iptables rules (run `make test` as root)")
	}
	ns := fmt.Sprintf("pal-vssrf-%d", os.Getpid())
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	inNS := func(args ...string) string { return run(append([]string{"ip", "netns", "exec", ns}, args...)...) }
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	inNS("ip", "link", "set", "lo", "up")
	inNS("ip", "addr", "add", "10.0.0.1/32", "dev", "lo")
	inNS("ip", "addr", "add", "169.254.169.254/32", "dev", "lo")
	rule := func(comment string, match ...string) {
		args := append([]string{"iptables", "-w", "-A", "OUTPUT"}, match...)
		inNS(append(args, "-m", "comment", "--comment", comment, "-j", "ACCEPT")...)
	}
	rule("trap-redis", "-d", "10.0.0.1")
	rule("trap-metadata", "-d", "169.254.169.254")
	rule("trap-loopback", "-d", "127.0.0.1", "-p", "tcp", "--dport", "6380")
	rule("allowed-registry", "-d", "127.0.0.1", "-p", "tcp", "--dport", "5000", "--syn")

	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", "^TestSSRFOnTheWire$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), wireChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("server in namespace %s:\n%s", ns, out)
	if err != nil {
		t.Fatalf("child in the namespace failed: %v", err)
	}

	counters := map[string]int{}
	for _, line := range strings.Split(inNS("iptables", "-w", "-L", "OUTPUT", "-v", "-x", "-n"), "\n") {
		f := strings.Fields(line)
		if i := strings.Index(line, "/* "); i >= 0 && len(f) > 0 {
			name := strings.Fields(line[i+3:])[0]
			n, _ := strconv.Atoi(f[0])
			counters[name] = n
		}
	}
	t.Logf("OUTPUT packet counters: %v", counters)
	for _, c := range []string{"trap-redis", "trap-metadata", "trap-loopback"} {
		if n, ok := counters[c]; !ok || n != 0 {
			t.Errorf("%s: %d packets sent (counter present: %v), want none", c, n, ok)
		}
	}
	if counters["allowed-registry"] == 0 {
		t.Error("no connection to the allowed registry counted: the counters do not work")
	}
}

// wireChild is the part that runs inside the namespace.
func wireChild(t *testing.T) {
	var accepted atomic.Int64
	for _, tr := range wireTraps {
		ln, err := net.Listen("tcp", tr.addr)
		if err != nil {
			t.Fatalf("trap %s: %v", tr.addr, err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				fmt.Fprintf(c, "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"errors\":[{\"code\":\"%s\",\"message\":\"%s\"}]}", wireSecret, wireSecret)
				c.Close()
			}
		}()
	}
	// The allowed registry; blobs of lab/redirect go to the internal Redis.
	var pushing atomic.Bool
	pushing.Store(true)
	ln, err := net.Listen("tcp", allowedReg)
	if err != nil {
		t.Fatal(err)
	}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	reg := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !pushing.Load() && strings.HasPrefix(r.URL.Path, "/v2/lab/redirect/blobs/") {
			http.Redirect(w, r, "http://10.0.0.1:6379/blob", http.StatusTemporaryRedirect)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	reg.Listener.Close()
	reg.Listener = ln
	reg.Start()
	defer reg.Close()
	// Two images with different layers, so the redirecting one is not
	// served from the layer cache.
	for _, repo := range []string{"lab/alpine", "lab/redirect"} {
		img := vulntest.Image(t, vulntest.Layer(t,
			vulntest.File{Path: "etc/os-release", Data: "ID=alpine\nVERSION_ID=3.19.1\n"},
			vulntest.File{Path: "lib/apk/db/installed", Data: "P:musl\nV:1.2.4_git20230717-r4\nA:x86_64\no:musl\n\n"},
			vulntest.File{Path: "etc/motd", Data: repo},
		))
		vulntest.Push(t, img, allowedReg+"/"+repo+":1", nil)
	}
	pushing.Store(false)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	importDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(importDir, "osv"), 0o755); err != nil {
		t.Fatal(err)
	}
	rec, err := os.ReadFile(filepath.Join("testdata", "osv", "alpine", "ALPINE-CVE-2025-26519.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(importDir, "osv", "ALPINE-CVE-2025-26519.json"), rec, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := server.Start(ctx, server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", ScanRegistries: []string{allowedReg}, VulnImportDir: importDir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	refs := map[string]string{
		"redis":    "10.0.0.1:6379/cache/redis:1",
		"metadata": "169.254.169.254/latest/meta-data:1",
		"loopback": "127.0.0.1:6380/x/y:1",
		"redirect": allowedReg + "/lab/redirect:1",
		"alpine":   allowedReg + "/lab/alpine:1",
	}
	for name, ref := range refs {
		s.Inventory.Apply(inventory.Workload{
			ID: "lab/pod/ssrf/" + name, Cluster: "lab", Kind: inventory.KindPod, Namespace: "ssrf", Name: name,
			Containers: []inventory.Container{{Name: "main", Image: ref}},
		})
	}
	// POST /api/v1/vulndb/import reads under the import directory only, with
	// one answer for a missing and a forbidden path.
	post := func(path string) (int, string) {
		body, _ := json.Marshal(map[string]string{"path": path})
		req, _ := http.NewRequest("POST", s.URL()+"/api/v1/vulndb/import", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+s.AdminToken())
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.ReplaceAll(string(b), strings.ReplaceAll(fmt.Sprintf("%q", path), `"`, `\"`), "PATH")
	}
	if code, body := post("osv"); code != http.StatusOK {
		t.Errorf("import of osv under the import directory: %d %s", code, body)
	}
	missingCode, missing := post("no-such-dir")
	t.Logf("import of a missing or forbidden path: %d %s", missingCode, missing)
	for _, p := range []string{"/etc", "../../../../etc", "/proc/self", importDir + "/../"} {
		if code, body := post(p); code != missingCode || body != missing || code == http.StatusOK {
			t.Errorf("import of %s: %d %s; the missing path got %d %s", p, code, body, missingCode, missing)
		}
	}
	get := func(path string) string {
		req, _ := http.NewRequest("GET", s.URL()+path, nil)
		req.Header.Set("Authorization", "Bearer "+s.AdminToken())
		resp, err := s.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	type imageSummary struct {
		Image, Digest, Status, Error string
	}
	var images []imageSummary
	deadline := time.Now().Add(2 * time.Minute)
	for {
		images = nil
		if err := json.Unmarshal([]byte(get("/api/v1/images")), &images); err != nil {
			t.Fatal(err)
		}
		done := len(images) == len(refs)
		for _, im := range images {
			done = done && im.Status != "pending"
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scans did not settle: %+v", images)
		}
		time.Sleep(200 * time.Millisecond)
	}
	answers := []string{get("/api/v1/images"), get("/api/v1/registries"), get("/api/v1/vulnerabilities"),
		get("/api/v1/inventory?filter=" + url.QueryEscape("namespace = ssrf"))}
	for _, im := range images {
		answers = append(answers, im.Error)
		if im.Digest != "" {
			answers = append(answers, get("/api/v1/images/"+im.Digest))
		}
		t.Logf("%s: %s %s", im.Image, im.Status, im.Error)
		switch {
		case strings.Contains(im.Image, "/lab/alpine"):
			if im.Status != "scanned" {
				t.Errorf("allowed image: %+v", im)
			}
		case strings.Contains(im.Image, "/lab/redirect"):
			if im.Status != "failed" || !strings.Contains(im.Error, "refused") {
				t.Errorf("redirect to 10.0.0.1:6379: %+v, want a refusal", im)
			}
		default:
			if im.Status != "not-allowed" {
				t.Errorf("%s: status %s, want not-allowed", im.Image, im.Status)
			}
		}
	}
	for _, a := range answers {
		if strings.Contains(a, wireSecret) {
			t.Errorf("an API answer carries the internal services' text: %s", a)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the internal services accepted %d connections", n)
	}
}
